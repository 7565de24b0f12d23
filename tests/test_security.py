"""Security: hostile answers and ids, HTTPS rules, file modes, the key never leaking, no eval."""

from __future__ import annotations

import ast
import contextlib
import io
import json
import os
import random
import re
import shutil
import signal
import ssl
import stat
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import orjson
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestServer
from harness import simulated
from structlog.testing import capture_logs
from test_cli import WORLD, env_with, follower

from follower.api.client import PipelineApi, create_session
from follower.api.secret import MASK, ServiceKey
from follower.api.settings import HttpSettings
from follower.clock import SystemClock
from follower.config import Config, load_config
from follower.core.backoff import BackoffPolicy
from follower.core.model import DEFAULT_MAX_LINE_BYTES
from follower.engine.runner import Runner
from follower.engine.service import follow
from follower.errors import ConfigError
from follower.ops import diagnostics
from follower.simulator.app import CONTROL, create_app
from follower.simulator.world import SimSettings, World
from follower.sinks.jsonlines import encode
from follower.testing import FakeClock, MemorySink, advance_to, settle

KEY = "sk-LEAKCHECK-9f8e7d6c5b4a"
NEW_KEY = "sk-LEAKCHECK-ROTATED-0a1b2c3d4e"
CAP = 2 * 1024 * 1024
MALFORMED = "malformed_response"
ROOT = Path(__file__).resolve().parent.parent
Responder = Callable[[web.Request], Awaitable[web.StreamResponse]]


def envelope(data: object, **fields: object) -> bytes:
    return orjson.dumps({"data": data, "error": False, "error_message": None, **fields})


def raw(body: bytes, status: int = 200, **headers: str) -> Responder:
    async def respond(_: web.Request) -> web.StreamResponse:
        return web.Response(status=status, body=body, headers=headers)

    return respond


def tails(pods: dict[str, str]) -> Responder:
    return raw(envelope({"uid": None, "pods": [{"pod": p, "logs": t} for p, t in pods.items()]}))


