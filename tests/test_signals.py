"""SIGTERM and SIGINT at the edges of the process's life: while it imports its modules, before
`follower run` handles signals, and while it winds down after a stop. Real processes, real
signals; a gate (a `sitecustomize` module) holds the process at the moment under test, so no
test depends on how fast a machine starts or stops the follower."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from test_cli import KEY, Run, env_with, follower, run_args, served

from follower.cli import entry

IMPORT_GATE = """
import os
import sys


class Gate:
    \"\"\"At the first import of anyio (before the follower can handle signals itself), say so
    on stderr, then wait for a signal whose handler raises: a read of a pipe nobody writes to.\"\"\"

    def find_spec(self, name, path=None, target=None):
        if name != "anyio":
            return None
        sys.meta_path.remove(self)
        sys.stderr.write("gate: importing anyio\\n")
        sys.stderr.flush()
        read_end, _write_end = os.pipe()
        os.read(read_end, 1)
        return None


sys.meta_path.insert(0, Gate())
"""

LATE_GATES = {
    # While the event loop closes, after `follower run` stopped handling signals itself.
    "winding down": """
import asyncio.base_events
import os

_shutdown = asyncio.base_events.BaseEventLoop.shutdown_default_executor


def _signalled_shutdown(self, *args, **kwargs):
    os.kill(os.getpid(), {signum})
    return _shutdown(self, *args, **kwargs)


asyncio.base_events.BaseEventLoop.shutdown_default_executor = _signalled_shutdown
""",
    # In the interpreter's exit functions, once the exit code is decided.
    "at exit": """
import atexit
import os

atexit.register(lambda: os.kill(os.getpid(), {signum}))
""",
    # While the interpreter clears its modules, where it has put back the default actions.
    "in teardown": """
import os


class _Signaller:
    def __del__(self):
        os.kill(os.getpid(), {signum})


_signaller = _Signaller()
""",
}


def gated_env(folder: Path, gate: str) -> dict[str, str]:
    """The environment of a `follower` process whose `sitecustomize` module is `gate`."""
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(gate, encoding="utf-8")
    env = env_with(GOLDRUSH_SERVICE_KEY=KEY)
    env["PYTHONPATH"] = f"{folder}:{env['PYTHONPATH']}"
    return env


def no_traceback(run: Run) -> None:
    assert "Traceback" not in run.everything()
    assert "KeyboardInterrupt" not in run.everything()


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
async def test_a_signal_while_the_modules_import_exits_quietly(
    tmp_path: Path, signum: signal.Signals, code: int
) -> None:
    """While `python -m follower run` still imports its modules (before it could handle
    signals itself), SIGTERM exits 0 and SIGINT 130, without a traceback or an event."""
    env = gated_env(tmp_path / "gate", IMPORT_GATE)
    async with follower(*run_args("http://127.0.0.1:9", ["pipe_abc"], "--no-state"),
                        env=env) as run:
        await run.wait_for("gate: importing anyio", where="stderr")
        run.process.send_signal(signum)
        assert await run.exit_code() == code
    no_traceback(run)
    assert run.stdout == []


@pytest.mark.parametrize(
    ("when", "signum", "code"),
    [
        ("winding down", signal.SIGINT, 130),  # Ctrl-C twice: the second still counts
        ("winding down", signal.SIGTERM, 0),  # the stop is already under way
        ("at exit", signal.SIGINT, 0),  # the exit code is decided: ignored
        ("in teardown", signal.SIGINT, 0),
        ("in teardown", signal.SIGTERM, 0),
    ],
)
async def test_a_signal_after_the_shutdown_never_kills_the_process(
    tmp_path: Path, when: str, signum: signal.Signals, code: int
) -> None:
    """A first SIGINT stops `follower run` quickly; a second signal while the process winds
    down (the event loop closing, exit functions, the interpreter's teardown) never ends it by
    the signal nor prints a traceback: a SIGINT before the exit code is decided makes it 130."""
    env = gated_env(tmp_path / "gate", LATE_GATES[when].format(signum=int(signum)))
    async with served() as sim:
        args = run_args(sim.base_url, sim.world.pipeline_ids[:1], "--no-state")
        async with follower(*args, env=env) as run:
            await run.wait_for('"event":"log"')
            run.process.send_signal(signal.SIGINT)
            assert await run.exit_code() == code
    no_traceback(run)
    assert any('"follower_stopped"' in line for line in run.stderr)


def test_late_signals_are_left_alone_outside_the_console_script() -> None:
    """In a process `entry.main` did not start (tests, a library user), holding late signals
    changes no handler."""
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    entry.hold_late_signals()
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
