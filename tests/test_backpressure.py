"""A slow or vanished reader: memory stays bounded, lost lines show as gaps, EPIPE exits cleanly."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import anyio
from test_cli import KEY, env_with, served

from follower.clock import SystemClock
from follower.simulator.world import SimSettings


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def test_stalled_reader_keeps_memory_bounded_and_yields_gaps(tmp_path: Path) -> None:
    """stdout not read for a while: RSS stays flat, every line read is valid and in order, and
    what the window lost meanwhile is announced by gap events."""
    clock = SystemClock()
    busy = SimSettings(pipelines=3, pods=2, rate=100.0, window=200, line_style="unique", seed=2)
    async with served(settings=busy) as sim:
        ids = sim.world.pipeline_ids
        args = ["run", "--base-url", sim.base_url, "--interval", "0.2"]
        for pipeline_id in ids:
            args += ["--pipeline", pipeline_id]
        process = await anyio.open_process(
            [sys.executable, "-m", "follower", *args],
            env=env_with(GOLDRUSH_SERVICE_KEY=KEY),
            stderr=None,
        )
        assert process.stdout is not None
        first = await process.stdout.receive(1024)  # it runs and writes
        samples = []
        for _ in range(6):  # nobody reads for 6 s: the pipe fills, the pollers wait
            await clock.sleep(1.0)
            samples.append(rss_kb(process.pid))
        data = bytearray(first)

        async def drain() -> None:
            assert process.stdout is not None
            async for chunk in process.stdout:
                data.extend(chunk)

        async with anyio.create_task_group() as group:
            group.start_soon(drain)
            await clock.sleep(3.0)  # read again: the pollers catch up and see what was lost
            process.send_signal(signal.SIGTERM)
            assert await process.wait() == 0
    assert max(samples) - min(samples[2:]) < 20_000, samples  # no growth with the backlog
    events = [json.loads(line) for line in bytes(data).splitlines()]
    seen: dict[tuple[str, str], int] = {}
    for event in events:
        if event["event"] == "log":
            key = (event["pipeline_id"], event["pod"])
            assert event["seq"] == seen.get(key, 0) + 1  # no hole, no repeat in the numbering
            seen[key] = event["seq"]
    gaps = [e for e in events if e["event"] == "gap"]
    assert gaps, "100 lines/s per pod for 6 s overflow a 200-line window: gaps must be announced"
    assert {g["reason"] for g in gaps} == {"no_overlap"}


async def test_closed_stdout_exits_1_with_a_message_and_a_checkpoint(tmp_path: Path) -> None:
    """The reader goes away (EPIPE): exit 1, a one-line reason, the state saved, no traceback."""
    state = tmp_path / "state.json"
    async with served() as sim:
        args = ["run", "--base-url", sim.base_url, "--interval", "0.2",
                "--pipeline", sim.world.pipeline_ids[0], "--state-file", str(state)]
        read_end, write_end = os.pipe()
        process = await anyio.open_process(
            [sys.executable, "-m", "follower", *args],
            env=env_with(GOLDRUSH_SERVICE_KEY=KEY),
            stdout=write_end,
        )
        os.close(write_end)
        assert process.stderr is not None
        with anyio.fail_after(20):
            await anyio.wait_readable(read_end)
        os.read(read_end, 1024)
        os.close(read_end)  # the reader is gone: the next write gets EPIPE
        with anyio.fail_after(20):
            stderr = b"".join([chunk async for chunk in process.stderr]).decode()
            code = await process.wait()
    assert code == 1
    assert "stopping: the output was closed by its reader (broken pipe)" in stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr
    assert state.exists()
