"""The ops HTTP server: `/metrics` for Prometheus, `/healthz` and `/readyz` for probes.

Off by default (`--listen HOST:PORT`). It shares the process's event loop, so `/healthz`
answering at all shows the loop is not blocked; it also checks that the run is alive and the sink
has not failed. `/readyz` says the follower does useful work: a poll succeeded and the key is
accepted, which is what a Kubernetes readiness probe or a rollout should wait for.

A request aiohttp cannot parse (a line or header over its limit, garbage) is answered 400 and
noted as one `ops_bad_request` line at debug level, without its text: aiohttp would log it as an
error with a traceback quoting the start of the line, where a client's Authorization header
holds the key, possibly cut where no mask can recognise it.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from follower.errors import ListenError
from follower.ops.metrics import Metrics

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


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
async def ops_server(observed: Observed, host: str, port: int) -> AsyncIterator[str]:
    """Serve the ops endpoints on host:port while the block runs; yields the base URL.

    An address that cannot be bound raises `ListenError` (exit 3, one line): a taken port or a
    mistyped address is the operator's to fix, not a crash to report with a traceback.
    """
    runner = web.AppRunner(create_ops_app(observed), access_log=None, logger=HTTP_LOG)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:  # EADDRINUSE, EADDRNOTAVAIL, EACCES, gaierror (a name unknown)
            raise ListenError(host, port, _reason(exc)) from None
        display = f"[{host}]" if ":" in host else host
        yield f"http://{display}:{site.port}"  # the bound port, also when 0 was asked
    finally:
        await runner.cleanup()


def _reason(exc: OSError) -> str:
    """The operating system's words for a failed bind: asyncio wraps a bind error in a sentence
    that repeats the address, so the errno's own text is shorter; a resolver error's errno is
    not an OS errno, its `strerror` says it."""
    if exc.errno is not None and exc.errno > 0 and not isinstance(exc, socket.gaierror):
        text = os.strerror(exc.errno)
    else:
        text = exc.strerror or str(exc)
    return text[:1].lower() + text[1:]
