"""The process's first and last moments: what SIGTERM and SIGINT do outside a command's handlers.

A command that follows pipelines (`run`, `tail`, `demo`) handles SIGTERM/SIGINT itself while it
runs (`follower.cli.main`). Before that, importing the CLI (anyio, aiohttp, structlog, ...) takes
most of a second, during which Python's defaults would let SIGTERM kill the process (-15) and
SIGINT print a KeyboardInterrupt traceback; after it, the event loop puts back the defaults,
under which a second SIGINT arriving while the process winds down could kill it (-2). So this
module, the console script's entry and `python -m follower`'s, installs its handlers before it
imports anything but the standard library and `follower.errors`:

- while the CLI's modules import: SIGTERM ends the process at once with exit 0 (nothing was
  requested yet: stopped cleanly), SIGINT with 130, no traceback;
- then, until the command installs its own: SIGTERM still exits 0 at once; SIGINT is Python's
  KeyboardInterrupt again, which the commands expect and `follower.cli.main.run` maps to 130;
- once the command's handlers are gone (`hold_late_signals`): a SIGINT makes the exit 130
  (Ctrl-C pressed while stopping) and a SIGTERM changes nothing (the stop is under way); neither
  interrupts the wind-down, so a checkpoint being written is finished;
- when the exit code is decided, both are ignored, so the interpreter's teardown (which would
  put back the default action) cannot end the process by a signal.

Used as a library or in tests (`follower.cli.main.main`), nothing here touches the process.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType
from typing import Final, NoReturn

from follower.errors import EXIT_INTERRUPTED, EXIT_OK

_STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)


class _Process:
    """What this module knows of the process: whether it owns its signals, and the signals that
    arrived outside a command's handlers."""

    owned = False
    late_interrupt = False


def _exit_early(signum: int, frame: FrameType | None) -> None:
    """SIGTERM or SIGINT before the command could act on it: end the process at once.

    Nothing has been done yet that needs undoing or flushing (no request, no event, no
    checkpoint), so `os._exit` is exact; raising instead would reach whatever code is running,
    where it can turn into another error (an exception raised in a class's `__set_name__` while
    a module imports becomes a RuntimeError) or, caught, still end the process by SIGINT at exit
    (CPython 3.11 records a KeyboardInterrupt that ends code run from a string (runpy) as
    unhandled even once it is caught).
    """
    os._exit(EXIT_OK if signum == signal.SIGTERM else EXIT_INTERRUPTED)


def _late(signum: int, frame: FrameType | None) -> None:
    if signum == signal.SIGINT:
        _Process.late_interrupt = True


def hold_late_signals() -> None:
    """The command's handlers are gone: SIGINT now only turns the exit into 130, and SIGTERM
    is ignored, until the exit. No effect unless the process was started by `main`."""
    if _Process.owned:
        for signum in _STOP_SIGNALS:
            signal.signal(signum, _late)


def _settle(code: int) -> int:
    """The exit code, once no signal can change it: ignoring both signals first (which also
    runs a handler whose signal already arrived) leaves the teardown nothing to be killed by."""
    for signum in _STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    return EXIT_INTERRUPTED if _Process.late_interrupt else code


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Entry point of the `follower` console script and of `python -m follower`."""
    _Process.owned = True
    signal.signal(signal.SIGTERM, _exit_early)  # until the command installs its own
    interrupt = signal.getsignal(signal.SIGINT)
    if interrupt is signal.default_int_handler:  # not when started with SIGINT ignored
        signal.signal(signal.SIGINT, _exit_early)
    # Imported here, after the handlers: this import is the slow part of a start.
    from follower.cli.main import run  # noqa: PLC0415

    # From here SIGINT is Python's KeyboardInterrupt again, which the commands expect (asyncio
    # turns it into a cancellation of the run; `run` maps it to 130).
    signal.signal(signal.SIGINT, interrupt)
    sys.exit(_settle(run(argv)))
