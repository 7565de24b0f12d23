"""Restarts: lines a busy pod loses when the follower is stopped and started again, in fake time.

    PYTHONPATH=. python bench/restarts.py [--cycles 6] [--every 9] [--downtime 0.5]

One pipeline, one pod writing 100 lines/s into a 200-line window, a budget of 10 requests/s,
adaptive scheduling: the follower (`follow()`, the same assembly as `follower run`, with a state
file) is stopped cleanly every `--every` seconds and started again `--downtime` seconds later.
The pod fills its window in 2 s, so every second of waiting after a start costs lines.

Two modes on the same seeded world:
- learnt (today): the checkpoint carries the line rate and window the scheduler learnt, so the
  first polls after a start are planned from them; a cold start with budget to spare probes a
  busy-looking first tail at the floor.
- cold: the plan is stripped from the state file before every start and spare budget does not
  shorten probes (`target_utilization = 0`), as before: each start polls once, then waits
  `probe_s` (5 s) for the second look.

Lost lines are counted from the simulator's truth: every line written between the first line the
first poll showed and the last line the last poll showed that was never emitted. The first cycle
is the cold start (no state yet) and is reported on its own.

Exits 1 when the learnt mode loses a line after the cold start (the budget covers the need).
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import anyio
import orjson
import structlog
from aiohttp.test_utils import TestServer

from follower.api.secret import ServiceKey
from follower.config import Config
from follower.core.budget import BudgetSettings
from follower.core.events import LogEvent
from follower.core.schedule import ScheduleSettings
from follower.engine.service import follow
from follower.simulator.app import create_app
from follower.simulator.faults import FaultSettings
from follower.simulator.world import SimSettings, World
from follower.testing import FakeClock, MemorySink, advance_to, settle

KEY = "bench-restarts-key"
WORLD = SimSettings(
    pipelines=1, pods=1, rate=100.0, window=200, line_style="unique", seed=11, backlog_s=10.0
)


@dataclass
class Outcome:
    cold_start_lost: int
    later_lost: int
    gaps: int
    requests: int


def strip_plans(state: Path) -> None:
    document = orjson.loads(state.read_bytes())
    for entry in document["pipelines"].values():
        entry["plan"] = None
    state.write_bytes(orjson.dumps(document))


async def run_once(config: Config, clock: FakeClock, sink: MemorySink, seconds: float) -> int:
    """Follow for `seconds` of fake time, then stop cleanly; the requests it sent."""
    stop = anyio.Event()
    runners = []
    started = anyio.Event()

    def got_runner(runner: object) -> None:
        runners.append(runner)
        started.set()

    async def drive() -> None:
        await started.wait()
        runner = runners[0]
        await advance_to(runner, clock, clock.monotonic() + seconds)  # type: ignore[arg-type]
        await settle(runner, clock)  # type: ignore[arg-type]
        stop.set()

    async with anyio.create_task_group() as group:
        group.start_soon(drive)
        stats = await follow(
            config, sink=sink, clock=clock, stop=stop, rng=random.Random(1), on_runner=got_runner
        )
    return stats.polls_ok + stats.polls_failed


async def run_mode(learnt: bool, ns: argparse.Namespace) -> Outcome:
    clock = FakeClock()
    world = World(WORLD, start=clock.monotonic(), wall_at_start=clock.wall())
    app = create_app(world, clock, KEY, FaultSettings())
    pipeline_id = world.pipeline_ids[0]
    with tempfile.TemporaryDirectory() as folder:
        state = Path(folder) / "state.json"
        async with TestServer(app, host="127.0.0.1") as server:
            config = Config(
                key=ServiceKey(KEY), pipelines=(pipeline_id,),
                base_url=str(server.make_url("")).rstrip("/"), interval_s=None,
                budget=BudgetSettings(10.0), state_file=state,
                schedule=ScheduleSettings(target_utilization=0.5 if learnt else 0.0),
            )
            sinks, requests = [], 0
            for cycle in range(ns.cycles):
                if cycle and not learnt:
                    strip_plans(state)
                sink = MemorySink()
                requests += await run_once(config, clock, sink, ns.every)
                sinks.append(sink)
                clock.advance(ns.downtime)
    return count(world, pipeline_id, sinks, requests, clock.monotonic())


def count(
    world: World, pipeline_id: str, sinks: list[MemorySink], requests: int, until: float
) -> Outcome:
    emitted = [
        e.message for sink in sinks for e in sink.events
        if isinstance(e, LogEvent) and not e.partial
    ]
    gaps = sum(1 for sink in sinks for e in sink.events if e.kind == "gap")
    pod = next(e.pod for e in sinks[0].events if isinstance(e, LogEvent))
    truth = world.lines(pipeline_id, pod, until)
    index = {line: i for i, line in enumerate(truth)}
    first_cycle = [e.message for e in sinks[0].events if isinstance(e, LogEvent)]
    seen = {index[m] for m in emitted}
    start, end = min(seen), max(seen)
    cold_end = max(index[m] for m in first_cycle)
    lost = [i for i in range(start, end + 1) if i not in seen]
    if len(emitted) != len(set(emitted)):
        raise SystemExit("a line was emitted twice")
    return Outcome(
        cold_start_lost=sum(i <= cold_end for i in lost),
        later_lost=sum(i > cold_end for i in lost),
        gaps=gaps,
        requests=requests,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=6, help="starts of the follower (6)")
    parser.add_argument("--every", type=float, default=9.0, help="seconds each run lasts (9)")
    parser.add_argument("--downtime", type=float, default=0.5, help="seconds between runs (0.5)")
    ns = parser.parse_args()
    logging.disable(logging.CRITICAL)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    results = {mode: anyio.run(run_mode, mode == "learnt", ns) for mode in ("cold", "learnt")}
    print(f"one pod at {WORLD.rate:.0f} lines/s, window {WORLD.window}, budget 10 req/s, "
          f"{ns.cycles} starts {ns.every:g} s apart ({ns.downtime:g} s down)")
    print(f"{'mode':<8} {'lost in cold start':>18} {'lost after restarts':>20} {'gaps':>5} "
          f"{'requests':>9}")
    for mode, outcome in results.items():
        print(f"{mode:<8} {outcome.cold_start_lost:>18} {outcome.later_lost:>20} "
              f"{outcome.gaps:>5} {outcome.requests:>9}")
    learnt = results["learnt"]
    if learnt.later_lost:
        print(f"MISSED: the learnt mode lost {learnt.later_lost} lines after restarts")
        return 1
    print("target met: 0 lines lost after clean restarts when the budget covers the need")
    return 0


if __name__ == "__main__":
    sys.exit(main())

