"""The command line's arguments: the parser of every command, and the flags that map to keys.

`FLAG_KEYS` names, for each flag that overrides a configuration key, the key and the argparse
attribute, so `load_config` can name a bad value by the flag the user typed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from pathlib import Path
from typing import Final, NoReturn

from follower import __version__
from follower.api.secret import masker
from follower.api.settings import HttpSettings
from follower.cli.check import DEFAULT_LOOK_S, DEFAULT_SAMPLE
from follower.config import (
    DEFAULT_BASE_URL,
    ENV_KEY,
    ENV_KEY_FILE,
    LOG_LEVELS,
    OUTPUT_KINDS,
    read_key_file,
)
from follower.core.budget import DEFAULT_REQUESTS_PER_S
from follower.errors import ConfigError
from follower.simulator.cli import add_simulate_arguments

_HTTP: Final = HttpSettings()

SOURCE_HELP: Final = "with [[sources]] in --config: use this source's key and API (default: the "\
    "top-level key, GOLDRUSH_SERVICE_KEY)"


class _Parser(argparse.ArgumentParser):
    """argparse's parser, whose usage errors mask the ServiceKey: they quote the value they
    refuse (`invalid float value: '...'`, `unrecognized arguments: ...`), and the key may be
    what was pasted there. The configuration is not read yet, so the key is looked for where
    the environment says it is; subcommands' parsers are of this class too (argparse makes
    them of the parent's class)."""

    def error(self, message: str) -> NoReturn:
        values = [os.environ.get(ENV_KEY, "").strip()]
        if os.environ.get(ENV_KEY_FILE):
            # A bad key file is named once the configuration is read; here it masks nothing.
            with contextlib.suppress(ValueError):
                values.append(read_key_file(Path(os.environ[ENV_KEY_FILE])))
        super().error(masker(*values)(message))


def build_parser() -> argparse.ArgumentParser:
    """The `follower` argument parser with its subcommands."""
    parser = _Parser(
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
        f"{DEFAULT_TAIL_LINES} lines of each pod first (--tail), then new lines. It keeps no "
        "state: it never reads or moves the checkpoint of `follower run`, and can run beside it.",
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
    tail.add_argument("--log-level", choices=LOG_LEVELS,
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
    demo.add_argument("--log-level", choices=LOG_LEVELS,
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
    f"API base URL (default {DEFAULT_BASE_URL}; the form with /platform/pipeline-api/ "
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
    parser.add_argument("--max-in-flight", type=int,
                        help=f"requests in flight at most (default {_HTTP.max_in_flight})")
    parser.add_argument("--timeout", type=float, dest="timeout_s", metavar="SECONDS",
                        help=f"per-request timeout (default {_HTTP.timeout_s:g})")
    parser.add_argument("--log-level", choices=LOG_LEVELS)
    parser.add_argument("--discover", action="store_const", const=True, default=None,
                        help="also follow every pipeline the key can see (default without "
                        "--pipeline)")
    parser.add_argument("--budget", type=float, dest="budget_rps", metavar="REQUESTS_PER_S",
                        help="requests per second for all requests of the key "
                        f"(default {DEFAULT_REQUESTS_PER_S:g})")
    parser.add_argument("--shard-count", type=int, metavar="N",
                        help="split the pipelines among N followers by a stable hash")
    parser.add_argument("--shard-index", type=int, metavar="I",
                        help="this follower's shard, 0..N-1")
    parser.add_argument("--shard-from-hostname", action="store_const", const=True, default=None,
                        help="take the shard index from the hostname's trailing ordinal "
                        "(StatefulSet pod follower-2 is shard 2)")
    parser.add_argument("--output", choices=OUTPUT_KINDS,
                        help="where events go (default stdout; file: rotated files in "
                        "--output-dir; every kind: output.kind in docs/configuration.md)")
    parser.add_argument("--output-dir", type=Path, metavar="DIR",
                        help="folder of the event files (with --output file)")
    parser.add_argument("--listen", metavar="HOST:PORT",
                        help="serve /metrics, /healthz and /readyz there (e.g. 127.0.0.1:9464); "
                        "an address that cannot be bound stops the start (exit 3)")
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


def config_flags(ns: argparse.Namespace) -> dict[str, object]:
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
