"""Budget: fixed-interval against adaptive polling on one shared request budget, in fake time.

    PYTHONPATH=. python bench/budget.py [--pipelines 2000] [--budget 20] [--duration 600]

The simulator is served on loopback under a `FakeClock` and the real follower (`follow()`, the same
assembly as `follower run`) polls it; time jumps from one deadline to the next once the follower is
idle (`follower.testing.advance_to`), so twenty simulated minutes take only the CPU time of the
requests. The simulator enforces the budget itself (`rate_limit_rps`, answering 429 above it) and
the follower is configured with the same `budget_rps`.

Two settings, each run in both modes on the same seeded world:
- overload: `--pipelines` pipelines with Zipf-skewed rates whose need exceeds the budget; the fixed
  interval is the one that spends the budget exactly (pipelines / budget seconds).
- covered: `--covered-pipelines` pipelines, same budget and rates, whose need the budget covers.

How lines are counted, per pod, from the simulator's truth (every line's index and write time):
- produced: lines from the first line of the tail the pipeline's first successful poll showed
  (older lines scrolled out before anyone looked and are not counted against either mode), up to
  the last line its last successful poll showed (later lines were not lost, only not polled yet).
- lost = produced - emitted; emitted lines are checked to be distinct and in order, and every
  line a successful poll showed must have been emitted (so lost lines are exactly those that
  scrolled out of the window between two polls).
- steady: the same, counting only lines written after `--warmup` seconds, once both modes have
  polled every pipeline twice.
- scrolled out before 1st poll: lines written after the follower started that left the tail
  before the pipeline's first poll; not counted as lost (`--since start` promises the tail the
  first poll shows), but reported, and added to the loss in one clearly labelled line, since a
  cold start that delays first polls moves loss there.
- latency: emit time (the log event's `ts`) minus write time, both on the fake clock.
- requests and 429s are counted by the simulator; "max in 1 s" is the most requests it received in
  any sliding one-second window (a token bucket of rate r and burst b admits up to b + r there).

`--backlog S` (default 0, the measured setting) starts every pod S seconds before the follower, as
in a deployment that has run for a while: every first tail is then full and says nothing about
the rate.

Exits 1 when a target is missed: adaptive loses at most 1/10 of fixed-interval's loss under
overload and nothing when covered, the follower gets no 429 from the limiter, and it emits every
line a poll showed exactly once.
"""

from __future__ import annotations

import argparse
import bisect
import functools
import logging
import math
import random
import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NoReturn

import anyio
import structlog
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiohttp.typedefs import Handler, Middleware

from follower.api.secret import ServiceKey
from follower.config import Config
from follower.core.budget import BudgetSettings
from follower.core.events import Event, GapEvent, LogEvent
from follower.core.schedule import ScheduleSettings
from follower.engine.runner import Runner
from follower.engine.service import follow
from follower.simulator.app import RECORDER, create_app
from follower.simulator.faults import FaultSettings
from follower.simulator.recorder import Recorder
from follower.simulator.world import SimSettings, World
from follower.testing import FakeClock, advance_to, settle

KEY = "budget-bench-key"
BIN_S = 0.05
"""Latency histogram resolution."""


# --- what the simulator saw --------------------------------------------------------------------


@dataclass
class Traffic:
    """Every request the simulator answered: when (fake monotonic), for which pipeline, status."""

    clock: FakeClock
    times: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    first_logs: dict[str, float] = field(default_factory=dict)
    last_logs: dict[str, float] = field(default_factory=dict)

    def middleware(self) -> Middleware:
        @web.middleware
        async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
            now = self.clock.monotonic()
            response = await handler(request)
            self.times.append(now)
            self.statuses[response.status] = self.statuses.get(response.status, 0) + 1
            if response.status == 200 and request.path.endswith("/logs/"):
                pipeline_id = request.match_info["pipeline_id"]
                self.first_logs.setdefault(pipeline_id, now)
                self.last_logs[pipeline_id] = now
            return response

        return count

    def max_in_window(self, window_s: float = 1.0) -> int:
        """The most requests received in any half-open window [t, t + window_s)."""
        times = sorted(self.times)
        best = 0
        for start, t in enumerate(times):
            end = bisect.bisect_left(times, t + window_s, lo=start)
            best = max(best, end - start)
        return best


# --- what the follower emitted -----------------------------------------------------------------


