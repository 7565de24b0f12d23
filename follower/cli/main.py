"""The command line: parse, configure diagnostics, run, map outcomes to exit codes.

Exit codes: 0 stopped cleanly (SIGTERM/SIGINT, or --duration elapsed), 1 stopped by a runtime
failure (output closed, no pipeline left to follow), 2 invalid configuration (nothing was
requested), 3 could not start, 130 a second SIGINT cut the shutdown short.
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
from pathlib import Path
from typing import Final, NoReturn

import anyio
import anyio.abc
import structlog

from follower import __version__
from follower.api.secret import remember
from follower.cli.check import DEFAULT_LOOK_S, DEFAULT_SAMPLE, config_failure, render, run_checks
from follower.cli.demo import demo
from follower.cli.interactive import PodFilter, UnknownPipelineError, pipeline_rows, tail
from follower.clock import SystemClock
from follower.config import DEFAULT_SOURCE, Config, load_config, only_source
from follower.engine.checkpoint import StateFileError
from follower.engine.poller import PollStats
from follower.engine.runner import Runner
from follower.engine.service import build_sink, follow, reload
from follower.errors import ApiError, ConfigError
from follower.ops import diagnostics
from follower.simulator.cli import add_simulate_arguments, run_simulate
from follower.sinks import Sink
from follower.sinks.files import FileSink, FileSinkError
from follower.sinks.jsonlines import JsonLinesSink, SinkClosedError
from follower.sinks.terminal import render_pipelines

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
        help="follow a few pipelines for people, like stern: `pod | line`, one colour per pod",
        description="Follow pipelines (by id or exact name) and print their lines like stern. "
        "The key comes from GOLDRUSH_SERVICE_KEY or GOLDRUSH_SERVICE_KEY_FILE. Unlike "
        "`follower run` (which starts with every pod's whole tail), tail shows the last "
        f"{DEFAULT_TAIL_LINES} lines of each pod first (--tail), then new lines.",
    )
    tail.add_argument("pipeline_names", nargs="*", metavar="PIPELINE",
                      help="pipeline id or exact name")
    tail.add_argument("-p", "--pipeline", dest="more_pipelines", action="append", default=[],
                      metavar="PIPELINE", help="a pipeline id or name, like PIPELINE (repeatable)")
    history = tail.add_mutually_exclusive_group()
    history.add_argument("--tail", type=int, dest="tail_lines", metavar="N",
                         help="lines of each pod's history to show on the first look: N, or -1 "
                         f"for the whole current tail (default {DEFAULT_TAIL_LINES})")
    history.add_argument("--since", choices=("start", "now"),
                         help="start: the whole current tail first (= --tail -1); now: only "
                         f"lines written after start (= --tail 0); default: --tail "
                         f"{DEFAULT_TAIL_LINES}")
    tail.add_argument("--pod", action="append", default=[], metavar="REGEX",
                      help="show only pods whose name matches (repeatable: any)")
    tail.add_argument("--exclude-pod", action="append", default=[], metavar="REGEX",
                      help="hide pods whose name matches (repeatable)")
    tail.add_argument("--include", action="append", default=[], metavar="REGEX",
                      help="show only lines matching (repeatable: any)")
    tail.add_argument("--exclude", action="append", default=[], metavar="REGEX",
                      help="hide lines matching (repeatable)")
    tail.add_argument("-o", "--output", choices=("text", "json"), default="text",
                      help="text for people (default) or the JSON events of `follower run`")
    tail.add_argument("-t", "--timestamps", action="store_true",
                      help="prefix each line with its time")
    tail.add_argument("--base-url", help=BASE_URL_HELP)
    tail.add_argument("--interval", type=float, dest="interval_s", metavar="SECONDS",
                      default=2.0, help="seconds between polls (default 2)")
    tail.add_argument("--config", type=Path, help="TOML configuration file")
    tail.add_argument("--source", metavar="NAME", help=SOURCE_HELP)
    tail.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
                      default="warning")

    listing = commands.add_parser(
        "pipelines", help="a table of the pipelines the key can see, with their runtime phase",
        description="List every pipeline the key can see, with its intent (running/paused) "
        "from the list endpoint and its runtime phase and ready/replicas from the status "
        "endpoint. The key comes from GOLDRUSH_SERVICE_KEY or GOLDRUSH_SERVICE_KEY_FILE.",
    )
    listing.add_argument("-o", "--output", choices=("table", "wide", "json"), default="table",
                         help="table (default), wide (adds the runtime uid) or json (an array "
                         "of objects, for scripts)")
    listing.add_argument("--base-url", help=BASE_URL_HELP)
    listing.add_argument("--config", type=Path, help="TOML configuration file")
    listing.add_argument("--source", metavar="NAME", help=SOURCE_HELP)

    check = commands.add_parser(
        "check", help="check a configuration: key, API, pipelines, one poll, budget",
        description="Check what `follower run` would do with the same flags, config file and "
        "environment: the configuration loads, the key is accepted, the API answers, which "
        "pipelines would be followed, one pipeline can be polled, and the request budget "
        "covers the need measured from two looks at the tails. One line per check, ok or "
        "FAIL with its fix. Exit 0 when every check holds, 1 when one fails, 2 when the "
        "configuration is invalid.",
    )
    _add_follow_arguments(check)
    check.add_argument("--look-seconds", type=_non_negative, default=DEFAULT_LOOK_S,
                       metavar="SECONDS", help="seconds between the two looks that measure the "
                       f"line rates (default {DEFAULT_LOOK_S:g})")
    check.add_argument("--sample", type=int, default=DEFAULT_SAMPLE, metavar="N",
                       help=f"pipelines looked at twice (default {DEFAULT_SAMPLE}); the others "
                       "are assumed alike")

    demo = commands.add_parser(
        "demo", help="start the embedded simulator and follow it, printing readable lines",
        description="Start the embedded simulator on a free loopback port and follow all of "
        "its pipelines in the same process, as `follower run` would (no key or network "
        "needed). `follower simulate` serves the simulator alone, for `run`, `tail` and "
        "`pipelines` in another terminal.",
    )
    demo.add_argument("--pipelines", type=int, default=3, help="simulated pipelines (default 3)")
    demo.add_argument("--duration", type=_non_negative, default=0.0, metavar="SECONDS",
                      help="stop after this many seconds (default 0: run until Ctrl-C)")
    demo.add_argument("--output", choices=("text", "json"), default="text",
                      help="text for people (default) or the JSON events of `follower run`")
    demo.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
                      default="warning")

    simulate = commands.add_parser(
        "simulate", help="serve the embedded fake Pipeline API on loopback",
        description="Serve a fake Pipeline API (simulated pipelines, pods, restarts, tail "
        "errors, faults) on loopback until Ctrl-C; it prints the key, the base URL and the "
        "`follower` commands that follow it (`make simulate` starts it on port 8080).",
    )
    add_simulate_arguments(simulate)
    return parser


BASE_URL_HELP: Final = (
    "API base URL (default https://api.covalenthq.com; the form with /platform/pipeline-api/ "
    "is accepted too); env GOLDRUSH_BASE_URL"
)
DEFAULT_TAIL_LINES: Final = 10


def _non_negative(text: str) -> float:
    """argparse type: a number of seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected 0 or more seconds, got {text!r}")
    return value


