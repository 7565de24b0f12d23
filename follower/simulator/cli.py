"""`follower simulate`: serve the fake Pipeline API on a port until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import shlex
import signal
import sys
from collections.abc import Callable

import anyio
from aiohttp import web

from follower.clock import Clock, SystemClock
from follower.simulator.app import PREFIX, create_app
from follower.simulator.faults import FaultSettings
from follower.simulator.world import SimSettings, World

DEFAULT_KEY = "sim-key"
EXIT_OK = 0
EXIT_BAD_CONFIG = 2
EXIT_CANNOT_START = 3


def _optional_seconds(raw: str) -> float | None:
    if raw.strip().lower() in ("none", "off", ""):
        return None
    return float(raw)


def add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the simulator's flags (world shape, faults, listening address) to `parser`."""
    d = SimSettings()
    f = FaultSettings()
    net = parser.add_argument_group("listening")
    net.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default %(default)s)"
    )
    net.add_argument(
        "--port", type=int, default=8080, help="port, 0 = any free one (default %(default)s)"
    )
    net.add_argument(
        "--key", default=DEFAULT_KEY, help="Service Key to accept (default %(default)s)"
    )
    world = parser.add_argument_group("simulated world")
    world.add_argument("--pipelines", type=int, default=d.pipelines, help="default %(default)s")
    world.add_argument(
        "--pods", type=int, default=d.pods, help="replicas per pipeline (default %(default)s)"
    )
    world.add_argument(
        "--rate", type=float, default=d.rate, help="lines/s per pod (default %(default)s)"
    )
    world.add_argument(
        "--rate-skew",
        type=float,
        default=d.rate_skew,
        help="Zipf exponent of per-pipeline rates, 0 = all equal (default %(default)s)",
    )
    world.add_argument(
        "--window", type=int, default=d.window, help="lines a tail holds (default %(default)s)"
    )
    world.add_argument(
        "--restart-every",
        type=float,
        default=d.restart_every_s,
        metavar="S",
        help="mean seconds between pod restarts (default: never)",
    )
    world.add_argument(
        "--replace-on-restart",
        action="store_true",
        help="a restart brings a new pod name instead of resetting the tail",
    )
    world.add_argument(
        "--tail-error-seconds",
        type=float,
        default=d.tail_error_s,
        metavar="S",
        help="after each (re)start the tail is a Kubernetes error this long (default %(default)s)",
    )
    world.add_argument(
        "--backlog-seconds",
        type=float,
        default=d.backlog_s,
        metavar="S",
        help="pods started this long before the simulator (default %(default)s)",
    )
    world.add_argument(
        "--line-style",
        choices=("realistic", "unique", "repetitive"),
        default=d.line_style,
        help="default %(default)s",
    )
    world.add_argument("--open-lines", action="store_true",
                       help="each tail ends with the line being written (no newline after it)")
    world.add_argument("--no-final-newline", dest="final_newline", action="store_false",
                       help="join each tail's lines without a newline after the last one")
    world.add_argument("--progress-bars", action="store_true",
                       help="about one line in eight is a progress bar rewritten with \\r")
    world.add_argument("--vanish-ratio", type=float, default=d.vanish_ratio, metavar="RATIO",
                       help="share of one-second slots in which an answer leaves a running pod "
                       "out (default %(default)s)")
    world.add_argument("--seed", type=int, default=d.seed, help="for the world and the faults")
    faults = parser.add_argument_group("faults (rates are probabilities per request)")
    faults.add_argument("--fault-429", type=float, default=f.rate_429, metavar="RATE")
    faults.add_argument(
        "--retry-after",
        type=_optional_seconds,
        default=f.retry_after_s,
        metavar="S",
        help="Retry-After of injected 429s, 'none' for no header (default %(default)s)",
    )
    faults.add_argument("--fault-5xx", type=float, default=f.rate_5xx, metavar="RATE")
    faults.add_argument("--fault-slow", type=float, default=f.rate_slow, metavar="RATE")
    faults.add_argument(
        "--slow-seconds",
        type=float,
        default=f.slow_s,
        metavar="S",
        help="delay of slow answers (default %(default)s)",
    )
    faults.add_argument("--fault-malformed", type=float, default=f.rate_malformed, metavar="RATE")
    faults.add_argument(
        "--fault-envelope-error", type=float, default=f.rate_envelope_error, metavar="RATE"
    )
    faults.add_argument(
        "--rate-limit",
        type=float,
        default=f.rate_limit_rps,
        metavar="RPS",
        help="server-wide requests per second above which it answers 429 (default: none)",
    )


