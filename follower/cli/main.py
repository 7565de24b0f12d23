"""The command line: parse, configure diagnostics, run, map outcomes to exit codes.

Exit codes: 0 stopped cleanly (SIGTERM/SIGINT, or --duration elapsed), 1 stopped by a runtime
failure (output closed, no pipeline left to follow), 2 invalid configuration (nothing was
requested), 3 could not start, 130 a second SIGINT cut the shutdown short. An error that ends
the process is a `FollowerError`, which carries its exit code and its one line (follower.errors):
`_fail` maps every one the same way.

Size: over 300 lines because it holds one short function per command beside the signal handling
and exit-code mapping they share; each command's work lives elsewhere (engine, cli/interactive.py,
cli/check.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, NoReturn

import anyio
import anyio.abc
import structlog

from follower.api.secret import remember
from follower.cli.check import config_failure, render, run_checks
from follower.cli.demo import demo
from follower.cli.entry import hold_late_signals
from follower.cli.interactive import PodFilter, pipeline_rows, tail
from follower.cli.parser import DEFAULT_TAIL_LINES, FLAG_KEYS, build_parser, config_flags
from follower.clock import SystemClock
from follower.config import DEFAULT_SOURCE, Config, load_config, only_source
from follower.engine.poller import PollStats
from follower.engine.runner import Runner
from follower.engine.service import build_sink, follow, reload
from follower.errors import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    CheckpointError,
    ConfigError,
    FollowerError,
    SinkClosedError,
    SinkError,
)
from follower.ops import diagnostics
from follower.simulator.cli import run_simulate
from follower.sinks import Sink, reopen, stalled
from follower.sinks.terminal import render_pipelines


async def _until_signalled(
    body: Callable[[anyio.Event], Awaitable[PollStats]],
    duration_s: float,
    on_hangup: Callable[[], Awaitable[None]] | None = None,
) -> PollStats | None:
    """Run `body(stop)`; the first SIGTERM/SIGINT sets `stop`, a second SIGINT cancels at once.

    SIGHUP calls `on_hangup` (reload the configuration, reopen output files).
    """
    stop = anyio.Event()
    result: PollStats | None = None
    log = structlog.get_logger("follower")

    async def watch_signals(
        scope: anyio.CancelScope, *, task_status: anyio.abc.TaskStatus[None]
    ) -> None:
        try:
            with anyio.open_signal_receiver(
                signal.SIGTERM, signal.SIGINT, signal.SIGHUP
            ) as signals:
                task_status.started()  # handlers are installed before the body runs
                async for signum in signals:
                    if signum == signal.SIGHUP:
                        log.info("reload_requested", signal="SIGHUP")
                        if on_hangup is not None:
                            await on_hangup()
                    elif not stop.is_set():
                        log.info("shutdown_requested", signal=signal.Signals(signum).name)
                        stop.set()
                    elif signum == signal.SIGINT:
                        log.warning("shutdown_forced", signal="SIGINT")
                        scope.cancel()
        finally:
            # Leaving the receiver put back Python's defaults, under which a SIGINT while the
            # process winds down would raise anywhere and a SIGTERM would kill it.
            hold_late_signals()

    async def stop_after(seconds: float) -> None:
        await SystemClock().sleep(seconds)
        stop.set()

    async with anyio.create_task_group() as group:
        await group.start(watch_signals, group.cancel_scope)
        if duration_s > 0:
            group.start_soon(stop_after, duration_s)
        result = await body(stop)
        group.cancel_scope.cancel()
    return result


def _load(ns: argparse.Namespace) -> Config:
    return load_config(
        config_path=ns.config,
        env=os.environ,
        flags=config_flags(ns),
        hostname=socket.gethostname(),
        flag_names={key: flag for flag, (key, _) in FLAG_KEYS.items()},
    )


class _Reloader:
    """SIGHUP: re-read the configuration (rejecting an invalid one) and reopen output files."""

    def __init__(self, ns: argparse.Namespace, config: Config, sink: Sink) -> None:
        self._ns = ns
        self._config = config
        self._sink = sink
        self.runner: Runner | None = None

    async def __call__(self) -> None:
        log = structlog.get_logger("follower")
        if reopen(self._sink):
            log.info("output_reopened", sink=type(self._sink).__name__)
        try:
            new = _load(self._ns)
        except ConfigError as exc:
            log.error("reload_rejected", problems=list(exc.problems),
                      action="the running configuration stays in force")
            return
        if self.runner is not None:
            self._config = await reload(self.runner, self._config, new)


def _configure_diagnostics(level: str, config: Config) -> None:
    """Diagnostics on stderr, with every source's key masked (the top-level key is one)."""
    for source in config.sources:
        remember(source.key)
    diagnostics.configure(level)


