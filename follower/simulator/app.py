"""The fake GoldRush Pipeline API as an aiohttp application.

Every request goes through the same gates in order: the server-wide rate limit (429), the key (401,
403), the injected faults (slow, 429, 5xx), then the endpoint (404 for an unknown or deleted
pipeline), then the faults that corrupt a good answer (envelope error, malformed body). Time comes
from the injected clock, so tests drive it with `FakeClock`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from follower.clock import Clock
from follower.simulator import wire
from follower.simulator.control import API_KEY_PREFIX, Control
from follower.simulator.faults import (
    JSON,
    Decision,
    Endpoint,
    FaultSettings,
    malformed,
    retry_after_header,
    server_error,
    throttle_header,
)
from follower.simulator.recorder import Recorder
from follower.simulator.world import PodWindow, World

PREFIX: Final = "/platform/pipeline-api/"
DEFAULT_PAGE_SIZE: Final = 10
MAX_PAGE_SIZE: Final = 100

WORLD: Final = web.AppKey("world", World)
RECORDER: Final = web.AppKey("recorder", Recorder)
CONTROL: Final = web.AppKey("control", Control)


class _Refusal(Exception):
    """An error answer decided while computing one (404, 400)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class _Answer:
    data: object
    windows: tuple[PodWindow, ...] = field(default=())


def _json(
    status: int, envelope: wire.Envelope, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status, body=wire.dumps(envelope), content_type=JSON, headers=headers
    )


