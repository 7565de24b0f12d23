"""The ops server against a live follower process: /healthz, /readyz and /metrics."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import signal
import socket

import aiohttp
import anyio
import anyio.abc
import pytest
import structlog
import structlog.testing
from test_cli import KEY, Run, follower, run_args, served

from follower.api.secret import MASK, ServiceKey
from follower.ops import diagnostics
from follower.ops.metrics import Metrics
from follower.ops.server import ops_server
from follower.simulator.app import CONTROL


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


async def test_health_readiness_and_metrics_of_a_live_process() -> None:
    """Healthy at once, ready after a poll, metrics count polls and lines, no key anywhere."""
    async with served() as sim:
        ids = sim.world.pipeline_ids
        async with follower(*run_args(sim.base_url, ids, "--listen", "127.0.0.1:0")) as run:
            await run.wait_for("ops_server_listening", where="stderr")
            line = next(line for line in run.stderr if "ops_server_listening" in line)
            match = re.search(r'"url": "(http://[^"]+)"', line)
            assert match is not None
            base = match.group(1)
            assert (await get(f"{base}/healthz"))[0] == 200
            await run.wait_for('"event":"log"', count=20)
            status, body = await get(f"{base}/readyz")
            assert (status, body.strip()) == (200, "ok")
            status, text = await get(f"{base}/metrics")
            assert status == 200
            polls = re.search(r'follower_polls_total\{endpoint="logs",outcome="ok"\} (\S+)', text)
            assert polls is not None and float(polls.group(1)) >= len(ids)
            lines = re.search(r'follower_events_total\{kind="log"\} (\S+)', text)
            assert lines is not None and float(lines.group(1)) >= 20
            assert f"follower_pipelines {float(len(ids))}" in text
            assert 'follower_pipelines_in_state{state="healthy"}' in text
            assert "follower_request_duration_seconds_bucket" in text
            assert KEY not in text
            sim.app[CONTROL].revoke_key()
            await run.wait_for("service_key_rejected", where="stderr")
            status, body = await get(f"{base}/readyz")
            assert status == 503 and "401" in body
            run.process.send_signal(signal.SIGTERM)
            assert await run.exit_code() == 0
    assert KEY not in run.everything()


async def test_listen_address_is_validated() -> None:
    """A bad --listen value is a config error naming the flag."""
    async with follower("run", "--pipeline", "pipe_abc", "--listen", "nowhere") as run:
        assert await run.exit_code() == 2
    assert any("--listen: expected HOST:PORT" in line for line in run.stderr)


@pytest.mark.parametrize("where", ["in use", "not on this machine"])
async def test_a_listen_address_that_cannot_be_bound_exits_3_with_one_line(where: str) -> None:
    """A --listen port already taken, or an address of no interface here: exit 3 (could not
    start) with one line naming --listen and the reason, no traceback, no event."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        address = f"127.0.0.1:{port}" if where == "in use" else "192.0.2.1:9464"  # TEST-NET-1
        async with served() as sim, follower(
            *run_args(sim.base_url, sim.world.pipeline_ids[:1], "--listen", address)
        ) as run:
            assert await run.exit_code() == 3
    assert "Traceback" not in run.everything()
    plain = [line for line in run.stderr if line.startswith("follower: ")]
    assert len(plain) == 1 and "--listen" in plain[0] and address in plain[0]
    assert run.stdout == []


