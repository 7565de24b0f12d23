"""`follower run` where the process meets a hostile world: a stalled reader, an unwritable or
closed stdout, a damaged config file, planted symlinks. Real processes, real signals.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from anyio.abc import Process
from test_cli import KEY, env_with, follower, served

from follower.clock import SystemClock

GRACE_S = 1.0


def stalled_pipe() -> tuple[int, int]:
    """A pipe (read end, write end) already full: a write to it blocks until someone reads."""
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)
    os.set_blocking(write_end, False)
    filler = b"filler\n" * 64
    while True:
        try:
            os.write(write_end, filler)
        except BlockingIOError:
            break
    os.set_blocking(write_end, True)
    return read_end, write_end


def drain(read_end: int) -> bytes:
    """Everything left in a pipe whose writers are gone."""
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


@asynccontextmanager
async def follower_to(stdout: int, *args: str) -> AsyncIterator[Process]:
    """`follower *args` with stdout on the file descriptor `stdout` (stderr collected)."""
    process = await anyio.open_process(
        [sys.executable, "-m", "follower", *args], env=env_with(GOLDRUSH_SERVICE_KEY=KEY),
        stdout=stdout,
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def read_stderr_until(process: Process, text: str, into: bytearray) -> None:
    """Collect the process's stderr until `text` appears in it."""
    assert process.stderr is not None
    with anyio.fail_after(30):
        while text.encode() not in into:
            into.extend(await process.stderr.receive())