def _print_notices(config: Config) -> None:
    """What loading the configuration corrected, on stderr (before diagnostics are set up)."""
    for notice in config.notices:
        print(f"follower: note: {notice}", file=sys.stderr)


def _fail(error: FollowerError, *, stopping: str | None = None) -> int:
    """Print the one line `error` ends the process with; its exit code.

    `stopping` says what a runtime failure (exit 1) leaves behind: such a line reads
    "stopping: <error>; <stopping>".
    """
    text = error.describe()
    if stopping is not None and error.exit_code == EXIT_FAILURE:
        text = f"stopping: {text}; {stopping}"
    print(f"follower: {text}", file=sys.stderr)
    return error.exit_code


def _worst(errors: Sequence[FollowerError]) -> FollowerError:
    """The error to report when several ended a run together: the highest exit code (a bad
    state file or start problem explains a run better than the failures it caused), the first
    among equals."""
    return max(errors, key=lambda error: error.exit_code)


def _cmd_run(ns: argparse.Namespace) -> int:
    try:
        config = _load(ns)
    except FollowerError as exc:
        return _fail(exc)
    _print_notices(config)
    _configure_diagnostics(config.logging.level, config)
    clock = SystemClock()
    try:
        sink = build_sink(config, clock)
    except FollowerError as exc:
        return _fail(exc, stopping="nothing was requested")
    code = _follow_until_signalled(ns, config, sink, clock)
    if stalled(sink):
        _exit_now(code)
    return code


def _exit_now(code: int) -> NoReturn:
    """End the process without the interpreter's exit, which would wait forever for a thread
    blocked writing to a reader that stopped reading (no Python code can interrupt that write;
    it also holds stdout's buffer). The checkpoint is already written and covers only what was.
    """
    structlog.get_logger("follower").warning(
        "output_stalled", action="exiting without waiting for the reader", exit_code=code
    )
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
    os._exit(code)


