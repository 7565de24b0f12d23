"""Scaling: the follower's CPU per poll at 100, 1,000 and 10,000 followed pipelines.

    PYTHONPATH=. python bench/scaling.py [--sizes 100,1000,10000] [--pods 2] [--polls 5000]

The dispatcher must not grow with the number of followed pipelines: choosing the next request
costs the same whether 100 or 10,000 pipelines wait. Each size follows the answer server of
bench/throughput.py (every answer shows `--new-per-poll` new lines per pod in a `--window`-line
tail, so every poll carries the same work) with the real `follow()` as fast as the CPU allows,
and counts only the `--polls` polls after every pod was first seen (a first poll emits a whole
tail, and at 10,000 pipelines the first round alone is 10,000 polls). The sizes alternate over
`--rounds` rounds and the best round of each counts (the one least disturbed by other load).

Exits 1 when the largest CPU per poll is more than `--max-ratio` (1.2) times the smallest.
"""

from __future__ import annotations

import argparse
import os
import sys
from functools import partial

import anyio
from throughput import (
    add_answer_arguments,
    quiet_logs,
    run_follower,
    server_process,
    world_settings,
)

from follower.simulator.world import World


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000",
                        help="followed pipelines, comma-separated (100,1000,10000)")
    add_answer_arguments(parser, pods=2)
    parser.add_argument("--polls", type=int, default=5_000, help="counted polls per round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each size (2)")
    parser.add_argument("--max-ratio", type=float, default=1.2, help="target (1.2)")
    return parser.parse_args()


def main() -> int:
    ns = parse_args()
    quiet_logs()
    sizes = [int(size) for size in ns.sizes.split(",")]
    print(f"scaling bench: {', '.join(f'{s:,}' for s in sizes)} pipelines x {ns.pods} pod(s), "
          f"{ns.window}-line tails, {ns.new_per_poll} new lines per pod per answer, "
          f"{ns.in_flight} requests in flight, {ns.polls:,} counted polls per round (after "
          f"every pod's first poll), best of {ns.rounds}; {os.cpu_count()} CPUs\n", flush=True)
    best: dict[int, float] = {}
    lines: dict[int, float] = {}
    for index in range(ns.rounds):
        for size in sizes:
            settings = argparse.Namespace(**{**vars(ns), "pipelines": size})
            pipeline_ids = World(world_settings(settings), 0.0, 0.0).pipeline_ids
            with server_process(settings) as base_url:
                follow = partial(run_follower, warm_pods=size * ns.pods)
                result = anyio.run(follow, base_url, pipeline_ids, ns.polls, ns.in_flight)
            per_poll = result.cpu_s / result.polls
            print(f"  round {index + 1}, {size:>6,} pipelines: {per_poll * 1e3:.3f} ms CPU per "
                  f"poll over {result.polls:,} polls, {result.lines / result.polls:.1f} lines "
                  f"per poll", flush=True)
            if per_poll < best.get(size, float("inf")):
                best[size], lines[size] = per_poll, result.lines / result.polls
    print()
    print(f"  {'pipelines':>10}{'ms CPU per poll':>18}{'lines per poll':>16}{'vs smallest':>14}")
    low = min(best.values())
    for size in sizes:
        print(f"  {size:>10,}{best[size] * 1e3:18.3f}{lines[size]:16.1f}{best[size] / low:14.2f}")
    ratio = max(best.values()) / low
    met = ratio <= ns.max_ratio
    print(f"\nresult: {'target met' if met else 'MISSED'}: the largest CPU per poll is "
          f"{ratio:.2f}x the smallest (target {ns.max_ratio:g}x)")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
