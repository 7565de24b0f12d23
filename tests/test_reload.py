"""SIGHUP on a live process: the configuration is re-read, and an invalid one is rejected."""

from __future__ import annotations

import argparse
import json
import os
import signal
from pathlib import Path

import anyio
import pytest
from test_cli import follower, served

from follower.cli import main as cli
from follower.config import Config
from follower.engine.poller import PollStats
from follower.sinks import Reopenable
from follower.testing import MemorySink


def write_config(path: Path, base_url: str, pipelines: list[str], interval: float) -> None:
    path.write_text(
        f'base_url = "{base_url}"\ninterval_s = {interval}\npipelines = {json.dumps(pipelines)}\n',
        encoding="utf-8",
    )


async def test_sighup_adds_and_removes_pipelines_and_keeps_state(tmp_path: Path) -> None:
    """A reload adds B and drops A's successor list; A's sequence numbers carry on, none repeat."""
    config = tmp_path / "follower.toml"
    async with served() as sim:
        a, b, c = sim.world.pipeline_ids
        write_config(config, sim.base_url, [a, c], 0.2)
        async with follower("run", "--config", str(config)) as run:
            await run.wait_for(f'"pipeline_id":"{a}"', count=20)
            write_config(config, sim.base_url, [a, b], 0.3)
            run.process.send_signal(signal.SIGHUP)
            await run.wait_for("config_reloaded", where="stderr")
            await run.wait_for(f'"event":"log","pipeline_id":"{b}"', count=5)
            config.write_text("interval_s = -3\n", encoding="utf-8")  # invalid
            run.process.send_signal(signal.SIGHUP)
            await run.wait_for("reload_rejected", where="stderr")
            before = sum('"event":"log"' in line for line in run.stdout)
            await run.wait_for('"event":"log"', count=before + 20)  # still following
            run.process.send_signal(signal.SIGTERM)
            assert await run.exit_code() == 0
    events = run.events()
    added = [e["pipeline_id"] for e in events if e["event"] == "pipeline_added"]
    removed = [(e["pipeline_id"], e["reason"]) for e in events if e["event"] == "pipeline_removed"]
    assert added == [b]
    assert removed == [(c, "not_configured")]
    seqs = [(e["pod"], e["seq"]) for e in events if e["event"] == "log" and e["pipeline_id"] == a]
    assert len(seqs) == len(set(seqs))
    pods_a = {pod for pod, _ in seqs}
    for pod in pods_a:
        numbers = [seq for p, seq in seqs if p == pod]
        assert numbers == list(range(1, len(numbers) + 1))  # state kept: no restart from 1
    assert not [e for e in events if e["event"] == "gap"]
    rejected = next(line for line in run.stderr if "reload_rejected" in line)
    assert "interval_s" in rejected


async def test_sighup_reopens_output_files_after_an_external_rotation(tmp_path: Path) -> None:
    """logrotate renames the file and sends SIGHUP: writing goes on in a new file, nothing lost
    or repeated across the two."""
    from follower.clock import SystemClock

    out = tmp_path / "out"
    clock = SystemClock()
    async with served() as sim:
        pipeline_id = sim.world.pipeline_ids[0]
        args = ["run", "--base-url", sim.base_url, "--interval", "0.2", "--pipeline", pipeline_id,
                "--output", "file", "--output-dir", str(out)]
        async with follower(*args) as run:
            live = out / "events.jsonl"
            while not live.exists() or live.read_text().count("\n") < 20:
                await clock.sleep(0.05)
            live.rename(out / "events.jsonl.old")
            run.process.send_signal(signal.SIGHUP)
            await run.wait_for("output_reopened", where="stderr")
            while not live.exists() or live.read_text().count("\n") < 20:
                await clock.sleep(0.05)
            run.process.send_signal(signal.SIGTERM)
            assert await run.exit_code() == 0
    old = [json.loads(line) for line in (out / "events.jsonl.old").read_text().splitlines()]
    new = [json.loads(line) for line in live.read_text().splitlines()]
    seqs = [(e["pod"], e["seq"]) for e in old + new if e["event"] == "log"]
    assert len(seqs) == len(set(seqs))
    for pod in {pod for pod, _ in seqs}:
        numbers = [seq for p, seq in seqs if p == pod]
        assert numbers == list(range(1, len(numbers) + 1))
    assert any(e["event"] == "log" for e in new)


class ReopenableSink(MemorySink):
    """A sink of some future kind that holds files: it defines reopen()."""

    def __init__(self) -> None:
        super().__init__()
        self.reopened = anyio.Event()

    def reopen(self) -> None:
        self.reopened.set()


async def test_sighup_calls_reopen_on_any_sink_that_defines_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The CLI reopens by the Reopenable Protocol, not by sink class: a real SIGHUP reaches the
    reopen() of a sink it has never heard of; a sink without one is left alone."""
    config = Config(key=None, pipelines=())
    monkeypatch.setattr(cli, "_load", lambda ns: config)
    sink = ReopenableSink()
    reloader = cli._Reloader(argparse.Namespace(), config, sink)

    async def body(stop: anyio.Event) -> PollStats:
        os.kill(os.getpid(), signal.SIGHUP)
        with anyio.fail_after(10):
            await sink.reopened.wait()
        return PollStats()

    assert await cli._until_signalled(body, 0.0, reloader) is not None
    assert isinstance(sink, Reopenable) and not isinstance(MemorySink(), Reopenable)
    await cli._Reloader(argparse.Namespace(), config, MemorySink())()  # nothing to reopen