def writes_to_a_pipe(pid: int) -> bool:
    """Whether a thread of process `pid` waits in the kernel to write to a pipe."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            if "pipe_write" in (task / "wchan").read_text():
                return True
        except OSError:  # the thread ended meanwhile
            continue
    return False


async def blocked_in_a_pipe_write(pid: int) -> None:
    """Wait until process `pid` is blocked writing to its full stdout pipe."""
    clock = SystemClock()
    with anyio.fail_after(30):
        while not writes_to_a_pipe(pid):
            await clock.sleep(0.05)


def grace_config(path: Path, base_url: str, pipeline_id: str) -> Path:
    path.write_text(
        f'base_url = "{base_url}"\ninterval_s = 0.2\npipelines = ["{pipeline_id}"]\n'
        f"shutdown_timeout_s = {GRACE_S}\n",
        encoding="utf-8",
    )
    return path


# --- a reader that stops reading -----------------------------------------------------------------


async def test_sigterm_with_a_stalled_reader_exits_within_the_grace_period(tmp_path: Path) -> None:
    """stdout is a pipe nobody reads: SIGTERM still ends the process within the shutdown grace
    period (plus a little), exit 0, with a checkpoint that covers nothing it could not write."""
    clock = SystemClock()
    state = tmp_path / "state.json"
    read_end, write_end = stalled_pipe()
    stderr = bytearray()
    async with served() as sim:
        config = grace_config(tmp_path / "f.toml", sim.base_url, sim.world.pipeline_ids[0])
        async with follower_to(
            write_end, "run", "--config", str(config), "--state-file", str(state)
        ) as process:
            os.close(write_end)
            await read_stderr_until(process, "follower_started", stderr)
            await blocked_in_a_pipe_write(process.pid)
            process.send_signal(signal.SIGTERM)
            sent = clock.monotonic()
            with anyio.fail_after(GRACE_S + 10):
                assert process.stderr is not None
                async for chunk in process.stderr:
                    stderr.extend(chunk)
                code = await process.wait()
            took = clock.monotonic() - sent
    assert took < GRACE_S + 2.0, took
    assert code == 0, stderr.decode()
    text = stderr.decode()
    assert "Traceback" not in text and "Fatal Python error" not in text
    # The write the process was blocked in when it left may have got part of a line into the
    # pipe (documented: a reader that stopped can find one torn last line); every line before it
    # is whole.
    complete, _, _torn = drain(read_end).rpartition(b"\n")
    os.close(read_end)
    events = [json.loads(line) for line in complete.split(b"\n") if line and line != b"filler"]
    last = {(e["pipeline_id"], e["pod"]): e["seq"] for e in events if e["event"] == "log"}
    saved = json.loads(state.read_text())["pipelines"]
    for pipeline_id, pipeline in saved.items():
        for pod, entry in pipeline["pods"].items():
            assert entry["seq"] <= last.get((pipeline_id, pod), 0), (pod, entry, last)


async def test_second_sigint_with_a_stalled_reader_exits_130_at_once(tmp_path: Path) -> None:
    """A writer blocked on a pipe nobody reads does not hold the process: a second SIGINT ends
    it with 130 at once."""
    clock = SystemClock()
    read_end, write_end = stalled_pipe()
    stderr = bytearray()
    async with served() as sim:
        config = grace_config(tmp_path / "f.toml", sim.base_url, sim.world.pipeline_ids[0])
        config.write_text(config.read_text().replace(f"= {GRACE_S}", "= 60"), encoding="utf-8")
        async with follower_to(write_end, "run", "--config", str(config)) as process:
            os.close(write_end)
            await read_stderr_until(process, "follower_started", stderr)
            await blocked_in_a_pipe_write(process.pid)
            process.send_signal(signal.SIGINT)
            await read_stderr_until(process, "shutdown_started", stderr)
            process.send_signal(signal.SIGINT)
            sent = clock.monotonic()
            with anyio.fail_after(10):
                code = await process.wait()
            took = clock.monotonic() - sent
    os.close(read_end)
    assert code == 130
    assert took < 2.0, took


# --- stdout that cannot be written ---------------------------------------------------------------


def plain_lines(stderr: bytes) -> list[str]:
    """The lines of stderr that are not structured diagnostics (JSON off a terminal)."""
    return [line for line in stderr.decode().splitlines() if not line.startswith("{")]


async def test_stdout_on_a_full_device_exits_1_with_one_line(tmp_path: Path) -> None:
    """stdout on /dev/full (ENOSPC at the first write): exit 1 with the same one-line reason as a
    closed pipe, no traceback, and the state saved."""
    state = tmp_path / "state.json"
    full = os.open("/dev/full", os.O_WRONLY)
    async with served() as sim:
        args = ["run", "--base-url", sim.base_url, "--interval", "0.2",
                "--pipeline", sim.world.pipeline_ids[0], "--state-file", str(state)]
        async with follower_to(full, *args) as process:
            os.close(full)
            assert process.stderr is not None
            with anyio.fail_after(20):
                stderr = b"".join([chunk async for chunk in process.stderr])
                code = await process.wait()
    assert code == 1
    assert plain_lines(stderr) == [
        "follower: stopping: cannot write the output: No space left on device (ENOSPC); "
        "the checkpoint holds what was written"
    ]
    assert b"Traceback" not in stderr and b"Exception ignored" not in stderr
    assert state.exists()


async def test_closed_stdout_at_start_exits_1_with_one_line() -> None:
    """Started with stdout closed (`>&-`): exit 1 with one line saying so, before any request."""
    script = 'exec "$0" -m follower run --pipeline pipe_abc --base-url http://127.0.0.1:9 >&-'
    process = await anyio.open_process(
        ["/bin/sh", "-c", script, sys.executable], env=env_with(GOLDRUSH_SERVICE_KEY=KEY)
    )
    assert process.stderr is not None
    with anyio.fail_after(20):
        stderr = b"".join([chunk async for chunk in process.stderr])
        code = await process.wait()
    assert code == 1
    assert plain_lines(stderr) == [
        "follower: stopping: stdout is not open (closed by whoever started the follower); "
        "nothing was requested"
    ]


# --- planted symlinks in the output folder -------------------------------------------------------


async def test_a_planted_events_symlink_stops_the_start_with_exit_3(tmp_path: Path) -> None:
    """--output-dir holding `events.jsonl` as a symlink: exit 3 naming it, the target untouched."""
    out, victim = tmp_path / "out", tmp_path / "victim"
    out.mkdir()
    victim.write_text("precious\n", encoding="utf-8")
    (out / "events.jsonl").symlink_to(victim)
    async with served() as sim, follower(
        "run", "--base-url", sim.base_url, "--pipeline", sim.world.pipeline_ids[0],
        "--output", "file", "--output-dir", str(out),
    ) as run:
        assert await run.exit_code() == 3
    assert run.stderr[-1] == (
        f"follower: --output-dir: refusing to write events to {out / 'events.jsonl'}: "
        "it is a symbolic link"
    )
    assert victim.read_text(encoding="utf-8") == "precious\n"


async def test_a_symlink_planted_before_a_reopen_stops_the_run_with_exit_1(tmp_path: Path) -> None:
    """After logrotate's rename a symlink takes the name before SIGHUP: the follower refuses it,
    exits 1 with one line, writes nothing through it, and its checkpoint covers only the lines
    in the renamed file."""
    clock = SystemClock()
    out, victim, state = tmp_path / "out", tmp_path / "victim", tmp_path / "state.json"
    victim.write_text("precious\n", encoding="utf-8")
    async with served() as sim:
        args = ["run", "--base-url", sim.base_url, "--interval", "0.2",
                "--pipeline", sim.world.pipeline_ids[0], "--output", "file",
                "--output-dir", str(out), "--state-file", str(state)]
        async with follower(*args) as run:
            live = out / "events.jsonl"
            while not live.exists() or live.read_text().count("\n") < 20:
                await clock.sleep(0.05)
            live.rename(out / "events.jsonl.1")
            live.symlink_to(victim)
            run.process.send_signal(signal.SIGHUP)
            assert await run.exit_code() == 1
    assert victim.read_text(encoding="utf-8") == "precious\n"
    assert [line for line in run.stderr if not line.startswith("{")] == [
        f"follower: stopping: refusing to write events to {live}: it is a symbolic link; "
        "the checkpoint holds what was written"
    ]
    events = [json.loads(line) for line in (out / "events.jsonl.1").read_text().splitlines()]
    last = {e["pod"]: e["seq"] for e in events if e["event"] == "log"}
    saved = json.loads(state.read_text())["pipelines"][sim.world.pipeline_ids[0]]["pods"]
    assert saved and all(entry["seq"] <= last.get(pod, 0) for pod, entry in saved.items())


# --- a configuration file that is not TOML text --------------------------------------------------

NOT_UTF8 = b'interval_s = 0.2\nbase_url = "http://127.0.0.1:9/\xc3'  # a write cut mid-character
DEEP = b"x = " + b"[" * 100_000 + b"]" * 100_000 + b"\n"


async def test_a_config_file_that_is_not_utf8_or_too_deep_exits_2_naming_it(
    tmp_path: Path,
) -> None:
    """A config file cut inside a UTF-8 character, or nested 100,000 deep: exit 2 naming the
    file, no traceback."""
    for name, content, reason in [("cut.toml", NOT_UTF8, "not UTF-8"),
                                  ("deep.toml", DEEP, "nested too deeply")]:
        config = tmp_path / name
        config.write_bytes(content)
        async with follower("run", "--config", str(config), "--pipeline", "pipe_abc") as run:
            assert await run.exit_code() == 2
        text = "\n".join(run.stderr)
        assert f"--config: {str(config)!r} is {reason}" in text, text
        assert "Traceback" not in text


async def test_sighup_with_a_config_file_that_is_not_utf8_is_rejected(tmp_path: Path) -> None:
    """SIGHUP while the config file is cut inside a UTF-8 character: `reload_rejected` naming
    the file, and the running configuration goes on following."""
    config = tmp_path / "follower.toml"
    async with served() as sim:
        pipeline_id = sim.world.pipeline_ids[0]
        config.write_text(
            f'base_url = "{sim.base_url}"\ninterval_s = 0.2\npipelines = ["{pipeline_id}"]\n',
            encoding="utf-8",
        )
        async with follower("run", "--config", str(config)) as run:
            await run.wait_for('"event":"log"', count=5)
            config.write_bytes(NOT_UTF8)
            run.process.send_signal(signal.SIGHUP)
            await run.wait_for("reload_rejected", where="stderr")
            before = sum('"event":"log"' in line for line in run.stdout)
            await run.wait_for('"event":"log"', count=before + 5)  # still following
            run.process.send_signal(signal.SIGTERM)
            assert await run.exit_code() == 0
    rejected = next(line for line in run.stderr if "reload_rejected" in line)
    assert str(config) in rejected and "not UTF-8" in rejected
    assert "Traceback" not in run.everything()


# --- the checkpoint's temporary file -------------------------------------------------------------


async def test_a_symlink_planted_at_the_checkpoint_temporary_is_not_followed(
    tmp_path: Path,
) -> None:
    """A symlink planted where the checkpoint's temporary file used to go (`.state.json.tmp-PID`)
    is never written through: its target stays as it was, and the checkpoint is saved."""
    state, victim = tmp_path / "state.json", tmp_path / "victim"
    victim.write_text("precious\n", encoding="utf-8")
    async with served() as sim, follower(
        "run", "--base-url", sim.base_url, "--interval", "0.2",
        "--pipeline", sim.world.pipeline_ids[0], "--state-file", str(state),
    ) as run:
        (tmp_path / f".state.json.tmp-{run.process.pid}").symlink_to(victim)
        await run.wait_for('"event":"log"', count=5)
        run.process.send_signal(signal.SIGTERM)
        assert await run.exit_code() == 0
    assert victim.read_text(encoding="utf-8") == "precious\n"
    assert json.loads(state.read_text())["pipelines"]
