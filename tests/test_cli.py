"""`follower run` as a user runs it: a subprocess against the simulator, real signals, real time.

Each test waits on what the process prints, never on a fixed sleep; the timeouts are safety nets.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from anyio.abc import Process
from anyio.streams.text import TextReceiveStream

from follower.clock import SystemClock
from follower.simulator.app import CONTROL, RECORDER, create_app
from follower.simulator.faults import FaultSettings
from follower.simulator.world import SimSettings, World

KEY = "cli-test-key-0123456789"
ROOT = Path(__file__).resolve().parent.parent
WORLD = SimSettings(pipelines=3, pods=2, rate=20.0, window=200, line_style="realistic", seed=4)


@dataclass
class Served:
    base_url: str
    world: World
    app: web.Application


@asynccontextmanager
async def served(
    faults: FaultSettings | None = None, settings: SimSettings = WORLD, key: str = KEY
) -> AsyncIterator[Served]:
    clock = SystemClock()
    world = World(settings, start=clock.monotonic() - 5.0, wall_at_start=clock.wall() - 5.0)
    app = create_app(world, clock, key, faults or FaultSettings())
    async with TestServer(app, host="127.0.0.1") as server:
        yield Served(str(server.make_url("")).rstrip("/"), world, app)


@dataclass
class Run:
    """A running `follower` process with its output collected line by line."""

    process: Process
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    changed: anyio.Event = field(default_factory=anyio.Event)

    async def _pump(self, stream: TextReceiveStream, into: list[str]) -> None:
        buffer = ""
        async for chunk in stream:
            buffer += chunk
            *lines, buffer = buffer.split("\n")
            into.extend(lines)
            self.changed.set()
            self.changed = anyio.Event()
        if buffer:
            into.append(buffer)
        self.changed.set()

    async def wait_for(self, predicate_text: str, where: str = "stdout", count: int = 1) -> None:
        """Wait until `count` lines of stdout/stderr contain `predicate_text`."""
        lines = self.stdout if where == "stdout" else self.stderr
        with anyio.fail_after(30):
            while sum(predicate_text in line for line in lines) < count:
                if self.process.returncode is not None:
                    raise AssertionError(f"exited {self.process.returncode}: {self.stderr}")
                await self.changed.wait()

    async def wait_for_file(self, path: Path) -> None:
        """Wait until `path` exists (a first checkpoint), looking again at each output line."""
        with anyio.fail_after(10):
            while not path.exists():  # noqa: ASYNC240 - one stat of a local file per output line
                await self.changed.wait()

    async def exit_code(self, within_s: float = 15.0) -> int:
        with anyio.fail_after(within_s):
            return await self.process.wait()

    def events(self) -> list[dict[str, object]]:
        parsed = [json.loads(line) for line in self.stdout if line]
        assert all(isinstance(event, dict) and "event" in event for event in parsed)
        return parsed

    def everything(self) -> str:
        return "\n".join(self.stdout + self.stderr)


def env_with(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOLDRUSH_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


@asynccontextmanager
async def follower(*args: str, env: dict[str, str] | None = None) -> AsyncIterator[Run]:
    process = await anyio.open_process(
        [sys.executable, "-m", "follower", *args], env=env or env_with(GOLDRUSH_SERVICE_KEY=KEY)
    )
    run = Run(process)
    assert process.stdout is not None and process.stderr is not None
    async with anyio.create_task_group() as group:
        group.start_soon(run._pump, TextReceiveStream(process.stdout), run.stdout)
        group.start_soon(run._pump, TextReceiveStream(process.stderr), run.stderr)
        try:
            yield run
        finally:
            if process.returncode is None:
                process.kill()
            await process.wait()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_args(base_url: str, pipelines: list[str], *extra: str) -> list[str]:
    args = ["run", "--base-url", base_url, "--interval", "0.2"]
    for pipeline_id in pipelines:
        args += ["--pipeline", pipeline_id]
    return [*args, *extra]


async def test_follows_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    """Lines of every pipeline stream out as JSON; SIGTERM exits 0 with a checkpoint written."""
    state = tmp_path / "state.json"
    async with served() as sim:
        ids = sim.world.pipeline_ids
        async with follower(*run_args(sim.base_url, ids, "--state-file", str(state))) as run:
            for pipeline_id in ids:
                await run.wait_for(f'"pipeline_id":"{pipeline_id}"')
            await run.wait_for('"event":"log"', count=200)
            run.process.send_signal(signal.SIGTERM)
            assert await run.exit_code() == 0
    events = run.events()
    assert {e["pipeline_id"] for e in events if e["event"] == "log"} == set(ids)
    assert all({"ts", "event", "pipeline_id", "pod", "message", "seq"} <= e.keys()
               for e in events if e["event"] == "log")
    assert state.exists()
    assert "Traceback" not in run.everything()
    assert KEY not in run.everything()
    assert any('"follower_stopped"' in line for line in run.stderr)


async def test_restart_after_sigterm_repeats_nothing(tmp_path: Path) -> None:
    """Two runs with one state file: no (pod, seq) and no (pod, message) is emitted twice."""
    state = tmp_path / "state.json"
    collected: list[dict[str, object]] = []
    async with served() as sim:
        ids = sim.world.pipeline_ids[:1]
        for _ in range(2):
            async with follower(*run_args(sim.base_url, ids, "--state-file", str(state))) as run:
                await run.wait_for('"event":"log"', count=50)
                run.process.send_signal(signal.SIGTERM)
                assert await run.exit_code() == 0
            collected += run.events()
    logs = [(e["pod"], e["message"]) for e in collected if e["event"] == "log"]
    assert len(logs) == len(set(logs))
    seqs = [(e["pod"], e["seq"]) for e in collected if e["event"] == "log"]
    assert len(seqs) == len(set(seqs))
    assert not [e for e in collected if e["event"] == "gap"]


async def test_missing_key_exits_2_before_any_request() -> None:
    """No key: exit 2, a message naming the variable and the fix, nothing on stdout."""
    async with follower(
        *run_args("http://127.0.0.1:9", ["pipe_abc"]), env=env_with()
    ) as run:
        assert await run.exit_code() == 2
    assert run.stdout == []
    text = "\n".join(run.stderr)
    assert "GOLDRUSH_SERVICE_KEY: no ServiceKey" in text
    assert "Traceback" not in text


async def test_bad_config_names_every_key() -> None:
    """Bad values exit 2 and name each flag and the valid choices."""
    async with follower(
        "run", "--base-url", "http://example.com", "--pipeline", "pipe_a/../b",
        "--interval", "0",
    ) as run:
        assert await run.exit_code() == 2
    text = "\n".join(run.stderr)
    assert "pipelines[0]: invalid pipeline id 'pipe_a/../b'" in text
    assert "--interval: 0.0 is out of range" in text
    assert "plain http to a non-loopback host" in text
    assert KEY not in text


async def test_unreachable_api_is_reported_without_traceback_or_key() -> None:
    """A closed port: api_error events on stdout, a clear diagnostic on stderr, SIGTERM exits 0."""
    base_url = f"http://127.0.0.1:{closed_port()}"
    async with follower(*run_args(base_url, ["pipe_abc"])) as run:
        await run.wait_for('"event":"api_error"')
        await run.wait_for("poll_failing", where="stderr")
        run.process.send_signal(signal.SIGTERM)
        assert await run.exit_code() == 0
    error = run.events()[0]
    assert error["error"] == "network_error"
    assert "Traceback" not in run.everything()
    assert KEY not in run.everything()


async def test_rejected_key_is_reported_loudly_without_leaking() -> None:
    """401: service_key_rejected on stderr, unauthorized events, the key nowhere in the output."""
    async with served() as sim:
        sim.app[CONTROL].revoke_key()
        async with follower(*run_args(sim.base_url, sim.world.pipeline_ids[:2])) as run:
            await run.wait_for("service_key_rejected", where="stderr")
            await run.wait_for('"error":"unauthorized"')
            run.process.send_signal(signal.SIGTERM)
            assert await run.exit_code() == 0
    assert "Traceback" not in run.everything()
    assert KEY not in run.everything()


async def test_wrong_base_url_every_pipeline_404_exits_1() -> None:
    """A base URL that answers 404 for every pipeline (confirmed by a second look) ends the run
    with exit 1 and the reason."""
    async with served() as sim, follower(*run_args(sim.base_url, ["pipe_doesnotexist"])) as run:
        assert await run.exit_code() == 1
    assert "every pipeline answered 404" in "\n".join(run.stderr)
    assert [(e["event"], e.get("error"), e.get("reason")) for e in run.events()] == [
        ("api_error", "not_found", None), ("api_error", "not_found", None),
        ("pipeline_removed", None, "not_found")
    ]


async def test_second_sigint_exits_at_once() -> None:
    """During a slow shutdown a second SIGINT ends the process at once with 130."""
    faults = FaultSettings(rate_slow=1.0, slow_s=60.0)
    async with served(faults) as sim, follower(
        *run_args(sim.base_url, sim.world.pipeline_ids[:1], "--timeout", "120")
    ) as run:
        await run.wait_for("follower_started", where="stderr")
        recorder = sim.app[RECORDER]
        with anyio.fail_after(10):  # a request in flight: the shutdown waits for it
            while recorder.slowed < 1:
                await SystemClock().sleep(0.05)
        run.process.send_signal(signal.SIGINT)
        await run.wait_for("shutdown_started", where="stderr")
        run.process.send_signal(signal.SIGINT)
        assert await run.exit_code(within_s=5.0) == 130


async def test_state_file_damage_exits_2_with_the_choice(tmp_path: Path) -> None:
    """A corrupt state file: exit 2 naming the file and --reset-state, no request, no traceback."""
    state = tmp_path / "state.json"
    state.write_text('{"version": 1, "pipel', encoding="utf-8")
    async with follower(*run_args("http://127.0.0.1:9", ["pipe_abc"], "--state-file",
                                  str(state))) as run:
        assert await run.exit_code() == 2
    text = "\n".join(run.stderr)
    assert str(state) in text and "--reset-state" in text
    assert "Traceback" not in text


@pytest.mark.parametrize("args", [["--version"], ["run", "--help"]])
async def test_python_dash_m_works(args: list[str]) -> None:
    """`python -m follower` is the console script."""
    async with follower(*args) as run:
        assert await run.exit_code() == 0
    assert run.stdout


async def test_demo_streams_lines_of_three_pipelines() -> None:
    """`follower demo` shows log lines of at least three simulated pipelines, then exits 0."""
    async with follower("demo", "--duration", "2") as run:
        assert await run.exit_code() == 0
    shown = {line.split("/", 1)[0] for line in run.stdout if " | " in line}
    assert len(shown) >= 3


async def test_sigkill_then_restart_loses_nothing(tmp_path: Path) -> None:
    """Killed with SIGKILL and restarted: every observed line is emitted; repeats come only after
    the last checkpoint."""
    from follower.engine import checkpoint

    state = tmp_path / "state.json"
    config = tmp_path / "follower.toml"
    config.write_text("checkpoint_interval_s = 0.3\n", encoding="utf-8")
    runs: list[list[dict[str, object]]] = []
    async with served() as sim:
        ids = sim.world.pipeline_ids
        args = run_args(sim.base_url, ids, "--state-file", str(state), "--config", str(config))
        async with follower(*args) as run:
            await run.wait_for('"event":"log"', count=300)
            await run.wait_for_file(state)
            run.process.kill()
            await run.exit_code()
        runs.append(run.events())
        saved = checkpoint.load(state)
        assert saved is not None
        async with follower(*args) as run:
            await run.wait_for('"event":"log"', count=100)
            run.process.send_signal(signal.SIGTERM)
            assert await run.exit_code() == 0
        runs.append(run.events())
        recorder = sim.app[RECORDER]
        observed = {
            (pipeline_id, pod, line)
            for pipeline_id in ids
            for pod in recorder.observed_pods(pipeline_id)
            for line in recorder.observed(pipeline_id, pod)
        }
    first = [(e["pipeline_id"], e["pod"], e["message"], e["seq"]) for e in runs[0]
             if e["event"] == "log"]
    second = [(e["pipeline_id"], e["pod"], e["message"], e["seq"]) for e in runs[1]
              if e["event"] == "log"]
    emitted = {(p, pod, m) for p, pod, m, _ in first + second}
    assert observed <= emitted  # zero loss
    repeated = {(p, pod, m) for p, pod, m, _ in first} & {(p, pod, m) for p, pod, m, _ in second}
    for p, pod, m, seq in first:
        if (p, pod, m) in repeated:  # only what was emitted after the last checkpoint
            assert isinstance(seq, int) and seq > saved[str(p)].pods[str(pod)].seq
    assert not [e for e in runs[1] if e["event"] == "gap"]


async def test_sigterm_with_the_state_folder_gone_exits_1_naming_the_checkpoint(
    tmp_path: Path,
) -> None:
    """The last checkpoint cannot be saved (its folder was removed while running): the events
    are out, but the exit is 1 with one line saying so, not 0 (a supervisor reads 0 as saved)."""
    folder = tmp_path / "sd"
    folder.mkdir()
    async with served() as sim:
        args = run_args(sim.base_url, sim.world.pipeline_ids[:1], "--state-file",
                        str(folder / "state.json"))
        async with follower(*args) as run:
            await run.wait_for('"event":"log"')
            shutil.rmtree(folder)
            run.process.send_signal(signal.SIGTERM)
            assert await run.exit_code() == 1
    assert "checkpoint_failed" in "\n".join(run.stderr)
    assert "follower: the last checkpoint could not be saved" in "\n".join(run.stderr)
    assert "Traceback" not in run.everything()