def _refuse(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return _json(status, wire.failure(status, message), headers)


def _bearer(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _int_query(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _Refusal(400, f"{name} must be a positive integer, got {raw!r}") from None
    if value < 1:
        raise _Refusal(400, f"{name} must be a positive integer, got {raw!r}")
    return value


class _Api:
    def __init__(self, world: World, clock: Clock, control: Control, recorder: Recorder) -> None:
        self._world = world
        self._clock = clock
        self._control = control
        self._recorder = recorder

    # --- endpoints (pure: request and now in, answer out) ---------------------------------------

    def _pipeline_id(self, request: web.Request) -> str:
        pipeline_id = request.match_info["pipeline_id"]
        try:
            self._world.info(pipeline_id)
        except KeyError:
            raise _Refusal(404, f"Pipeline {pipeline_id} not found") from None
        if self._control.is_deleted(pipeline_id):
            raise _Refusal(404, f"Pipeline {pipeline_id} not found")
        return pipeline_id

    def list_pipelines(self, request: web.Request, now: float) -> _Answer:
        page_number = _int_query(request, "page_number", 1)
        page_size = min(MAX_PAGE_SIZE, _int_query(request, "page_size", DEFAULT_PAGE_SIZE))
        visible = [pid for pid in self._world.pipeline_ids if not self._control.is_deleted(pid)]
        start = (page_number - 1) * page_size
        items = [self._world.info(pid) for pid in visible[start : start + page_size]]
        pagination = {
            "has_more": start + page_size < len(visible),
            "page_number": page_number,
            "page_size": page_size,
            "total_count": len(visible),
        }
        return _Answer({"items": items, "pagination": pagination})

    def get_pipeline(self, request: web.Request, now: float) -> _Answer:
        return _Answer(self._world.info(self._pipeline_id(request)))

    def status(self, request: web.Request, now: float) -> _Answer:
        return _Answer(self._world.status(self._pipeline_id(request), now))

    def logs(self, request: web.Request, now: float) -> _Answer:
        pipeline_id = self._pipeline_id(request)
        windows = tuple(self._world.answered(pipeline_id, now))
        pods = [{"pod": w.pod, "logs": self._world.tail_text(pipeline_id, w)} for w in windows]
        return _Answer({"uid": self._world.uid(pipeline_id), "pods": pods}, windows)

    # --- the gates ------------------------------------------------------------------------------

    def handler(
        self, endpoint: Endpoint, compute: Callable[[web.Request, float], _Answer]
    ) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            outcome, response = await self._serve(request, endpoint, compute)
            self._recorder.count(endpoint, outcome)
            return response

        return handle

    async def _serve(
        self,
        request: web.Request,
        endpoint: Endpoint,
        compute: Callable[[web.Request, float], _Answer],
    ) -> tuple[str, web.Response]:
        refused = self._admit(request)
        if refused is not None:
            return refused
        faults = self._control.faults
        decision = self._control.draw()
        if decision.slow:
            self._recorder.slowed += 1
            await self._clock.sleep(faults.slow_s)
        if decision.fault == "429":
            retry = faults.retry_after_s
            headers = {} if retry is None else {"Retry-After": retry_after_header(retry)}
            return "429", _refuse(429, "Too many requests", headers)
        if decision.fault == "5xx":
            status, body, content_type = server_error(self._control.variant("5xx"))
            return "5xx", web.Response(status=status, body=body, content_type=content_type)
        try:
            answer = compute(request, self._clock.monotonic())
        except _Refusal as refusal:
            return str(refusal.status), _refuse(refusal.status, refusal.message)
        return self._finish(request, endpoint, decision, answer)

    def _admit(self, request: web.Request) -> tuple[str, web.Response] | None:
        """The rate limit and the key: an answer that refuses the request, or None to go on."""
        wait = self._control.throttle(self._clock.monotonic())
        if wait > 0:
            headers = {"Retry-After": throttle_header(wait)}
            return "rate_limited", _refuse(429, "Rate limit exceeded, slow down", headers)
        key = _bearer(request)
        if key is not None and self._control.key_valid(key):
            return None
        if key is not None and key.startswith(API_KEY_PREFIX):
            message = "A GoldRush API key cannot use the Pipeline API; use a Service Key"
            return "403", _refuse(403, message)
        return "401", _refuse(401, "Missing, invalid or revoked Service Key")

    def _finish(
        self, request: web.Request, endpoint: Endpoint, decision: Decision, answer: _Answer
    ) -> tuple[str, web.Response]:
        """Corrupt a good answer as the faults say, else record what it shows and send it."""
        if decision.fault == "envelope_error":
            return "envelope_error", _json(200, wire.failure(500, "Internal server error"))
        if decision.fault == "malformed":
            variant = self._control.variant("malformed")
            body, content_type = malformed(variant, endpoint, answer.data)
            return "malformed", web.Response(status=200, body=body, content_type=content_type)
        if decision.slow and (request.transport is None or request.transport.is_closing()):
            return "client_gone", _json(200, wire.ok(answer.data))  # it gave up while we dawdled
        if answer.windows:
            self._recorder.record(request.match_info["pipeline_id"], answer.windows)
        return "ok", _json(200, wire.ok(answer.data))


def _fallback(recorder: Recorder) -> Middleware:
    """A middleware that answers unknown paths and methods with an error envelope too."""

    @web.middleware
    async def fallback(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            recorder.count("other", str(exc.status))
            return _refuse(exc.status, exc.reason)

    return fallback


NO_FAULTS: Final = FaultSettings()


def create_app(
    world: World, clock: Clock, key: str, faults: FaultSettings = NO_FAULTS
) -> web.Application:
    """The fake Pipeline API over `world`, accepting `Authorization: Bearer <key>`.

    `app[RECORDER]` holds what was served, `app[CONTROL]` changes keys, pipelines and faults
    mid-run, `app[WORLD]` is `world`.
    """
    control = Control(key, faults)
    recorder = Recorder(world)
    api = _Api(world, clock, control, recorder)
    app = web.Application(middlewares=[_fallback(recorder)])
    app[WORLD] = world
    app[RECORDER] = recorder
    app[CONTROL] = control
    router = app.router
    router.add_get(PREFIX, api.handler("list", api.list_pipelines), name="list")
    router.add_get(
        PREFIX + "{pipeline_id}/", api.handler("pipeline", api.get_pipeline), name="pipeline"
    )
    router.add_get(
        PREFIX + "{pipeline_id}/status/", api.handler("status", api.status), name="status"
    )
    router.add_get(PREFIX + "{pipeline_id}/logs/", api.handler("logs", api.logs), name="logs")
    return app
