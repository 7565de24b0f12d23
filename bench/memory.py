"""Memory: resident set size per 1,000 followed pods at steady state, with 200-line windows.

    PYTHONPATH=. python bench/memory.py [--sizes 1000,5000] [--pods 1] [--window 200]

Each size runs in a fresh child process (this script with `--child N`), so one size's freed
memory does not hide in the next one's figures. The child starts the server of
bench/throughput.py in its own process (full `--window`-line tails from the first answer, new
lines at every answer), measures its own VmRSS (from /proc/self/status) after imports and
before following, then follows every pipeline with the real `follow()` at a high request rate
until the server has answered every pipeline at least `--polls` times (every pod's tail held and
diffed, every state at its steady size), then samples VmRSS while it keeps polling and reports the
median. Another child repeats the first size under `tracemalloc` and reports the Python heap the
follower holds (traced memory, which RSS includes along with allocator slack) and where it is.

The dispatcher's choice of the next request costs O(log n) (follower/core/ranking.py), not a
scan of every followed pipeline; a larger size takes longer mostly because every pipeline must be
answered `--polls` times.

Exits 1 when the RSS growth per 1,000 pods exceeds `--max-mb` (10 MB) at any size.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import os
import random
import statistics
import subprocess
import sys
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import structlog
from throughput import answer_server

from follower.api.secret import ServiceKey
from follower.api.settings import HttpSettings
from follower.clock import SystemClock
from follower.config import Config
from follower.core.budget import BudgetSettings
from follower.core.schedule import ScheduleSettings
from follower.engine.runner import Runner
from follower.engine.service import follow
from follower.sinks.jsonlines import JsonLinesSink

KEY = "memory-bench-key"
ROOT = Path(__file__).resolve().parent.parent


def rss_kib() -> int:
    """VmRSS of this process in KiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def child_env() -> dict[str, str]:
    """The environment of a child process: this one, with the project on PYTHONPATH."""
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    return dict(os.environ, PYTHONPATH=path)


def server(
    pipelines: int, pods: int, window: int, new_per_poll: int
) -> contextlib.AbstractContextManager[str]:
    """The answer server of bench/throughput.py in a child process; yields its base URL."""
    return answer_server(
        "--pipelines", str(pipelines), "--pods", str(pods), "--window", str(window),
        "--new-per-poll", str(new_per_poll),
    )


async def answers(base_url: str) -> dict[str, int]:
    """How many logs answers the server gave each pipeline so far (its keys: every pipeline)."""
    async with aiohttp.ClientSession() as session, session.get(f"{base_url}/counts") as response:
        counts: dict[str, int] = json.loads(await response.read())
    return counts