def _add_follow_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML configuration file")
    parser.add_argument("--pipeline", dest="pipelines", action="append", metavar="ID",
                        help="pipeline id to follow (repeatable)")
    parser.add_argument("--base-url", help=BASE_URL_HELP)
    parser.add_argument("--interval", type=float, dest="interval_s", metavar="SECONDS",
                        help="poll each pipeline every SECONDS (default: plan each poll from "
                        "the pipeline's line rate and tail window, within the budget)")
    parser.add_argument("--since", choices=("start", "now"),
                        help="start (the default here, unlike `follower tail`): emit every "
                        "pod's current tail in full on the first poll; now: only lines written "
                        "after start")
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


def _print_notices(config: Config) -> None:
    """What loading the configuration corrected, on stderr (before diagnostics are set up)."""
    for notice in config.notices:
        print(f"follower: note: {notice}", file=sys.stderr)


def _cmd_run(ns: argparse.Namespace) -> int:
    try:
        config = _load(ns)
    except ConfigError as exc:
        print(f"follower: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    _print_notices(config)
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
    _print_notices(config)
    return only_source(config, ns.source or DEFAULT_SOURCE)


SOURCE_HELP: Final = "with [[sources]] in --config: use this source's key and API (default: the "\
    "top-level key, GOLDRUSH_SERVICE_KEY)"


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
        config = _people_config(ns, interval_s=ns.interval_s)
        include = _patterns(ns.include, "--include")
        exclude = _patterns(ns.exclude, "--exclude")
        pods = PodFilter(tuple(_patterns(ns.pod, "--pod")),
                         tuple(_patterns(ns.exclude_pod, "--exclude-pod")))
    except ConfigError as exc:
        print(f"follower: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    _configure_diagnostics(ns.log_level, config)
    clock = SystemClock()
    failed: list[BaseException] = []
    closed: list[BaseException] = []
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
    except* (UnknownPipelineError, ApiError) as group:
        failed.extend(_leaves(group))
    if closed:  # `follower tail ... | head`: the reader has what it wanted; say nothing
        _silence_stdout()
        return EXIT_OK
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
        rows = anyio.run(pipeline_rows, config, SystemClock())
    except ApiError as exc:
        print(f"follower: {exc}", file=sys.stderr)
        return EXIT_FAILURE
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


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Entry point of the `follower` console script."""
    ns = build_parser().parse_args(argv)
    try:
        code = COMMANDS[ns.command](ns)
    except KeyboardInterrupt:  # SIGINT before the handlers were installed or after they left
        code = EXIT_INTERRUPTED
    sys.exit(code)