class TruthSink:
    """A sink that checks each log line against the truth and keeps counts, not events.

    With `line_style="unique"` a message names its incarnation and index (`line 0.42 ab12cd`), so
    the line's write time follows from the world's schedule (see `written_at`).
    """

    def __init__(self, world: World, warmup_at: float) -> None:
        self._world = world
        self._warmup_at = warmup_at
        self._lines: dict[tuple[str, str, int], tuple[float, float]] = {}
        self.last_index: dict[tuple[str, str, int], int] = {}
        self.emitted: dict[tuple[str, str, int], int] = {}
        self.emitted_steady: dict[tuple[str, str, int], int] = {}
        self.out_of_order = 0
        self.gaps = 0
        self.events = 0
        self.latency_all = Histogram()
        self.latency_steady = Histogram()

    async def write(self, events: Sequence[Event]) -> None:
        for event in events:
            self.events += 1
            if isinstance(event, LogEvent):
                self._log(event)
            elif isinstance(event, GapEvent):
                self.gaps += 1

    def _log(self, event: LogEvent) -> None:
        _, position, _ = event.message.split(" ", 2)
        incarnation, index = map(int, position.split("."))
        key = (event.pipeline_id, event.pod, incarnation)
        schedule = self._lines.get(key)
        if schedule is None:
            schedule = self._lines[key] = written_at(self._world, *key)
        first_wall, step = schedule
        if index <= self.last_index.get(key, -1):
            self.out_of_order += 1
            return
        self.last_index[key] = index
        self.emitted[key] = self.emitted.get(key, 0) + 1
        wrote = first_wall + index * step
        latency = event.ts - wrote
        self.latency_all.add(latency)
        if wrote - self._world.wall_at_start + self._world.start > self._warmup_at:
            self.emitted_steady[key] = self.emitted_steady.get(key, 0) + 1
            self.latency_steady.add(latency)

    async def aclose(self) -> None:
        pass


def written_at(world: World, pipeline_id: str, pod: str, incarnation: int) -> tuple[float, float]:
    """(wall time line 0 was written, seconds between lines) of one incarnation of a pod."""
    return world.line_clock(pipeline_id, pod, incarnation)


class Histogram:
    """Latencies in BIN_S bins: percentiles to BIN_S, in constant memory per bin."""

    def __init__(self) -> None:
        self.bins: dict[int, int] = {}
        self.count = 0

    def add(self, seconds: float) -> None:
        index = max(0, int(seconds / BIN_S))
        self.bins[index] = self.bins.get(index, 0) + 1
        self.count += 1

    def percentile(self, fraction: float) -> float:
        """The upper edge of the bin that holds the `fraction` quantile (nan when empty)."""
        if not self.count:
            return math.nan
        wanted = fraction * self.count
        seen = 0
        for index in sorted(self.bins):
            seen += self.bins[index]
            if seen >= wanted:
                return (index + 1) * BIN_S
        return math.nan


# --- one run -----------------------------------------------------------------------------------


@dataclass
class ModeReport:
    """The figures of one mode in one setting."""

    label: str
    produced: int = 0
    emitted: int = 0
    lost: int = 0
    produced_steady: int = 0
    lost_steady: int = 0
    before_first_poll: int = 0
    pending_at_end: int = 0
    unemitted_observed: int = 0
    out_of_order: int = 0
    gaps: int = 0
    p50: float = math.nan
    p95: float = math.nan
    p50_steady: float = math.nan
    p95_steady: float = math.nan
    requests: int = 0
    throttled: int = 0
    max_per_s: int = 0
    max_per_10s: int = 0
    duration_s: float = 0.0
    polls_ok: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    warnings: dict[str, int] = field(default_factory=dict)

    @property
    def lost_share(self) -> float:
        return self.lost / self.produced if self.produced else 0.0

    @property
    def lost_steady_share(self) -> float:
        return self.lost_steady / self.produced_steady if self.produced_steady else 0.0


def quiet_logs(counts: dict[str, int]) -> None:
    """Count the follower's own diagnostics by event name and print none of them."""

    def record(_: object, method: str, event_dict: structlog.types.EventDict) -> NoReturn:
        name = f"{method}:{event_dict.get('event')}"
        counts[name] = counts.get(name, 0) + 1
        raise structlog.DropEvent

    structlog.configure(
        processors=[record],
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        cache_logger_on_first_use=False,
    )


