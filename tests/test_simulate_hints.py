"""`follower simulate` tells a new user how to point the follower at it, and the commands work."""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys

import anyio
from anyio.streams.text import TextReceiveStream
from test_cli import ROOT, env_with, follower


async def test_simulate_prints_follower_commands_that_work() -> None:
    """The printed `export ...` line and `follower pipelines` list the simulated pipelines."""
    process = await anyio.open_process(
        [sys.executable, "-m", "follower", "simulate", "--port", "0", "--pipelines", "2"],
        env=env_with(),
    )
    assert process.stderr is not None
    text = ""
    try:
        with anyio.fail_after(30):
            async for chunk in TextReceiveStream(process.stderr):
                text += chunk
                if "curl " in text and text.endswith("\n"):
                    break
        lines = text.splitlines()
        exported = next(line.strip() for line in lines if line.strip().startswith("export "))
        variables = dict(word.split("=", 1) for word in shlex.split(exported)[1:])
        async with follower("pipelines", env=env_with(**variables)) as run:
            assert await run.exit_code() == 0
    finally:
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(15):
            assert await process.wait() == 0
    assert variables["GOLDRUSH_SERVICE_KEY"] == "sim-key"
    assert variables["GOLDRUSH_BASE_URL"].startswith("http://127.0.0.1:")
    for command in ("follower pipelines", "follower tail pipe_", "follower run",
                    "follower check", "GOLDRUSH_SERVICE_KEY=sim-key follower run --base-url"):
        assert any(line.strip().startswith(command) for line in lines), command
    ids = [line.strip() for line in lines if line.strip().startswith("pipe_")]
    assert len(ids) == 2
    assert {line.split()[0] for line in run.stdout[1:] if line} == set(ids)


def test_make_simulate_serves_the_simulator() -> None:
    """`make simulate` runs `follower simulate` (checked with make's dry run)."""
    dry = subprocess.run(["make", "-n", "simulate"], cwd=ROOT, capture_output=True, text=True,
                         check=False, timeout=60)
    assert dry.returncode == 0, dry.stderr
    assert "follower simulate --port 8080" in dry.stdout
