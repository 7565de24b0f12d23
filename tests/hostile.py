"""A scripted Pipeline API on loopback, for hostile tests: per path, the answers to give, in order.

Each path (`/platform/pipeline-api/`, `.../{id}/logs/`, `.../{id}/status/`) has a list of answers;
the n-th request to that path gets the n-th answer, and the last one is repeated for ever. An
answer is a fixed `(status, headers, body)` or a function of the request (to echo a page number).
A path with no script gets `default`, or 404 in the documented envelope. Every request is
recorded, so a test asserts on what the follower asked (how many list pages, when the first logs
request came).

An answer may take `delay_s` on a clock: pass the test's `FakeClock` so a slow answer waits in
fake time (the runner's test helpers know to advance it), or leave the real clock for a process.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from aiohttp.test_utils import TestServer

from follower.clock import Clock

ROOT = "/platform/pipeline-api/"


@dataclass(frozen=True)
class Answer:
    """One scripted answer."""

    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


Scripted = Answer | Callable[[web.Request], Answer]


def envelope(data: object) -> bytes:
    """A successful body in the documented envelope."""
    return orjson.dumps({"data": data, "error": False, "error_message": None, "error_code": None})


def ok(data: object, **headers: str) -> Answer:
    """200 with `data` in the envelope."""
    return Answer(200, envelope(data), headers)


def failure(status: int, message: str = "failed", **headers: str) -> Answer:
    """An error status with the documented error envelope (`error_code` is the status)."""
    body = orjson.dumps(
        {"data": None, "error": True, "error_message": message, "error_code": str(status)}
    )
    return Answer(status, body, headers)


def logs(pods: Mapping[str, str], uid: str | None = None) -> Answer:
    """A logs answer with one entry per pod."""
    return ok({"uid": uid, "pods": [{"pod": pod, "logs": text} for pod, text in pods.items()]})


def status(phase: str = "RUNNING", *, ready: int = 1, replicas: int = 1,
           start_time: str | None = "2026-05-02T09:14:07Z", uid: str | None = None) -> Answer:
    """A status answer."""
    return ok({"uid": uid, "status": phase, "replicas": replicas, "ready": ready,
               "start_time": start_time})


def listing(items: list[dict[str, Any]], *, has_more: bool = False,
            total_count: int | None = None) -> Answer:
    """One page of the list endpoint."""
    return ok({"items": items, "pagination": {"has_more": has_more, "total_count": total_count}})


def logs_path(pipeline_id: str) -> str:
    return f"{ROOT}{pipeline_id}/logs/"


def status_path(pipeline_id: str) -> str:
    return f"{ROOT}{pipeline_id}/status/"


@dataclass
class HostileApi:
    """The scripts, the requests seen, and (once served) the base URL."""

    clock: Clock | None = None
    scripts: dict[str, list[Scripted]] = field(default_factory=dict)
    requests: list[web.Request] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    """When each request arrived (on `clock`, when one is given)."""
    served: dict[str, int] = field(default_factory=dict)
    base_url: str = ""
    default: Scripted | None = None
    """The answer of every path without a script (None: 404 in the envelope)."""

    def script(self, path: str, *answers: Scripted) -> None:
        """Answer `path` with `answers` in order, the last one for ever (replaces any script)."""
        self.scripts[path] = list(answers)
        self.served[path] = 0

    def asked(self, path: str) -> list[web.Request]:
        """The requests made to `path`, in order."""
        return [request for request in self.requests if request.path == path]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request)
        if self.clock is not None:
            self.times.append(self.clock.monotonic())
        answers = self.scripts.get(request.path)
        if not answers:
            chosen: Scripted = self.default or failure(404, "pipeline not found")
        else:
            count = self.served[request.path] = self.served[request.path] + 1
            chosen = answers[min(count, len(answers)) - 1]
        answer = chosen(request) if callable(chosen) else chosen
        if answer.delay_s > 0 and self.clock is not None:
            await self.clock.sleep(answer.delay_s)
        return web.Response(status=answer.status, body=answer.body, headers=dict(answer.headers))


@asynccontextmanager
async def hostile_api(clock: Clock | None = None) -> AsyncIterator[HostileApi]:
    """Serve a `HostileApi` on a free loopback port; script it before or while it runs."""
    api = HostileApi(clock)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", api.handle)
    async with TestServer(app, host="127.0.0.1") as server:
        api.base_url = str(server.make_url("")).rstrip("/")
        yield api