async def run_mode(
    label: str,
    settings: SimSettings,
    *,
    budget_rps: float,
    budget_burst: int,
    interval_s: float | None,
    floor_s: float,
    ceiling_s: float,
    fill_target: float,
    duration_s: float,
    warmup_s: float,
) -> ModeReport:
    """Serve `settings` with a limiter at `budget_rps`, follow every pipeline for `duration_s`."""
    report = ModeReport(label, duration_s=duration_s)
    quiet_logs(report.warnings)
    clock = FakeClock()
    start = clock.monotonic()
    world = World(settings, start=start, wall_at_start=clock.wall())
    limiter = FaultSettings(rate_limit_rps=budget_rps)
    app = create_app(world, clock, KEY, limiter)
    traffic = Traffic(clock)
    app.middlewares.append(traffic.middleware())
    sink = TruthSink(world, start + warmup_s)
    started_wall, started_cpu = time.perf_counter(), time.process_time()
    async with TestServer(app, host="127.0.0.1") as server:
        config = Config(
            key=ServiceKey(KEY),
            pipelines=tuple(world.pipeline_ids),
            base_url=str(server.make_url("")).rstrip("/"),
            interval_s=interval_s,
            budget=BudgetSettings(budget_rps, budget_burst),
            schedule=ScheduleSettings(
                floor_s=floor_s, ceiling_s=ceiling_s, fill_target=fill_target
            ),
        )
        runners: list[Runner] = []
        got_runner = anyio.Event()
        stop = anyio.Event()

        def on_runner(runner: Runner) -> None:
            runners.append(runner)
            got_runner.set()

        async def drive() -> None:
            await got_runner.wait()
            runner = runners[0]
            await advance_to(runner, clock, start + duration_s)
            await settle(runner, clock)
            stop.set()

        async with anyio.create_task_group() as group:
            group.start_soon(drive)
            stats = await follow(
                config, sink=sink, clock=clock, stop=stop, rng=random.Random(7),
                on_runner=on_runner,
            )
        recorder = app[RECORDER]
    report.wall_s = time.perf_counter() - started_wall
    report.cpu_s = time.process_time() - started_cpu
    report.polls_ok = stats.polls_ok
    report.requests = len(traffic.times)
    report.throttled = recorder.outcomes["rate_limited"] + recorder.outcomes["429"]
    report.max_per_s = traffic.max_in_window(1.0)
    report.max_per_10s = traffic.max_in_window(10.0)
    report.gaps = sink.gaps
    report.out_of_order = sink.out_of_order
    report.p50, report.p95 = sink.latency_all.percentile(0.5), sink.latency_all.percentile(0.95)
    report.p50_steady = sink.latency_steady.percentile(0.5)
    report.p95_steady = sink.latency_steady.percentile(0.95)
    count_lines(
        world, traffic, recorder, sink, warmup_at=start + warmup_s, end=clock.monotonic(),
        report=report,
    )
    return report


def count_lines(
    world: World, traffic: Traffic, recorder: Recorder, sink: TruthSink, *, warmup_at: float,
    end: float, report: ModeReport,
) -> None:
    """Produced, emitted and lost lines per pod from the truth (see the module docstring)."""
    for pipeline_id in world.pipeline_ids:
        first_at = traffic.first_logs.get(pipeline_id)
        if first_at is None:
            continue
        last_at = traffic.last_logs[pipeline_id]
        at_start = {w.pod: w.first for w in world.windows(pipeline_id, world.start)}
        firsts = {w.pod: w for w in world.windows(pipeline_id, first_at)}
        steadies = {w.pod: w for w in world.windows(pipeline_id, warmup_at)}
        for last in world.windows(pipeline_id, last_at):
            first, steady = firsts[last.pod], steadies[last.pod]
            # No restarts in this bench: one incarnation per pod, lines [0, end).
            assert first.incarnation == last.incarnation == 0
            key = (pipeline_id, last.pod, 0)
            produced = last.end - first.first
            emitted = sink.emitted.get(key, 0)
            report.produced += produced
            report.emitted += emitted
            report.lost += produced - emitted
            report.before_first_poll += first.first - at_start[last.pod]
            observed = recorder.observed_count(pipeline_id, last.pod)
            report.unemitted_observed += observed - emitted
            if last_at > warmup_at:
                steady_from = max(steady.end, first.first)
                report.produced_steady += last.end - steady_from
                report.lost_steady += last.end - steady_from - sink.emitted_steady.get(key, 0)
            at_end = world.windows(pipeline_id, end)
            report.pending_at_end += sum(w.end for w in at_end if w.pod == last.pod) - last.end