def settings_from_args(ns: argparse.Namespace) -> tuple[SimSettings, FaultSettings]:
    """Build the settings from parsed flags; ValueError names every bad one at once."""
    problems = []
    settings = faults = None
    try:
        settings = SimSettings(
            pipelines=ns.pipelines,
            pods=ns.pods,
            rate=ns.rate,
            rate_skew=ns.rate_skew,
            window=ns.window,
            restart_every_s=ns.restart_every,
            replace_on_restart=ns.replace_on_restart,
            tail_error_s=ns.tail_error_seconds,
            line_style=ns.line_style,
            seed=ns.seed,
            backlog_s=ns.backlog_seconds,
            open_lines=ns.open_lines,
            final_newline=ns.final_newline,
            progress_bars=ns.progress_bars,
            vanish_ratio=ns.vanish_ratio,
        )
    except ValueError as exc:
        problems.append(str(exc))
    try:
        faults = FaultSettings(
            rate_429=ns.fault_429,
            retry_after_s=ns.retry_after,
            rate_5xx=ns.fault_5xx,
            rate_slow=ns.fault_slow,
            slow_s=ns.slow_seconds,
            rate_malformed=ns.fault_malformed,
            rate_envelope_error=ns.fault_envelope_error,
            rate_limit_rps=ns.rate_limit,
            seed=ns.seed,
        )
    except ValueError as exc:
        problems.append(str(exc))
    if settings is None or faults is None:
        raise ValueError("; ".join(problems))
    return settings, faults


async def serve(
    settings: SimSettings,
    faults: FaultSettings,
    *,
    host: str,
    port: int,
    key: str,
    clock: Clock,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the simulator on host:port until cancelled; `ready(base_url)` once it listens."""
    world = World(settings, clock.monotonic(), clock.wall())
    runner = web.AppRunner(
        create_app(world, clock, key, faults), access_log=None, shutdown_timeout=1.0
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_port = runner.addresses[0][1]
        shown_host = f"[{host}]" if ":" in host else host
        if ready is not None:
            ready(f"http://{shown_host}:{bound_port}")
        await anyio.sleep_forever()
    finally:
        await runner.cleanup()


def follower_commands(base_url: str, key: str, pipeline_ids: list[str]) -> str:
    """The commands that point the follower at this simulator, ready to paste into a shell."""
    quoted_key, url = shlex.quote(key), shlex.quote(base_url)
    first = pipeline_ids[0] if pipeline_ids else "pipe_..."
    return "\n".join([
        "point the follower at it (in another terminal):",
        f"  export GOLDRUSH_SERVICE_KEY={quoted_key} GOLDRUSH_BASE_URL={url}",
        "  follower pipelines",
        f"  follower tail {first}",
        "  follower run                      # every pipeline, JSON events on stdout",
        "  follower check                    # key, API, pipelines, budget",
        "or, without exporting:",
        f"  GOLDRUSH_SERVICE_KEY={quoted_key} follower run --base-url {url}",
        f"  curl -H 'Authorization: Bearer {key}' {base_url}{PREFIX}",
    ])


def run_simulate(ns: argparse.Namespace) -> int:
    """Run `follower simulate` in the foreground until Ctrl-C or SIGTERM; returns the exit code."""
    try:
        settings, faults = settings_from_args(ns)
    except ValueError as exc:
        print(f"follower simulate: {exc}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    if ns.key.startswith("cqt_"):
        print(
            "follower simulate: --key must not start with 'cqt_' (that is an API key)",
            file=sys.stderr,
        )
        return EXIT_BAD_CONFIG
    pipeline_ids = World(settings, 0.0, 0.0).pipeline_ids

    def ready(base_url: str) -> None:
        print(f"simulator listening on {base_url} (Service Key {ns.key!r})", file=sys.stderr)
        print(f"pipelines ({len(pipeline_ids)}):", file=sys.stderr)
        for pipeline_id in pipeline_ids:
            print(f"  {pipeline_id}", file=sys.stderr)
        print(follower_commands(base_url, ns.key, pipeline_ids), file=sys.stderr)

    async def main() -> int:
        code = EXIT_OK
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(
                    lambda: serve(
                        settings, faults, host=ns.host, port=ns.port, key=ns.key,
                        clock=SystemClock(), ready=ready,
                    )
                )  # fmt: skip
                with anyio.open_signal_receiver(signal.SIGTERM) as signals:
                    async for _ in signals:  # `docker stop`, systemd: end as cleanly as Ctrl-C
                        break
                group.cancel_scope.cancel()
        except* OSError as failed:
            reason = "; ".join(str(exc) for exc in failed.exceptions)
            print(
                f"follower simulate: cannot listen on {ns.host}:{ns.port}: {reason}",
                file=sys.stderr,
            )
            code = EXIT_CANNOT_START
        return code

    try:
        return asyncio.run(main())
    except KeyboardInterrupt:
        return EXIT_OK
