"""The command line: parse, configure diagnostics, run, map outcomes to exit codes.

Exit codes: 0 stopped cleanly (SIGTERM/SIGINT, or --duration elapsed), 1 stopped by a runtime
failure (output closed, no pipeline left to follow), 2 invalid configuration (nothing was
requested), 3 could not start, 130 a second SIGINT cut the shutdown short.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Final, NoReturn

import anyio
import anyio.abc
import structlog

from follower import __version__, diagnostics
from follower.checkpoint import StateFileError
from follower.clock import SystemClock
from follower.config import DEFAULT_SOURCE, Config, load_config, only_source
from follower.demo import demo
from follower.errors import ApiError, ConfigError
from follower.interactive import UnknownPipelineError, pipelines_table, tail
from follower.runner import Runner, RunStats
from follower.secret import remember
from follower.service import build_sink, follow, reload
from follower.simulator.cli import add_simulate_arguments, run_simulate
from follower.sinks import Sink
from follower.sinks.files import FileSink, FileSinkError
from follower.sinks.jsonlines import JsonLinesSink, SinkClosedError

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_CONFIG: Final = 2
EXIT_START: Final = 3
EXIT_INTERRUPTED: Final = 130


def build_parser() -> argparse.ArgumentParser:
    """The `follower` argument parser with its subcommands."""
    parser = argparse.ArgumentParser(
        prog="follower",
        description="Follow the logs of GoldRush pipelines and emit only the new lines as JSON.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="follow pipelines, one JSON event per line on stdout",
        description="Follow pipelines. The ServiceKey comes from GOLDRUSH_SERVICE_KEY or the file "
        "named by GOLDRUSH_SERVICE_KEY_FILE; it is never accepted as a flag.",
    )
    _add_follow_arguments(run)

    tail = commands.add_parser(
        "tail",
        help="follow a few pipelines for people: `pipeline/pod | line`, one colour per pod",
        description="Follow pipelines (by id or exact name) and print their lines like stern. "
        "The key comes from GOLDRUSH_SERVICE_KEY or GOLDRUSH_SERVICE_KEY_FILE.",
    )
    tail.add_argument("pipeline_names", nargs="+", metavar="PIPELINE",
                      help="pipeline id or exact name")
    tail.add_argument("--since", choices=("start", "now"), default="now",
                      help="now: only new lines (default); start: the current tails first")
    tail.add_argument("--include", action="append", default=[], metavar="REGEX",
                      help="show only lines matching (repeatable: any)")
    tail.add_argument("--exclude", action="append", default=[], metavar="REGEX",
                      help="hide lines matching (repeatable)")
    tail.add_argument("--output", choices=("text", "json"), default="text",
                      help="text for people (default) or the JSON events of `follower run`")
    tail.add_argument("--timestamps", action="store_true", help="prefix each line with its time")
    tail.add_argument("--base-url", help="API base URL (default https://api.covalenthq.com)")
    tail.add_argument("--interval", type=float, dest="interval_s", metavar="SECONDS",
                      default=2.0, help="seconds between polls (default 2)")
    tail.add_argument("--config", type=Path, help="TOML configuration file")
    tail.add_argument("--source", metavar="NAME", help=SOURCE_HELP)
    tail.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
                      default="warning")

    listing = commands.add_parser(
        "pipelines", help="a table of the pipelines the key can see, with their runtime phase"
    )
    listing.add_argument("--base-url", help="API base URL (default https://api.covalenthq.com)")
    listing.add_argument("--config", type=Path, help="TOML configuration file")
    listing.add_argument("--source", metavar="NAME", help=SOURCE_HELP)

    demo = commands.add_parser(
        "demo", help="start the embedded simulator and follow it, printing readable lines"
    )
    demo.add_argument("--pipelines", type=int, default=3, help="simulated pipelines (default 3)")
    demo.add_argument("--duration", type=float, default=0.0,
                      help="stop after this many seconds (default: run until Ctrl-C)")
    demo.add_argument("--output", choices=("text", "json"), default="text",
                      help="text for people (default) or the JSON events of `follower run`")
    demo.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
                      default="warning")

    simulate = commands.add_parser(
        "simulate", help="serve the embedded fake Pipeline API on loopback"
    )
    add_simulate_arguments(simulate)
    return parser


def _add_follow_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML configuration file")
    parser.add_argument("--pipeline", dest="pipelines", action="append", metavar="ID",
                        help="pipeline id to follow (repeatable)")
    parser.add_argument("--base-url", help="API base URL (default https://api.covalenthq.com)")
    parser.add_argument("--interval", type=float, dest="interval_s", metavar="SECONDS",
                        help="poll each pipeline every SECONDS (default: plan each poll from "
                        "the pipeline's line rate and tail window, within the budget)")
    parser.add_argument("--since", choices=("start", "now"),
                        help="start: emit the current tails in full (default); now: only new lines")
    parser.add_argument("--state-file", type=Path,
                        help="checkpoint file: restarts neither repeat nor lose lines (default: "
                        "$GOLDRUSH_STATE_FILE, else $XDG_STATE_HOME/goldrush-follower/state.json, "
                        "else ~/.local/state/goldrush-follower/state.json)")
    parser.add_argument("--no-state", action="store_const", const=True, default=None,
                        help="run without a state file: every start emits the tails afresh")
    parser.add_argument("--reset-state", action="store_true",
                        help="ignore the state file's content; every pod starts with a gap event")
    parser.add_argument("--max-in-flight", type=int, help="requests in flight at most (default 8)")
    parser.add_argument("--timeout", type=float, dest="timeout_s", metavar="SECONDS",
                        help="per-request timeout (default 10)")
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    parser.add_argument("--discover", action="store_const", const=True, default=None,
                        help="also follow every pipeline the key can see (default without "
                        "--pipeline)")
    parser.add_argument("--budget", type=float, dest="budget_rps", metavar="REQUESTS_PER_S",
                        help="requests per second for all requests of the key (default 10)")
    parser.add_argument("--shard-count", type=int, metavar="N",
                        help="split the pipelines among N followers by a stable hash")
    parser.add_argument("--shard-index", type=int, metavar="I",
                        help="this follower's shard, 0..N-1")
    parser.add_argument("--shard-from-hostname", action="store_const", const=True, default=None,
                        help="take the shard index from the hostname's trailing ordinal "
                        "(StatefulSet pod follower-2 is shard 2)")
    parser.add_argument("--output", choices=("stdout", "file"),
                        help="where events go: stdout (default) or rotated files")
    parser.add_argument("--output-dir", type=Path, metavar="DIR",
                        help="folder of the event files (with --output file)")
    parser.add_argument("--listen", metavar="HOST:PORT",
                        help="serve /metrics, /healthz and /readyz there (e.g. 127.0.0.1:9464)")
    parser.add_argument("--duration", type=float, default=0.0, help=argparse.SUPPRESS)


# Each flag's TOML key (so one validator reports flags and file keys alike) and attribute.
FLAG_KEYS: Final = {
    "--pipeline": ("pipelines", "pipelines"),
    "--base-url": ("base_url", "base_url"),
    "--interval": ("interval_s", "interval_s"),
    "--since": ("since", "since"),
    "--state-file": ("state_file", "state_file"),
    "--max-in-flight": ("http.max_in_flight", "max_in_flight"),
    "--timeout": ("http.timeout_s", "timeout_s"),
    "--log-level": ("logging.level", "log_level"),
    "--discover": ("discovery.enabled", "discover"),
    "--budget": ("budget.requests_per_s", "budget_rps"),
    "--shard-count": ("shard.count", "shard_count"),
    "--shard-index": ("shard.index", "shard_index"),
    "--shard-from-hostname": ("shard.from_hostname", "shard_from_hostname"),
    "--listen": ("ops.listen", "listen"),
    "--output": ("output.kind", "output"),
    "--output-dir": ("output.dir", "output_dir"),
}


def _flags(ns: argparse.Namespace) -> dict[str, object]:
    """Flags in the TOML key space, so one validator reports them like file keys."""
    flags = {key: getattr(ns, attribute) for key, attribute in FLAG_KEYS.values()}
    for key in ("state_file", "output.dir"):
        if flags[key] is not None:
            flags[key] = str(flags[key])
    if getattr(ns, "no_state", None):
        if flags["state_file"] is not None:
            raise ConfigError(["--no-state: and --state-file both given; choose one"])
        flags["state_file"] = False
    return flags


async def _until_signalled(
    body: Callable[[anyio.Event], Awaitable[RunStats]],
    duration_s: float,
    on_hangup: Callable[[], Awaitable[None]] | None = None,
) -> RunStats | None:
    """Run `body(stop)`; the first SIGTERM/SIGINT sets `stop`, a second SIGINT cancels at once.

    SIGHUP calls `on_hangup` (reload the configuration, reopen output files).
    """
    stop = anyio.Event()
    result: RunStats | None = None
    log = structlog.get_logger("follower")

    async def watch_signals(
        scope: anyio.CancelScope, *, task_status: anyio.abc.TaskStatus[None]
    ) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
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
        flags=_flags(ns),
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
        if isinstance(self._sink, FileSink):
            self._sink.reopen()
            log.info("output_reopened", folder=str(self._sink.directory))
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


def _cmd_run(ns: argparse.Namespace) -> int:
    try:
        config = _load(ns)
    except ConfigError as exc:
        print(f"follower: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    _configure_diagnostics(config.log_level, config)
    clock = SystemClock()
    try:
        sink = build_sink(config, clock)
    except FileSinkError as exc:
        print(f"follower: --output-dir: {exc}", file=sys.stderr)
        return EXIT_START
    except SinkClosedError as exc:
        print(f"follower: stopping: {exc}; nothing was requested", file=sys.stderr)
        return EXIT_FAILURE
    code = _follow_until_signalled(ns, config, sink, clock)
    if isinstance(sink, JsonLinesSink) and sink.stalled:
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
    closed: list[BaseException] = []
    bad_state: list[BaseException] = []
    stats: RunStats | None = None
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
    except* (SinkClosedError, FileSinkError) as group:
        closed.extend(_leaves(group))
    except* StateFileError as group:
        bad_state.extend(_leaves(group))
    if bad_state:
        print(f"follower: {bad_state[0]}", file=sys.stderr)
        return EXIT_CONFIG
    if closed:
        # Nothing can reach the reader any more; point stdout at /dev/null so the interpreter's
        # own flush at exit does not print a second, confusing BrokenPipeError.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        print(f"follower: stopping: {closed[0]}; the checkpoint holds what was written",
              file=sys.stderr)
        return EXIT_FAILURE
    if stats is None:
        return EXIT_INTERRUPTED
    listed = sum(len(source.pipelines) for source in config.sources)
    if stats.pipelines_gone and len(stats.pipelines_gone) == listed:
        print("follower: every pipeline answered 404 (not found); check --pipeline and "
              "--base-url", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """The exceptions inside (nested) task-group exception groups."""
    found: list[BaseException] = []
    for exc in group.exceptions:
        found.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return found


def _cmd_demo(ns: argparse.Namespace) -> int:
    diagnostics.configure(ns.log_level)
    clock = SystemClock()
    stats = anyio.run(
        _until_signalled,
        lambda stop: demo(stop, pipelines=ns.pipelines, output=ns.output, clock=clock),
        ns.duration,
    )
    return EXIT_OK if stats is not None else EXIT_INTERRUPTED


def _people_config(ns: argparse.Namespace, **flags: object) -> Config:
    """The configuration for `tail` and `pipelines`: file, environment and a few flags, narrowed
    to one source (`--source NAME` of the file's [[sources]], else the top-level key)."""
    given: dict[str, object] = {"base_url": ns.base_url, **flags}
    if ns.source is None:
        given["discovery.enabled"] = True  # the top-level key, whatever the file lists
    config = load_config(config_path=ns.config, env=os.environ, flags=given,
                         flag_names={"base_url": "--base-url", "interval_s": "--interval"})
    return only_source(config, ns.source or DEFAULT_SOURCE)


SOURCE_HELP: Final = "with [[sources]] in --config: use this source's key and API (default: the "\
    "top-level key, GOLDRUSH_SERVICE_KEY)"


def _patterns(values: list[str], flag: str) -> list[re.Pattern[str]]:
    try:
        return [re.compile(value) for value in values]
    except re.error as exc:
        raise ConfigError([f"{flag}: invalid regular expression: {exc}"]) from None


def _cmd_tail(ns: argparse.Namespace) -> int:
    try:
        config = _people_config(ns, interval_s=ns.interval_s, since=ns.since)
        include = _patterns(ns.include, "--include")
        exclude = _patterns(ns.exclude, "--exclude")
    except ConfigError as exc:
        print(f"follower: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    _configure_diagnostics(ns.log_level, config)
    clock = SystemClock()
    failed: list[BaseException] = []
    try:
        stats = anyio.run(
            _until_signalled,
            lambda stop: tail(
                config, ns.pipeline_names, stop=stop, clock=clock, output=ns.output,
                include=include, exclude=exclude, timestamps=ns.timestamps,
            ),
            0.0,
        )
    except* (UnknownPipelineError, ApiError, SinkClosedError) as group:
        failed.extend(_leaves(group))
    if failed:
        print(f"follower: {failed[0]}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK if stats is not None else EXIT_INTERRUPTED


def _cmd_pipelines(ns: argparse.Namespace) -> int:
    try:
        config = _people_config(ns)
    except ConfigError as exc:
        print(f"follower: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    _configure_diagnostics("warning", config)
    try:
        table = anyio.run(pipelines_table, config, SystemClock())
    except ApiError as exc:
        print(f"follower: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(table)
    return EXIT_OK


COMMANDS: Final = {
    "run": _cmd_run,
    "tail": _cmd_tail,
    "pipelines": _cmd_pipelines,
    "demo": _cmd_demo,
    "simulate": run_simulate,
}


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Entry point of the `follower` console script."""
    ns = build_parser().parse_args(argv)
    try:
        code = COMMANDS[ns.command](ns)
    except KeyboardInterrupt:  # SIGINT before the handlers were installed or after they left
        code = EXIT_INTERRUPTED
    sys.exit(code)
