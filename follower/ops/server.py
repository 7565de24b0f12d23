"""The ops HTTP server: `/metrics` for Prometheus, `/healthz` and `/readyz` for probes.

Off by default (`--listen HOST:PORT`). It shares the process's event loop, so `/healthz`
answering at all shows the loop is not blocked; it also checks that the run is alive and the sink
has not failed. `/readyz` says the follower does useful work: a poll succeeded and the key is
accepted, which is what a Kubernetes readiness probe or a rollout should wait for.

A request aiohttp cannot parse (a line or header over its limit, garbage) is answered 400 and
noted as one `ops_bad_request` line at debug level, without its text: aiohttp would log it as an
error with a traceback quoting the start of the line, where a client's Authorization header
holds the key, possibly cut where no mask can recognise it.

The port is often reachable by more than a scraper and a probe (the image listens on 0.0.0.0), and
every connection costs a file descriptor the follower needs for its own polls. So the server
holds at most `MAX_CONNECTIONS` at once, answering any more with a 503 and closing it at once,
and closes a connection whose request has not fully arrived `REQUEST_TIMEOUT_S` after it opened
(or after the previous response): hundreds of idle or trickling clients cost a bounded number of
descriptors for a bounded time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Final, Protocol

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from follower.errors import ListenError
from follower.ops.metrics import Metrics

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_CONNECTIONS: Final = 64  # a scraper and a few probes need a handful
REQUEST_TIMEOUT_S: Final = 5.0  # a probe or scraper sends its request at once
REFUSALS_EVERY_S: Final = 60.0
_REFUSAL: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 21\r\n"
    b"Connection: close\r\n\r\ntoo many connections\n"
)


class _BadRequestsQuietly(logging.Filter):
    """Turns aiohttp's record of a request it could not parse into one debug diagnostic that
    quotes nothing of the request; a failure of our own handlers still goes through."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, HttpProcessingError):
            return True
        peer = record.args[0] if isinstance(record.args, tuple) and record.args else None
        structlog.get_logger("follower").debug(
            "ops_bad_request", peer=str(peer), status=error.code, error=type(error).__name__
        )
        return False


# The ops server's own logger (aiohttp's `aiohttp.server` also serves the simulator in tests).
HTTP_LOG = logging.getLogger("follower.ops.http")
HTTP_LOG.addFilter(_BadRequestsQuietly())


class Observed(Protocol):
    """What the server asks of the running follower."""

    @property
    def metrics(self) -> Metrics: ...

    def refresh_metrics(self) -> None:
        """Bring the gauges up to date before a scrape."""
        ...

    def health(self) -> tuple[bool, str]:
        """(alive, why): the run goes on and its sink can be written."""
        ...

    def readiness(self) -> tuple[bool, str]:
        """(ready, why): a poll succeeded and the key is accepted."""
        ...


def create_ops_app(observed: Observed) -> web.Application:
    """The aiohttp application serving the three endpoints for `observed`."""

    async def metrics(_: web.Request) -> web.Response:
        observed.refresh_metrics()
        return web.Response(body=observed.metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    async def healthz(_: web.Request) -> web.Response:
        ok, why = observed.health()
        return web.Response(status=200 if ok else 503, text=why + "\n")

    async def readyz(_: web.Request) -> web.Response:
        ok, why = observed.readiness()
        return web.Response(status=200 if ok else 503, text=why + "\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


@asynccontextmanager
async def ops_server(
    observed: Observed,
    host: str,
    port: int,
    *,
    max_connections: int = MAX_CONNECTIONS,
    request_timeout_s: float = REQUEST_TIMEOUT_S,
) -> AsyncIterator[str]:
    """Serve the ops endpoints on host:port while the block runs; yields the base URL.

    An address that cannot be bound raises `ListenError` (exit 3, one line): a taken port or a
    mistyped address is the operator's to fix, not a crash to report with a traceback.

    aiohttp has no header timeout, but its keep-alive timer starts when a connection opens and
    closes the connection if no complete request has arrived when it fires, whatever bytes came;
    it is set to `request_timeout_s`, and so is the time it lingers to read an unread body.
    aiohttp has no connection limit either: the listening socket is ours, with a protocol
    factory that counts (`_Capped`).
    """
    runner = web.AppRunner(
        create_ops_app(observed), access_log=None, logger=HTTP_LOG,
        keepalive_timeout=request_timeout_s, lingering_time=request_timeout_s,
    )
    await runner.setup()
    server: asyncio.AbstractServer | None = None
    try:
        assert runner.server is not None  # set by setup()
        capped = _Capped(runner.server, max_connections)
        try:
            server = await asyncio.get_running_loop().create_server(
                capped, host, port, backlog=128
            )
        except OSError as exc:  # EADDRINUSE, EADDRNOTAVAIL, EACCES, gaierror (a name unknown)
            raise ListenError(host, port, _reason(exc)) from None
        display = f"[{host}]" if ":" in host else host
        bound = server.sockets[0].getsockname()[1]
        yield f"http://{display}:{bound}"  # the bound port, also when 0 was asked
    finally:
        if server is not None:
            server.close()
        await runner.cleanup()


class _Capped:
    """A protocol factory: aiohttp's handler while fewer than `limit` connections are open, a
    503 and a close beyond. Counted here, when asyncio asks for a protocol, rather than in
    aiohttp's list of connections, which grows only once each accepted one is set up: a burst
    accepted in one go would all get in.

    Refusals are reported at most once per `REFUSALS_EVERY_S`, with how many there were since
    the last report: under a flood, one line a minute rather than one per connection.
    """

    def __init__(self, make: Callable[[], asyncio.Protocol], limit: int) -> None:
        self._make = make
        self._limit = limit
        self._open = 0
        self._refused = 0
        self._reported_at: float | None = None

    def __call__(self) -> asyncio.Protocol:
        if self._open < self._limit:
            self._open += 1
            return _Counted(self._make(), self._release)
        self._refused += 1
        now = asyncio.get_running_loop().time()
        if self._reported_at is None or now - self._reported_at >= REFUSALS_EVERY_S:
            structlog.get_logger("follower").warning(
                "ops_connections_refused", limit=self._limit, refused=self._refused,
                action="answering 503 and closing while the limit is reached",
            )
            self._reported_at, self._refused = now, 0
        return _Refused()

    def _release(self) -> None:
        self._open -= 1


class _Counted(asyncio.Protocol):
    """aiohttp's protocol, telling `_Capped` when its connection is gone."""

    def __init__(self, inner: asyncio.Protocol, release: Callable[[], None]) -> None:
        self._inner = inner
        self._release = release

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._release()
        self._inner.connection_lost(exc)


class _Refused(asyncio.Protocol):
    """A connection past the limit: a 503 that says why, then closed, reading nothing."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(_REFUSAL)
        transport.close()


def _reason(exc: OSError) -> str:
    """The operating system's words for a failed bind: asyncio wraps a bind error in a sentence
    that repeats the address, so the errno's own text is shorter; a resolver error's errno is
    not an OS errno, its `strerror` says it."""
    if exc.errno is not None and exc.errno > 0 and not isinstance(exc, socket.gaierror):
        text = os.strerror(exc.errno)
    else:
        text = exc.strerror or str(exc)
    return text[:1].lower() + text[1:]