async def measure(ns: argparse.Namespace, base_url: str) -> dict[str, object]:
    """Follow until steady, sample RSS (or the traced heap), stop; return the figures."""
    pipeline_ids = tuple(await answers(base_url))
    config = Config(
        key=ServiceKey(KEY), pipelines=pipeline_ids, base_url=base_url,
        interval_s=0.05, schedule=ScheduleSettings(floor_s=0.05),
        budget=BudgetSettings(10_000.0, 100_000), http=HttpSettings(max_in_flight=8),
    )
    clock = SystemClock()
    stop = anyio.Event()
    runners: list[Runner] = []
    figures: dict[str, object] = {}
    gc.collect()
    figures["rss_before_kib"] = rss_kib()
    if ns.traced_child:
        tracemalloc.start(max(1, ns.frames))
        figures["traced_before"] = tracemalloc.get_traced_memory()[0]

    async def watch() -> None:
        while min((await answers(base_url)).values()) < ns.polls:
            if runners and runners[0].stats.polls_failed:
                raise RuntimeError(f"{runners[0].stats.polls_failed} polls failed")
            await clock.sleep(0.5)
        samples = []
        for _ in range(5):
            await clock.sleep(0.2)
            samples.append(rss_kib())
        figures["rss_steady_kib"] = int(statistics.median(samples))
        figures["rss_samples_kib"] = samples
        if ns.traced_child:
            figures["traced_steady"] = tracemalloc.get_traced_memory()[0]
            snapshot = tracemalloc.take_snapshot()
            by_file = snapshot.statistics("filename")
            figures["traced_top"] = [
                (str(stat.traceback[0].filename).replace(str(ROOT) + "/", ""), stat.size)
                for stat in by_file[:8]
            ]
            figures["traced_lines"] = [
                (f"{str(stat.traceback[0].filename).replace(str(ROOT) + '/', '')}:"
                 f"{stat.traceback[0].lineno}", stat.size, stat.count)
                for stat in snapshot.statistics("lineno")[: ns.detail]
            ]
            if ns.frames > 1:
                figures["traced_tracebacks"] = [
                    ([f"{str(frame.filename).replace(str(ROOT) + '/', '')}:{frame.lineno}"
                      for frame in stat.traceback], stat.size, stat.count)
                    for stat in snapshot.statistics("traceback")[: ns.detail]
                ]
        stop.set()

    with open(os.devnull, "wb") as devnull:  # noqa: ASYNC230 - opening /dev/null does not block
        async with anyio.create_task_group() as group:
            group.start_soon(watch)
            stats = await follow(
                config, sink=JsonLinesSink(devnull), clock=clock, stop=stop,
                rng=random.Random(1), on_runner=runners.append,
            )
    figures["polls_ok"] = stats.polls_ok
    figures["polls_failed"] = stats.polls_failed
    figures["lines"] = stats.events.get("log", 0)
    return figures


def child(ns: argparse.Namespace) -> None:
    """Measure one size in this process; print the figures as one JSON line."""
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
    )
    with server(ns.child, ns.pods, ns.window, ns.new_per_poll) as base_url:
        figures = anyio.run(measure, ns, base_url)
    print(json.dumps(figures))


def run_child(size: int, ns: argparse.Namespace, *, trace: bool) -> dict[str, Any]:
    args = [
        sys.executable, str(Path(__file__).resolve()), "--child", str(size),
        "--pods", str(ns.pods), "--window", str(ns.window), "--polls", str(ns.polls),
        "--new-per-poll", str(ns.new_per_poll), "--detail", str(ns.detail),
        "--frames", str(ns.frames),
    ]
    if trace:
        args.append("--traced-child")
    env = child_env()
    done = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"child {size} failed:\n{done.stderr}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


@dataclass
class Size:
    """The figures of one size: an RSS run and, optionally, a tracemalloc run."""

    pods: int
    rss: dict[str, Any]
    traced: dict[str, Any] | None

    @property
    def delta_kib(self) -> int:
        return int(self.rss["rss_steady_kib"]) - int(self.rss["rss_before_kib"])

    @property
    def per_1000_mb(self) -> float:
        return self.delta_kib * 1024 / 1e6 / self.pods * 1000

    @property
    def heap_bytes(self) -> int | None:
        if self.traced is None:
            return None
        return int(self.traced["traced_steady"]) - int(self.traced["traced_before"])