async def send_raw(url: str, request: bytes) -> bytes:
    """Send `request` as raw bytes to the server at `url`; what comes back until it closes."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with anyio.fail_after(10):
        async with await anyio.connect_tcp(host, int(port)) as stream:
            await stream.send(request)
            answer = b""
            with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
                while True:
                    answer += await stream.receive()
            return answer


async def test_an_oversized_request_leaks_no_key_and_stderr_stays_json() -> None:
    """A request line or header over aiohttp's limit, holding the key (in any case, or cut by
    aiohttp's own truncation of the line it quotes), is answered 400 and leaves stderr as one
    JSON object per line, without the key or a part of it, even at debug level."""
    padding = "a" * 9000
    requests = [
        f"GET /healthz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}{padding}\r\n\r\n",
        f"GET /{KEY.upper()}{'b' * 9000} HTTP/1.1\r\nHost: x\r\n\r\n",
        f"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: {'p' * 90}{KEY}{padding}\r\n\r\n",
    ]
    async with served() as sim:
        ids = sim.world.pipeline_ids[:1]
        args = run_args(sim.base_url, ids, "--listen", "127.0.0.1:0", "--log-level", "debug")
        async with follower(*args) as run:
            await run.wait_for("ops_server_listening", where="stderr")
            base = ops_url(run)
            for request in requests:
                answer = await send_raw(base, request.encode())
                assert answer.split(b"\r\n", 1)[0].endswith(b" 400 Bad Request")
            assert (await get(f"{base}/healthz"))[0] == 200
            run.process.send_signal(signal.SIGTERM)
            assert await run.exit_code() == 0
    assert sum('"ops_bad_request"' in line for line in run.stderr) == len(requests)
    text = "\n".join(run.stderr).lower()
    assert KEY.lower() not in text and KEY[:10].lower() not in text
    assert "traceback" not in text
    for line in run.stderr:
        if line:
            assert isinstance(json.loads(line), dict), line


def ops_url(run: Run) -> str:
    """The ops server's base URL, from the `ops_server_listening` diagnostic of `run`."""
    line = next(line for line in run.stderr if "ops_server_listening" in line)
    match = re.search(r'"url": "(http://[^"]+)"', line)
    assert match is not None
    return match.group(1)


def test_library_logging_is_masked_and_rendered_like_our_diagnostics() -> None:
    """A record of the standard `logging` module (a library's, with a traceback quoting the key
    in another case) comes out as one masked JSON line naming its logger."""
    stream = io.StringIO()
    diagnostics.configure("info", ServiceKey(KEY), stream=stream)
    try:
        try:
            raise ValueError(f"Got more than 8190 bytes when reading: b'Bearer {KEY.upper()}'")
        except ValueError:
            logging.getLogger("aiohttp.server").exception("Error handling request from %s", KEY)
        logging.getLogger("asyncio").debug("below the level: %s", KEY)
    finally:
        diagnostics.reset()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["logger"] == "aiohttp.server" and record["level"] == "error"
    assert record["event"] == f"Error handling request from {MASK}"
    assert "ValueError" in record["exception"] and KEY.lower() not in lines[0].lower()


class Healthy:
    """A follower that is alive and ready: what the ops server observes in a test of its own."""

    def __init__(self) -> None:
        self.metrics = Metrics()

    def refresh_metrics(self) -> None:
        """Nothing to bring up to date."""

    def health(self) -> tuple[bool, str]:
        return True, "ok"

    def readiness(self) -> tuple[bool, str]:
        return True, "ok"


async def until_closed(stream: anyio.abc.SocketStream) -> bytes:
    """What the server sends on `stream` until it closes it (a reset counts as closed)."""
    answer = b""
    with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError):
        while True:
            answer += await stream.receive()
    return answer


async def test_connections_beyond_the_cap_are_refused_and_slow_requests_closed() -> None:
    """Connections past the cap are refused at once, a request that has not fully arrived is
    closed after the request timeout however its bytes trickle, and then /healthz answers: idle
    or slow clients of the ops port cannot take the process's file descriptors."""
    cap, timeout_s = 4, 0.3
    partial = b"GET /metrics HTTP/1.1\r\nHost: x\r\n"
    async with ops_server(Healthy(), "127.0.0.1", 0, max_connections=cap,
                          request_timeout_s=timeout_s) as base:
        host, port = base.removeprefix("http://").rsplit(":", 1)
        async with contextlib.AsyncExitStack() as stack:
            held: list[tuple[anyio.abc.SocketStream, float]] = []
            for _ in range(cap):
                stream = await stack.enter_async_context(await anyio.connect_tcp(host, int(port)))
                held.append((stream, anyio.current_time()))
                await stream.send(partial)
            with anyio.fail_after(2), structlog.testing.capture_logs() as logs:
                for _ in range(3):
                    async with await anyio.connect_tcp(host, int(port)) as over:
                        await over.send(partial)
                        assert b" 200 " not in await until_closed(over)
            assert [log["event"] for log in logs] == ["ops_connections_refused"]  # not one each
            for stream, _ in held:
                await stream.send(b"X-More: soon\r\n")  # bytes arriving do not extend the time
            with anyio.fail_after(5):
                for stream, opened in held:
                    assert await until_closed(stream) == b""
                    # asyncio runs a timer up to a clock tick early
                    assert anyio.current_time() - opened >= timeout_s - 0.05
        with anyio.fail_after(1):
            assert await get(f"{base}/healthz") == (200, "ok\n")