# --- printing --------------------------------------------------------------------------------


def print_table(title: str, reports: Sequence[ModeReport]) -> None:
    print(title)
    width = 16
    print(f"  {'':38}" + "".join(f"{r.label:>{width}}" for r in reports))
    rows: list[tuple[str, list[str]]] = [
        ("lines produced (first tail..last poll)", [f"{r.produced:,}" for r in reports]),
        ("lines emitted", [f"{r.emitted:,}" for r in reports]),
        ("lines lost", [f"{r.lost:,}" for r in reports]),
        ("  lost share", [f"{100 * r.lost_share:.2f}%" for r in reports]),
        ("steady: produced after warm-up", [f"{r.produced_steady:,}" for r in reports]),
        ("steady: lost", [f"{r.lost_steady:,}" for r in reports]),
        ("  steady lost share", [f"{100 * r.lost_steady_share:.2f}%" for r in reports]),
        ("gaps flagged", [f"{r.gaps:,}" for r in reports]),
        ("latency p50 / p95 (s)", [f"{r.p50:.2f} / {r.p95:.1f}" for r in reports]),
        ("steady latency p50 / p95 (s)",
         [f"{r.p50_steady:.2f} / {r.p95_steady:.1f}" for r in reports]),
        ("requests (simulator)", [f"{r.requests:,}" for r in reports]),
        ("  per second (mean)", [f"{r.requests / r.duration_s:.2f}" for r in reports]),
        ("  max in any 1 s window", [f"{r.max_per_s}" for r in reports]),
        ("  max in any 10 s window", [f"{r.max_per_10s}" for r in reports]),
        ("429 received", [f"{r.throttled:,}" for r in reports]),
        ("logs polls ok (follower)", [f"{r.polls_ok:,}" for r in reports]),
        ("scrolled out before 1st poll", [f"{r.before_first_poll:,}" for r in reports]),
        ("written after last poll", [f"{r.pending_at_end:,}" for r in reports]),
        ("observed but not emitted", [f"{r.unemitted_observed:,}" for r in reports]),
        ("duplicated or out of order", [f"{r.out_of_order:,}" for r in reports]),
        ("wall s / CPU s of the run", [f"{r.wall_s:.0f} / {r.cpu_s:.0f}" for r in reports]),
    ]
    for name, values in rows:
        print(f"  {name:38}" + "".join(f"{v:>{width}}" for v in values))
    warned = sorted({name for r in reports for name in r.warnings})
    for name in warned:
        print(f"  {'log ' + name:38}" + "".join(
            f"{r.warnings.get(name, 0):>{width},}" for r in reports))
    print()


def ratio_text(adaptive: int, fixed: int) -> str:
    return "n/a (fixed lost nothing)" if fixed == 0 else f"{adaptive / fixed:.4f}"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipelines", type=int, default=2000, help="overload setting (2000)")
    parser.add_argument("--covered-pipelines", type=int, default=100,
                        help="pipelines of the setting the budget covers (100)")
    parser.add_argument("--budget", type=float, default=20.0, help="requests/s (20)")
    parser.add_argument("--burst", type=int, default=20, help="follower budget_burst (20)")
    parser.add_argument("--rate", type=float, default=1.0, help="mean lines/s per pod (1.0)")
    parser.add_argument("--skew", type=float, default=1.0, help="Zipf exponent of rates (1.0)")
    parser.add_argument("--pods", type=int, default=1, help="replicas per pipeline (1)")
    parser.add_argument("--window", type=int, default=200, help="tail lines (200)")
    parser.add_argument("--duration", type=float, default=600.0,
                        help="simulated seconds per run (600)")
    parser.add_argument("--warmup", type=float, default=300.0,
                        help="simulated seconds before the steady figures start (300)")
    parser.add_argument("--floor", type=float, default=0.5, help="adaptive floor_s (0.5)")
    parser.add_argument("--ceiling", type=float, default=600.0, help="adaptive ceiling_s (600)")
    parser.add_argument("--fill", type=float, default=0.5, help="adaptive fill_target (0.5)")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--backlog", type=float, default=0.0,
                        help="pods started this many seconds before the follower (0)")
    parser.add_argument("--only", choices=("overload", "covered"), default=None)
    return parser.parse_args()