def print_sizes(rows: list[Size]) -> None:
    print(f"  {'pods':>8} {'RSS before':>12} {'RSS steady':>12} {'delta':>11} "
          f"{'MB/1,000 pods':>14} {'traced heap':>12} {'traced MB/1,000':>16}")
    for row in rows:
        heap = row.heap_bytes
        heap_text = "" if heap is None else f"{heap / 1e6:.1f} MB"
        heap_per = "" if heap is None else f"{heap / 1e6 / row.pods * 1000:.2f}"
        print(f"  {row.pods:>8,} {row.rss['rss_before_kib'] / 1024:8.1f} MiB "
              f"{row.rss['rss_steady_kib'] / 1024:8.1f} MiB {row.delta_kib / 1024:7.1f} MiB "
              f"{row.per_1000_mb:14.2f} {heap_text:>12} {heap_per:>16}")
    if len(rows) >= 2:
        first, last = rows[0], rows[-1]
        slope = (last.delta_kib - first.delta_kib) * 1024 / 1e6 / (last.pods - first.pods) * 1000
        print(f"\n  marginal RSS between {first.pods:,} and {last.pods:,} pods: "
              f"{slope:.2f} MB per 1,000 pods (fixed costs cancel out)")
        if first.heap_bytes is not None and last.heap_bytes is not None:
            heap_slope = (last.heap_bytes - first.heap_bytes) / 1e6 / (last.pods - first.pods)
            print(f"  marginal traced heap: {heap_slope * 1000:.2f} MB per 1,000 pods")
    for row in rows:
        if row.traced is None:
            continue
        print(f"\n  where the traced heap is at {row.pods:,} pods (top files, steady state):")
        for name, size in row.traced["traced_top"]:
            print(f"    {size / 1e6:8.2f} MB  {name}")
        if row.traced.get("traced_lines"):
            print(f"\n  top lines at {row.pods:,} pods (size, blocks):")
            for where, size, count in row.traced["traced_lines"]:
                print(f"    {size / 1e6:8.3f} MB {count:>8,}  {where}")
        if row.traced.get("traced_tracebacks"):
            print(f"\n  top allocation sites at {row.pods:,} pods (size, blocks, innermost first):")
            for frames, size, count in row.traced["traced_tracebacks"]:
                print(f"    {size / 1e6:8.3f} MB {count:>8,}  " + " <- ".join(reversed(frames)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,5000", help="pipelines per run (1000,5000)")
    parser.add_argument("--pods", type=int, default=1, help="pods per pipeline (1)")
    parser.add_argument("--window", type=int, default=200, help="tail lines (200)")
    parser.add_argument("--new-per-poll", type=int, default=20,
                        help="new lines per pod per answer (20)")
    parser.add_argument("--polls", type=int, default=2,
                        help="answers per pipeline before measuring (2: tails are full from the "
                        "first answer, so every pod's state has its steady size after that)")
    parser.add_argument("--max-mb", type=float, default=10.0,
                        help="target: MB of RSS per 1,000 pods (10)")
    parser.add_argument("--trace", default="first", choices=("first", "all", "none"),
                        help="tracemalloc runs for the first size only (default), all or none")
    parser.add_argument("--detail", type=int, default=0,
                        help="also print the traced heap's top lines (0: none)")
    parser.add_argument("--frames", type=int, default=1,
                        help="frames traced per allocation; above 1, --detail also prints the "
                        "top allocation sites with their callers (1)")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--traced-child", action="store_true", help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.child is not None:
        child(ns)
        return 0
    sizes = [int(size) for size in ns.sizes.split(",")]
    print(f"memory bench: {ns.pods} pod(s) per pipeline, {ns.window}-line tails of realistic "
          f"lines, {ns.new_per_poll} new lines per answer, measured after every pipeline was "
          f"answered {ns.polls} times; one fresh process per size; MB = 10^6 bytes\n")
    rows = []
    for index, size in enumerate(sizes):
        started = time.perf_counter()
        rss = run_child(size, ns, trace=False)
        trace = ns.trace == "all" or (ns.trace == "first" and index == 0)
        traced = run_child(size, ns, trace=True) if trace else None
        row = Size(size * ns.pods, rss, traced)
        rows.append(row)
        print(f"  {row.pods:,} pods: RSS {rss['rss_before_kib'] / 1024:.1f} -> "
              f"{rss['rss_steady_kib'] / 1024:.1f} MiB, {row.per_1000_mb:.2f} MB per 1,000 pods "
              f"({rss['polls_ok']:,} polls, {rss['lines']:,} lines emitted, "
              f"{time.perf_counter() - started:.0f} s)", flush=True)
    print()
    print_sizes(rows)
    problems = [
        f"{row.pods:,} pods: {row.per_1000_mb:.2f} MB of RSS per 1,000 pods"
        for row in rows
        if row.per_1000_mb > ns.max_mb
    ]
    print("\nresult:", f"target met (<= {ns.max_mb:g} MB per 1,000 pods)" if not problems
          else "MISSED: " + "; ".join(problems))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