def _follow_until_signalled(
    ns: argparse.Namespace, config: Config, sink: Sink, clock: SystemClock
) -> int:
    failed: list[FollowerError] = []
    stats: PollStats | None = None
    reloader = _Reloader(ns, config, sink)

    def got_runner(runner: Runner) -> None:
        reloader.runner = runner

    try:
        stats = anyio.run(
            _until_signalled,
            lambda stop: follow(
                config, sink=sink, clock=clock, stop=stop, reset_state=ns.reset_state,
                on_runner=got_runner,
            ),
            ns.duration,
            reloader,
        )
    except* FollowerError as group:
        failed.extend(_leaves(group))
    if failed:
        error = _worst(failed)
        if isinstance(error, SinkError):
            # Nothing can reach the reader any more; point stdout at /dev/null so the
            # interpreter's own flush at exit does not print a second, confusing BrokenPipeError.
            _silence_stdout()
        if isinstance(error, CheckpointError):  # the one failure after which it does not
            return _fail(error)
        return _fail(error, stopping="the checkpoint holds what was written")
    if stats is None:
        return EXIT_INTERRUPTED
    listed = sum(len(source.settings.pipelines) for source in config.sources)
    if stats.pipelines_gone and len(stats.pipelines_gone) == listed:
        print("follower: every pipeline answered 404 (not found); check --pipeline and "
              "--base-url", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def _leaves(group: BaseExceptionGroup[FollowerError]) -> list[FollowerError]:
    """The errors inside (nested) task-group exception groups."""
    found: list[FollowerError] = []
    for exc in group.exceptions:
        found.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return found


def _cmd_demo(ns: argparse.Namespace) -> int:
    diagnostics.configure(ns.log_level)
    clock = SystemClock()
    stats: PollStats | None = None
    closed = False
    try:
        stats = anyio.run(
            _until_signalled,
            lambda stop: demo(stop, pipelines=ns.pipelines, output=ns.output, clock=clock),
            ns.duration,
        )
    except* SinkClosedError:  # `follower demo | head`: the reader has what it wanted
        closed = True
    if closed:
        _silence_stdout()
        return EXIT_OK
    return EXIT_OK if stats is not None else EXIT_INTERRUPTED


def _people_config(ns: argparse.Namespace, **flags: object) -> Config:
    """The configuration for `tail` and `pipelines`: file, environment and a few flags, narrowed
    to one source (`--source NAME` of the file's [[sources]], else the top-level key)."""
    given: dict[str, object] = {"base_url": ns.base_url, **flags}
    if ns.source is None:
        given["discovery.enabled"] = True  # the top-level key, whatever the file lists
    config = load_config(config_path=ns.config, env=os.environ, flags=given,
                         flag_names={"base_url": "--base-url", "interval_s": "--interval"})
    _print_notices(config)
    return only_source(config, ns.source or DEFAULT_SOURCE)


def _patterns(values: list[str], flag: str) -> list[re.Pattern[str]]:
    try:
        return [re.compile(value) for value in values]
    except re.error as exc:
        raise ConfigError([f"{flag}: invalid regular expression: {exc}"]) from None


def _history_lines(ns: argparse.Namespace) -> int:
    """`--tail N`, or what `--since` means in lines, or the default."""
    if ns.tail_lines is not None:
        if ns.tail_lines < -1:
            raise ConfigError([f"--tail: {ns.tail_lines} is not a line count; N >= 0, or -1 "
                               "for the whole current tail"])
        return int(ns.tail_lines)
    return {"start": -1, "now": 0, None: DEFAULT_TAIL_LINES}[ns.since]


def _silence_stdout() -> None:
    """The reader of stdout left: point stdout at /dev/null, so that the interpreter's flush
    at exit does not print a BrokenPipeError."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _cmd_tail(ns: argparse.Namespace) -> int:
    wanted = [*ns.pipeline_names, *ns.more_pipelines]
    try:
        if not wanted:
            raise ConfigError(["PIPELINE: name at least one pipeline (an id or exact name), "
                               "as an argument or with -p; `follower pipelines` lists them"])
        history = _history_lines(ns)
        # No state file (as --no-state): `tail` shows each pod's recent history every time it
        # starts, and must neither move `follower run`'s checkpoint (run would then skip the
        # lines tail showed) nor be refused because a running `run` holds that file.
        config = _people_config(ns, interval_s=ns.interval_s, state_file=False)
        include = _patterns(ns.include, "--include")
        exclude = _patterns(ns.exclude, "--exclude")
        pods = PodFilter(tuple(_patterns(ns.pod, "--pod")),
                         tuple(_patterns(ns.exclude_pod, "--exclude-pod")))
    except FollowerError as exc:
        return _fail(exc)
    _configure_diagnostics(ns.log_level, config)
    clock = SystemClock()
    failed: list[FollowerError] = []
    closed: list[FollowerError] = []
    stats: PollStats | None = None
    try:
        stats = anyio.run(
            _until_signalled,
            lambda stop: tail(
                config, wanted, stop=stop, clock=clock, output=ns.output,
                include=include, exclude=exclude, timestamps=ns.timestamps, pods=pods,
                history=history,
            ),
            0.0,
        )
    except* SinkClosedError as group:
        closed.extend(_leaves(group))
    except* FollowerError as group:
        failed.extend(_leaves(group))
    if closed:  # `follower tail ... | head`: the reader has what it wanted; say nothing
        _silence_stdout()
        return EXIT_OK
    if failed:
        return _fail(_worst(failed))
    return EXIT_OK if stats is not None else EXIT_INTERRUPTED


def _cmd_pipelines(ns: argparse.Namespace) -> int:
    try:
        config = _people_config(ns)
    except FollowerError as exc:
        return _fail(exc)
    _configure_diagnostics("warning", config)
    try:
        rows = anyio.run(pipeline_rows, config, SystemClock())
    except FollowerError as exc:
        return _fail(exc)
    if ns.output == "json":
        text = json.dumps([row.to_json() for row in rows], indent=2, ensure_ascii=False)
    else:
        text = render_pipelines(rows, wide=ns.output == "wide")
    try:
        print(text, flush=True)
    except BrokenPipeError:
        _silence_stdout()
    return EXIT_OK


def _cmd_check(ns: argparse.Namespace) -> int:
    try:
        config = _load(ns)
    except ConfigError as exc:
        print(render(config_failure(exc.problems)))
        return EXIT_CONFIG
    _print_notices(config)
    _configure_diagnostics("error", config)
    findings = anyio.run(
        lambda: run_checks(
            config, SystemClock(), config_path=None if ns.config is None else str(ns.config),
            look_s=ns.look_seconds, sample=ns.sample,
        )
    )
    print(render(findings))
    return EXIT_OK if all(finding.ok for finding in findings) else EXIT_FAILURE


COMMANDS: Final = {
    "run": _cmd_run,
    "tail": _cmd_tail,
    "pipelines": _cmd_pipelines,
    "check": _cmd_check,
    "demo": _cmd_demo,
    "simulate": run_simulate,
}


def run(argv: Sequence[str] | None = None) -> int:
    """Parse `argv` and run its command; the exit code. The process's signals outside the
    command's handlers are `follower.cli.entry`'s."""
    try:
        ns = build_parser().parse_args(argv)
        return COMMANDS[ns.command](ns)
    except KeyboardInterrupt:  # SIGINT before the handlers were installed or after they left
        return EXIT_INTERRUPTED


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Run the command of `argv` in this process and exit with its code (what tests call); the
    console script is `follower.cli.entry.main`, which also owns the process's signals."""
    sys.exit(run(argv))