async def chunked_over_cap(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    response.enable_chunked_encoding()
    await response.prepare(request)
    with contextlib.suppress(ConnectionError):  # the client hangs up once past the cap
        for _ in range(CAP // 65536 + 2):
            await response.write(b" " * 65536)
    return response


@dataclass
class Scripted:
    """A loopback API: the logs endpoint plays `script` in order, then repeats its last answer."""

    script: list[Responder]
    requests: list[str] = field(default_factory=list)
    served: int = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request.raw_path)
        if request.path.endswith("/status/"):
            return web.Response(body=envelope({"status": "RUNNING", "replicas": 1, "ready": 1}))
        self.served += 1
        return await self.script[min(self.served, len(self.script)) - 1](request)


@asynccontextmanager
async def serve(handler: Responder, tls: ssl.SSLContext | None = None) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server(ssl=tls)  # `async with TestServer` cannot pass ssl
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


def parse_lines(data: bytes) -> list[dict[str, Any]]:
    """Strict JSON Lines: newline-terminated UTF-8, one object per line, no raw control byte."""
    assert data.endswith(b"\n")
    lines = data[:-1].split(b"\n")
    assert not [line[:80] for line in lines if re.search(rb"[\x00-\x1f]", line)]
    events = [json.loads(line.decode("utf-8")) for line in lines]
    assert all(isinstance(event, dict) and "event" in event for event in events)
    return events


async def follow_until(base_url: str, done: Callable[[MemorySink], bool]) -> list[dict[str, Any]]:
    """Follow `pipe_x` in-process on fake time, a second at a time, until `done(sink)`; stop;
    return the events as the stdout sink's exact bytes, parsed strictly."""
    config = Config(key=ServiceKey(KEY), pipelines=("pipe_x",), base_url=base_url,
                    interval_s=1.0, http=HttpSettings(max_response_bytes=CAP),
                    backoff=BackoffPolicy(max_s=2.0))
    clock, stop, started, sink = FakeClock(), anyio.Event(), anyio.Event(), MemorySink()
    runners: list[Runner] = []

    def got(runner: Runner) -> None:
        runners.append(runner)
        started.set()

    async with anyio.create_task_group() as group:
        group.start_soon(lambda: follow(config, sink=sink, clock=clock, stop=stop,
                                        rng=random.Random(1), on_runner=got))
        await started.wait()
        with anyio.fail_after(20):
            while not done(sink):
                await advance_to(runners[0], clock, clock.monotonic() + 1.0)
            await settle(runners[0], clock)
        stop.set()
    return parse_lines(encode(sink.events))


# --- 1. hostile answers --------------------------------------------------------------------------

LINES = ["nul\x00byte", "\x1b[31mred\x1b[0m\x1b]0;title\x07", "cr\rinside", "\ufeffbom",
         "sep\u2028par\u2029nel\x85", "tab\tvt\x0bff\x0cdel\x7f", "\U0001f600"]
ODD_PODS = ["evil\r\nX-Injected: 1", "../../etc/passwd", "a/b/../c", "%2e%2e%2f", ""]


def hostile_script() -> list[tuple[Responder, str | None]]:
    """Answers in order, each with the api_error kind it must give (None: good events)."""
    tail = "one\n" + "\n".join(LINES) + "\n"
    bad = envelope({"uid": None, "pods": [{"pod": "p1", "logs": "one\nBAD\n"}]})
    packer = zlib.compressobj(1, zlib.DEFLATED, 31)  # gzip: 64 MB of zeros in ~64 KB
    bomb = b"".join([*(packer.compress(bytes(1 << 20)) for _ in range(64)), packer.flush()])

    def pods(value: object) -> Responder:
        return raw(envelope({"uid": None, "pods": value}))

    return [
        (tails({"p1": "one\n"}), None),
        (raw(b"[" * 100_000 + b"]" * 100_000), MALFORMED),
        (raw(b'{"data":{"uid":null,"pods":' + b"[" * 5000 + b"]" * 5000 + b"}}"), MALFORMED),
        (raw(b"\xff\xfe\xfd{}"), MALFORMED),
        (raw(bad.replace(b"BAD", b"\xc3\x28\xff")), MALFORMED),  # lines read, the pod named
        (raw(bad.replace(b"BAD", b"\\ud800")), None),  # the same problem: not reported again
        (tails({"p1": tail}), None),
        (raw(b" " * (CAP + 1)), MALFORMED),
        (chunked_over_cap, MALFORMED),
        (raw(bomb, **{"Content-Encoding": "gzip"}), MALFORMED),
        (raw(b"{}", **{"X-Big": "a" * 100_000}), "network_error"),
        (raw(b"", 302, Location="http://evil.invalid/"), "unexpected_status"),
        (pods([{"pod": 123, "logs": "x"}]), MALFORMED),
        (pods([{"pod": "p1", "logs": 42}]), MALFORMED),
        (pods({"pod": "p1"}), MALFORMED),
        (pods([{"pod": "p1", "logs": ""}] * 2), MALFORMED),
        (raw(envelope([])), MALFORMED),
        (raw(envelope({"pods": []}, error="yes")), MALFORMED),
        (raw(b"[]"), MALFORMED),
        (tails({"p1": tail + "two\n", **{pod: "odd\n" for pod in ODD_PODS}}), None),
        (tails({"p1": tail + "two\n", **{f"p{i:05}": "many\n" for i in range(5000)}}), None),
        (tails({"p1": tail + "two\nlast\n"}), None),
    ]


async def test_hostile_answers_give_events_or_api_errors_and_polling_goes_on() -> None:
    """Deep JSON, bad UTF-8, control bytes, huge bodies, odd pods and wrong types never break
    the JSON Lines framing, never crash, and polling goes on to the last answer."""
    script = hostile_script()
    server = Scripted([respond for respond, _ in script])
    async with serve(server.handle) as base_url:
        with capture_logs() as logs:
            events = await follow_until(base_url, lambda _: server.served >= len(script))
    errors = [e for e in events if e["event"] == "api_error"]
    assert [e["error"] for e in errors] == [kind for _, kind in script if kind]
    assert all(e["retry_in_s"] is not None and len(e["message"]) <= 300 for e in errors)
    assert all("exceeds 2097152 bytes" in e["message"] for e in errors[4:7])
    repaired = ["\ufffd(\ufffd", "one", "\ufffd", "one"]  # each repaired tail shares no line
    expected = ["one", *repaired, *LINES, "two", *["odd"] * len(ODD_PODS), *["many"] * 5000, "last"]
    assert [e["message"] for e in events if e["event"] == "log"] == expected
    added = [e["pod"] for e in events if e["event"] == "pod_added"]
    assert added[:1 + len(ODD_PODS)] == ["p1", *ODD_PODS] and len(added) == 5006
    # Pods that left are removed only after pods.grace_s: this run is shorter than that.
    assert not [e for e in events if e["event"] == "pod_removed"]
    assert not [entry for entry in logs if "exc_info" in entry or "exception" in entry]


async def test_a_one_megabyte_line_is_cut_with_a_marker_and_never_dropped() -> None:
    """A 1 MB line becomes one `truncated` event within the line limit; its neighbours stay."""
    long = "x" * 1_000_000
    server = Scripted([tails({"p1": f"a\n{long}\nb\n"}), tails({"p1": f"a\n{long}\nb\nc\n"})])
    async with serve(server.handle) as base_url:
        events = await follow_until(base_url, lambda _: server.served >= 2)
    logs = [e for e in events if e["event"] == "log"]
    assert [(e["seq"], e.get("truncated")) for e in logs] == [
        (1, None), (2, True), (3, None), (4, None)]
    cut = logs[1]["message"]
    assert cut.startswith("x" * 1000) and re.search(r"\u2026\[cut \d+ bytes\]$", cut)
    assert len(cut.encode()) <= DEFAULT_MAX_LINE_BYTES


async def test_a_key_echoed_into_pod_names_and_lines_is_masked_in_events() -> None:
    """An API that echoes the bearer token into pod names and lines gets it masked in events."""

    async def echo(request: web.Request) -> web.StreamResponse:
        token = request.headers["Authorization"].removeprefix("Bearer ")
        return await tails({f"pod-{token}": f"token={token}\n"})(request)

    async with serve(echo) as base_url:
        text = json.dumps(await follow_until(base_url, lambda sink: bool(sink.events)))
    assert KEY not in text and MASK in text


# --- 2. hostile ids, 3. HTTPS --------------------------------------------------------------------

HOSTILE_IDS = ["../x", "pipe_a/../b", "pipe_%2e%2e", "pipe_..", "pipe_a\r\nHost: evil.example",
               "pipe_a\n", "pipe_" + "a" * 129, "pipe_a?page_size=1", "pipe_a#f", "pipe_a b",
               "pipe_\u0430", "PIPE_a", "/pipe_a", "pipe_a/"]


async def test_hostile_pipeline_ids_exit_2_before_any_request() -> None:
    """Ids with `..`, `/`, `%`, CRLF or too long exit 2 naming each; the API sees no request."""
    server = Scripted([tails({})])
    async with serve(server.handle) as base_url:
        ids = [a for i in ["pipe_ok", *HOSTILE_IDS] for a in ("--pipeline", i)]
        async with follower("run", "--base-url", base_url, *ids,
                            env=env_with(GOLDRUSH_SERVICE_KEY=KEY)) as run:
            assert await run.exit_code() == 2
        async with create_session() as session:  # the client refuses them on its own, too
            api = PipelineApi(session, base_url=base_url, key=lambda: ServiceKey(KEY),
                              clock=FakeClock())
            for pipeline_id in [*HOSTILE_IDS, "pipe_a\x00"]:
                with pytest.raises(ValueError, match="invalid pipeline id"):
                    await api.logs(pipeline_id)
    text = "\n".join(run.stderr)
    assert all(f"pipelines[{i + 1}]: invalid pipeline id" in text for i in range(len(HOSTILE_IDS)))
    assert (run.stdout, server.requests) == ([], [])


LOOPBACK_OR_TLS = ["https://api.covalenthq.com", "https://10.0.0.7:8443", "http://127.0.0.1:8080",
                   "http://127.9.9.9", "http://localhost:1234", "http://[::1]:1234"]
PLAIN_HTTP = ["http://api.covalenthq.com", "HTTP://api.covalenthq.com", "http://10.0.0.7",
              "http://0.0.0.0:80", "http://localhost.evil.example", "http://127.0.0.1.nip.io"]
NEVER = ["ftp://api.covalenthq.com", "http://[::1", "https://api.covalenthq.com:99999",
         "https://evil.example\\@127.0.0.1", "file:///etc/passwd", "//api.covalenthq.com"]


@pytest.mark.parametrize("insecure", [False, True])
@pytest.mark.parametrize("base_url", LOOPBACK_OR_TLS + PLAIN_HTTP + NEVER)
def test_https_is_required_except_to_loopback_or_when_allowed(
    tmp_path: Path, base_url: str, insecure: bool
) -> None:
    """http:// only to loopback unless allow_insecure_http; a bad URL is a ConfigError."""
    toml = tmp_path / "follower.toml"
    toml.write_text(f"[http]\nallow_insecure_http = {str(insecure).lower()}\n", encoding="utf-8")
    env, flags = {"GOLDRUSH_SERVICE_KEY": KEY}, {"base_url": base_url, "pipelines": ["pipe_a"]}
    if base_url in LOOPBACK_OR_TLS or (insecure and base_url in PLAIN_HTTP):
        assert load_config(config_path=toml, env=env, flags=flags).base_url == base_url
    else:
        with pytest.raises(ConfigError, match="base_url: "):
            load_config(config_path=toml, env=env, flags=flags)
    default = load_config(config_path=None, env=env, flags={"pipelines": ["pipe_a"]})
    assert default.base_url == "https://api.covalenthq.com" and not default.http.allow_insecure_http


@pytest.mark.parametrize("base_url", [
    f"https://user:{KEY}@api.covalenthq.com", f"https://{KEY}@api.covalenthq.com",
    f"https://api.covalenthq.com/?key={KEY}", f"https://api.covalenthq.com/#{KEY}",
    f"ftp://u:{KEY}@api.covalenthq.com", f"http://u:{KEY}@example.com", f"http://u:{KEY}@[::1",
])
def test_config_errors_never_echo_credentials_or_queries(base_url: str) -> None:
    """A key pasted into the base URL is never repeated in the configuration error."""
    with pytest.raises(ConfigError) as caught:
        load_config(config_path=None, env={"GOLDRUSH_SERVICE_KEY": KEY},
                    flags={"base_url": base_url, "pipelines": ["pipe_a"]})
    assert KEY not in str(caught.value) and "base_url: " in str(caught.value)


async def test_https_verifies_the_certificate(tmp_path: Path) -> None:
    """A self-signed certificate fails the handshake: network_error, and no request is served."""
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    await anyio.run_process(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                             "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj",
                             "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                             "-keyout", str(key), "-out", str(cert)])
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    server = Scripted([tails({"p1": "a\n"})])
    async with serve(server.handle, tls) as base_url:
        assert base_url.startswith("https://127.0.0.1:")
        events = await follow_until(base_url, lambda sink: bool(sink.events))
    assert {e["error"] for e in events} == {"network_error"}
    assert all("certificate verify failed" in e["message"] for e in events)
    assert server.requests == []


# --- 4. file modes, 5. the key never leaks -------------------------------------------------------


@asynccontextmanager
async def simulator(key: str) -> AsyncIterator[tuple[list[str], web.Application]]:
    """The simulator on real time, accepting `key`; yields `run` arguments for two pipelines."""
    clock = SystemClock()
    world = World(WORLD, start=clock.monotonic() - 5.0, wall_at_start=clock.wall() - 5.0)
    app = create_app(world, clock, key)
    async with TestServer(app, host="127.0.0.1") as server:
        ids = [a for p in world.pipeline_ids[:2] for a in ("--pipeline", p)]
        yield ["run", "--base-url", str(server.make_url("")).rstrip("/"), *ids], app


async def eventually(check: Callable[[], bool]) -> None:
    """Wait until `check()` holds, looking every 50 ms (files and scrapes signal nothing)."""
    with anyio.fail_after(15):
        while not check():
            await SystemClock().sleep(0.05)


def count(path: Path, text: str) -> int:
    return path.read_text(encoding="utf-8").count(text) if path.exists() else 0


async def test_state_and_event_files_are_not_world_readable(tmp_path: Path) -> None:
    """Even under umask 000: state file 0600, event files 0640, output folder not world-writable."""
    state, out = tmp_path / "state.json", tmp_path / "out"
    async with simulator("cli-test-key-0123456789") as (args, _):
        old = os.umask(0)  # the follower's process inherits it
        try:
            async with follower(*args, "--interval", "0.2", "--state-file", str(state),
                                "--output", "file", "--output-dir", str(out)) as run:
                await eventually(lambda: count(out / "events.jsonl", '"event":"log"') >= 5)
                run.process.send_signal(signal.SIGTERM)
                assert await run.exit_code() == 0
        finally:
            os.umask(old)
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    assert {stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()} == {0o640}
    assert stat.S_IMODE(out.stat().st_mode) & 0o007 == 0


async def scrape(base: str) -> str:
    async with aiohttp.ClientSession() as session:
        texts = []
        for path in ("/metrics", "/healthz", "/readyz"):
            async with session.get(base + path) as response:
                texts.append(await response.text())
    return "\n".join(texts)


def leaked(texts: list[str], root: Path) -> list[str]:
    """Where either key appears: in `texts`, or in any file under `root`."""
    found = [f"text {i}" for i, text in enumerate(texts) if KEY in text or NEW_KEY in text]
    files = {str(p): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    return found + [name for name, data in files.items()
                    if KEY.encode() in data or NEW_KEY.encode() in data]


async def test_key_never_leaks_through_revocation_and_rotation(tmp_path: Path) -> None:
    """Valid, revoked, then rotated key file: stdout, stderr, files, state and /metrics never
    show either key, and the follower resumes with the new key."""
    secret, work = tmp_path / "secret", tmp_path / "work"
    secret.mkdir()
    work.mkdir()
    key_file, out, state = secret / "key", work / "out", work / "state.json"
    key_file.write_text(KEY + "\n", encoding="utf-8")
    toml = work / "follower.toml"
    toml.write_text("checkpoint_interval_s = 0.2\n[backoff]\ninitial_s = 0.05\nmax_s = 0.3\n")
    events, scraped = out / "events.jsonl", []
    async with simulator(KEY) as (args, app), follower(
        *args, "--interval", "0.2", "--config", str(toml), "--listen", "127.0.0.1:0",
        "--state-file", str(state), "--output", "file", "--output-dir", str(out),
        "--log-level", "debug", env=env_with(GOLDRUSH_SERVICE_KEY_FILE=str(key_file)),
    ) as run:
        await run.wait_for("ops_server_listening", where="stderr")
        match = re.search(r'"url": "(http://[^"]+)"', "\n".join(run.stderr))
        assert match is not None
        await eventually(lambda: count(events, '"event":"log"') >= 10 and state.exists())
        scraped.append(await scrape(match.group(1)))
        app[CONTROL].revoke_key()
        await run.wait_for("service_key_rejected", where="stderr")
        await eventually(lambda: count(events, '"error":"unauthorized"') >= 1)
        scraped.append(await scrape(match.group(1)))
        before = count(events, '"event":"log"')
        app[CONTROL].add_key(NEW_KEY)
        (secret / "key.new").write_text(NEW_KEY + "\n", encoding="utf-8")
        os.replace(secret / "key.new", key_file)  # as a secret manager rotates it
        await run.wait_for("service_key_reloaded", where="stderr")
        await run.wait_for("service_key_accepted", where="stderr")
        await eventually(lambda: count(events, '"event":"log"') > before)
        scraped.append(await scrape(match.group(1)))
        run.process.send_signal(signal.SIGTERM)
        assert await run.exit_code() == 0
    assert "follower_key_rejected 1.0" in scraped[1] and "follower_key_rejected 0.0" in scraped[2]
    assert leaked([*run.stdout, *run.stderr, *scraped], work) == []
    assert "Traceback" not in run.everything()
    parse_lines(events.read_bytes())


async def test_key_echoed_in_errors_reasons_and_bodies_never_leaks(tmp_path: Path) -> None:
    """A server that echoes the Authorization header into statuses, reasons, bodies and
    headers: every api_error is masked, and the key shows nowhere in the output."""
    answers = 0

    async def echo(request: web.Request) -> web.StreamResponse:
        nonlocal answers
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ")
        failure = orjson.dumps({"data": None, "error": True, "error_message": f"bad {auth}",
                                "error_code": token})
        replies = [
            web.Response(status=500, reason=f"Broken {token}", text=f"trace: {auth}"),
            web.Response(status=503, reason=f"Down {token}", body=failure,
                         headers={"Retry-After": token}),
            web.Response(body=failure),
            web.Response(body=f'{{"data": "{auth}"'.encode()),
            web.Response(body=envelope({"uid": token, "pods": [{"pod": token, "logs": 5}]})),
            web.Response(status=302, reason=f"Go {token}", headers={"Location": f"/?k={token}"}),
            web.Response(status=418, reason=f"Teapot {token}", body=failure),
            web.Response(status=429, reason=f"Slow {token}", body=failure,
                         headers={"Retry-After": "0"}),
            web.Response(status=401, reason=f"Who {token}", body=failure),
            web.Response(status=403, reason=f"No {token}", body=failure),
        ]
        answers += 1
        return replies[min(answers, len(replies)) - 1]

    toml = tmp_path / "follower.toml"
    toml.write_text("[backoff]\ninitial_s = 0.01\nmax_s = 0.05\n", encoding="utf-8")
    async with serve(echo) as base_url, follower(
        "run", "--base-url", base_url, "--pipeline", "pipe_a", "--interval", "0.05", "--config",
        str(toml), "--log-level", "debug", env=env_with(GOLDRUSH_SERVICE_KEY=KEY),
    ) as run:
        await run.wait_for('"error":"forbidden"')
        run.process.send_signal(signal.SIGTERM)
        assert await run.exit_code() == 0
    errors = [e for e in run.events() if e["event"] == "api_error"]
    assert {e["error"] for e in errors} >= {"server_error", "envelope_error", MALFORMED,
                                            "unexpected_status", "throttled", "unauthorized"}
    assert sum(MASK in str(e["message"]) for e in errors) >= 5
    assert leaked([*run.stdout, *run.stderr], tmp_path) == []
    assert "Traceback" not in run.everything()


def test_diagnostics_mask_the_key_in_fields_nesting_and_tracebacks() -> None:
    """The structlog processor masks the key in any field, nested value and exception text."""
    stream = io.StringIO()
    diagnostics.configure("debug", ServiceKey(KEY), stream=stream)
    try:
        log = structlog.get_logger("follower")
        log.info("x", url=f"https://h/?k={KEY}", nested={"a": [f"Bearer {KEY}", (KEY,)]})
        try:
            raise RuntimeError(f"header Authorization: Bearer {KEY}")
        except RuntimeError:
            log.exception("failed")
    finally:
        diagnostics.reset()
    assert KEY not in stream.getvalue() and stream.getvalue().count(MASK) >= 4


async def test_key_file_is_re_read_after_a_401(tmp_path: Path) -> None:
    """A fixed-length key rewritten within one mtime tick (same size, same mtime) is still
    picked up: a 401 makes the follower read the key file again."""
    key_file = tmp_path / "key"
    key_file.write_text("e2e-kez", encoding="utf-8")  # wrong, and as long as the right one
    before, sink = key_file.stat(), MemorySink()

    def fix_key(step: int) -> None:
        if step == 3:
            key_file.write_text("e2e-key", encoding="utf-8")  # the harness's valid key
            os.utime(key_file, ns=(before.st_atime_ns, before.st_mtime_ns))

    async with simulated(SimSettings(pipelines=1, pods=1, rate=5.0, seed=3)) as sim:
        config = sim.config(key=ServiceKey("e2e-kez"), key_file=key_file)
        await sim.follow(config, sink, steps=30, on_step=fix_key)
    assert sink.of_kind("api_error") and sink.of_kind("log")


# --- 6. no shell, no eval, no pickle -------------------------------------------------------------

BANNED_BUILTINS = {"eval", "exec", "compile", "__import__", "breakpoint"}
BANNED_OS = {"system", "popen", "spawnl", "spawnlp", "spawnv", "spawnvp", "execl", "execlp",
             "execv", "execvp", "execve", "fork", "forkpty"}
BANNED_MODULES = {"pickle", "_pickle", "marshal", "shelve", "dill", "subprocess", "pty"}


def banned(node: ast.AST) -> str | None:
    """What is wrong with `node`, or None: an import or a call the daemon must never make."""
    if isinstance(node, ast.Import | ast.ImportFrom):
        names = [alias.name for alias in node.names]
        names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        bad = [name for name in names if name.split(".")[0] in BANNED_MODULES]
        return f"import {bad[0]}" if bad else None
    if not isinstance(node, ast.Call):
        return None
    if isinstance(node.func, ast.Name) and node.func.id in BANNED_BUILTINS:
        return f"{node.func.id}()"
    if isinstance(node.func, ast.Attribute) and node.func.attr in BANNED_OS:
        return f".{node.func.attr}()"
    return "shell=" if any(k.arg == "shell" for k in node.keywords) else None


def test_no_eval_exec_pickle_or_shell_in_the_follower() -> None:
    """The daemon's source has no eval/exec, no pickle/marshal/shelve, no shell, no subprocess."""
    pattern = r"\beval\(|\bexec\(|pickle|shell\s*=\s*True|os\.system|os\.popen"
    found = []
    for path in sorted((ROOT / "follower").rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        found += [f"{path.name}: {match.group()}" for match in re.finditer(pattern, source)]
        found += [f"{path.name}:{getattr(node, 'lineno', 0)}: {why}"
                  for node in ast.walk(ast.parse(source)) if (why := banned(node))]
    assert found == []