def run_setting(name: str, pipelines: int, ns: argparse.Namespace) -> list[str]:
    """Run both modes on one setting, print the table; return the missed targets."""
    problems: list[str] = []
    settings = SimSettings(
        pipelines=pipelines, pods=ns.pods, rate=ns.rate, rate_skew=ns.skew,
        window=ns.window, line_style="unique", seed=ns.seed, backlog_s=ns.backlog,
    )
    world = World(settings, 0.0, 0.0)
    rates = sorted((world.rate(p) for p in world.pipeline_ids), reverse=True)
    need = sum(max(r / (ns.fill * ns.window), 1 / ns.ceiling) for r in rates)
    fixed_s = pipelines / ns.budget
    print(f"[{name}] {pipelines} pipelines, rates {rates[0]:.1f} .. {rates[-1]:.3f} lines/s "
          f"per pod (sum {sum(rates):,.0f}); steady need at fill {ns.fill:g}: {need:.1f} "
          f"req/s of {ns.budget:g}; fixed interval {fixed_s:g} s", flush=True)
    reports = []
    modes: tuple[tuple[str, float | None], ...] = (("fixed", fixed_s), ("adaptive", None))
    for label, interval in modes:
        run = functools.partial(
            run_mode, label, settings, budget_rps=ns.budget, budget_burst=ns.burst,
            interval_s=interval, floor_s=ns.floor, ceiling_s=ns.ceiling, fill_target=ns.fill,
            duration_s=ns.duration, warmup_s=ns.warmup,
        )
        report = anyio.run(run)
        reports.append(report)
        print(f"  {label}: {report.wall_s:.0f} s wall, {report.cpu_s:.0f} s CPU", flush=True)
    print_table(f"[{name}] {pipelines} pipelines, {ns.budget:g} req/s", reports)
    fixed, adaptive = reports
    for report in reports:
        if report.throttled:
            problems.append(f"{name}/{report.label}: {report.throttled} requests got 429")
        if report.unemitted_observed or report.out_of_order:
            problems.append(f"{name}/{report.label}: observed lines not emitted once in order")
    if name == "overload":
        steady = ratio_text(adaptive.lost_steady, fixed.lost_steady)
        print(f"  target: adaptive steady loss <= 1/10 of fixed's: {steady} "
              f"({adaptive.lost_steady:,} vs {fixed.lost_steady:,})")
        print(f"  whole run (cold start included): "
              f"{ratio_text(adaptive.lost, fixed.lost)} ({adaptive.lost:,} vs {fixed.lost:,})")
        fixed_all = fixed.lost + fixed.before_first_poll
        adaptive_all = adaptive.lost + adaptive.before_first_poll
        print(f"  (not a target) also counting lines written after start that scrolled out "
              f"before a pipeline's first poll: {ratio_text(adaptive_all, fixed_all)} "
              f"({adaptive_all:,} vs {fixed_all:,})")
        if fixed.lost_steady == 0 or adaptive.lost_steady > fixed.lost_steady / 10:
            problems.append(f"overload: adaptive steady loss ratio {steady} (target <= 0.1)")
    else:
        print(f"  target: adaptive loses nothing: {adaptive.lost:,} lost over the whole run")
        if adaptive.lost:
            problems.append(f"covered: adaptive lost {adaptive.lost:,} lines (target 0)")
    print()
    return problems


def main() -> int:
    ns = parse_args()
    print(f"budget bench: {ns.budget:g} requests/s enforced by the simulator (429 above it, "
          f"burst {max(1, int(ns.budget))}), follower budget_rps={ns.budget:g} "
          f"budget_burst={ns.burst}; window {ns.window} lines, {ns.pods} pod(s) per pipeline, "
          f"mean rate {ns.rate:g} lines/s per pod, Zipf skew {ns.skew:g}; {ns.duration:g} s "
          f"simulated per run (fake time), steady figures for lines written after "
          f"{ns.warmup:g} s; adaptive: floor {ns.floor:g} s, ceiling {ns.ceiling:g} s, "
          f"fill {ns.fill:g}"
          + (f"; pods started {ns.backlog:g} s before the follower" if ns.backlog else "")
          + "\n")
    problems: list[str] = []
    for name, pipelines in (("overload", ns.pipelines), ("covered", ns.covered_pipelines)):
        if ns.only is None or name == ns.only:
            problems += run_setting(name, pipelines, ns)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"peak RSS {usage.ru_maxrss / 1024:.0f} MiB")
    print("result:", "all targets met" if not problems else "MISSED: " + "; ".join(problems))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
