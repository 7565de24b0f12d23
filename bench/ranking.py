"""Ranking: the CPU of choosing the next request, per token, at 100, 1,000 and 10,000 pipelines.

    PYTHONPATH=. python bench/ranking.py [--sizes 100,1000,10000] [--tokens 30000]

The dispatcher's own work per request, without HTTP or the event loop: a saturated follower's
pipelines are all due, each token goes to the pipeline most at risk (`Ranking.pick`), which
leaves the ranking while its request is in flight (`remove`) and comes back `--in-flight` tokens
later with its new plan (`put`). Rates are measured per poll as the throughput bench's answers
make them (new lines over the time since the last poll), so the risk lines cross all the time.
The same tokens are also chosen by the reference, a scan of every due pipeline
(`schedule.most_at_risk`), and both must choose alike; the figures are the CPU per token of each
and the tournament's node comparisons per token.
"""

from __future__ import annotations

import argparse
import collections
import random
import time

from follower.core import kinetic
from follower.core.ranking import Ranking
from follower.core.schedule import PipelinePlan, most_at_risk

TOKENS_PER_S = 430.0
"""About the throughput bench's request rate at 1,000 pipelines x 2 pods."""
NEW_LINES = 50
WINDOW = 200
SOURCE = "key"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000", help="pipelines (100,1000,10000)")
    parser.add_argument("--tokens", type=int, default=30_000, help="tokens per size (30,000)")
    parser.add_argument("--in-flight", type=int, default=8, help="requests in flight (8)")
    parser.add_argument("--scan-tokens", type=int, default=2_000,
                        help="tokens the reference scan chooses too (2,000)")
    return parser.parse_args()


def run(size: int, tokens: int, in_flight: int, *, scan: bool) -> tuple[float, list[str]]:
    """CPU seconds per token and the pipelines chosen, with the ranking or with the scan."""
    rng = random.Random(size)
    plans = {
        f"p{index:06d}": PipelinePlan(last_poll=0.0, rate_lps=rng.uniform(15.0, 30.0),
                                      window=WINDOW, samples=3, polls=3)
        for index in range(size)
    }
    ranking: Ranking[str] = Ranking(30.0)
    waiting = dict(plans)  # the pipelines not in flight, for the scan
    if not scan:
        for pipeline_id, plan in plans.items():
            ranking.put(pipeline_id, plan, SOURCE, 0.0)
    ready = {SOURCE: -1.0}
    flying: collections.deque[tuple[str, float]] = collections.deque()
    chosen: list[str] = []
    now = 1.0
    started = time.process_time()
    for _ in range(tokens):
        now += 1.0 / TOKENS_PER_S
        if scan:
            picked = most_at_risk(waiting.items(), now)
            assert picked is not None
            del waiting[picked]
        else:
            picked, _ = ranking.pick(now, ready)
            assert picked is not None
            ranking.remove(picked)
        chosen.append(picked)
        flying.append((picked, now))
        if len(flying) > in_flight:
            back, sent_at = flying.popleft()
            plan = plans[back]
            assert plan.last_poll is not None
            plan.rate_lps = NEW_LINES / (sent_at - plan.last_poll)
            plan.last_poll = sent_at
            if scan:
                waiting[back] = plan
            else:
                ranking.put(back, plan, SOURCE, sent_at)
    return (time.process_time() - started) / tokens, chosen


def comparisons(size: int, tokens: int, in_flight: int) -> float:
    """The tournament's node comparisons per token (a run of its own: counting costs time)."""
    count = 0
    recompute = kinetic.RiskTournament._recompute

    def counting(self: kinetic.RiskTournament, node: int) -> bool:
        nonlocal count
        count += 1
        return recompute(self, node)

    kinetic.RiskTournament._recompute = counting  # type: ignore[method-assign]
    try:
        run(size, tokens, in_flight, scan=False)
    finally:
        kinetic.RiskTournament._recompute = recompute  # type: ignore[method-assign]
    return count / tokens


def main() -> int:
    ns = parse_args()
    sizes = [int(size) for size in ns.sizes.split(",")]
    print(f"ranking bench: saturated, every pipeline due, {ns.in_flight} in flight, "
          f"{TOKENS_PER_S:g} tokens/s, rates measured per poll; {ns.tokens:,} tokens per size "
          f"(the scan: {ns.scan_tokens:,})\n")
    print(f"  {'pipelines':>10}{'ranking us/token':>18}{'comparisons':>13}{'scan us/token':>15}")
    for size in sizes:
        per_token, picked = run(size, ns.tokens, ns.in_flight, scan=False)
        # A run is the same tokens whatever its length (seeded by the size): the scan's run
        # checks the ranking's first choices.
        scan_tokens = min(ns.scan_tokens, ns.tokens)
        scan_per_token, scanned = run(size, scan_tokens, ns.in_flight, scan=True)
        if picked[:scan_tokens] != scanned:
            print(f"MISMATCH at {size} pipelines: the ranking chose otherwise than the scan")
            return 1
        print(f"  {size:>10,}{per_token * 1e6:>18.1f}"
              f"{comparisons(size, ns.tokens, ns.in_flight):>13.1f}{scan_per_token * 1e6:>15.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
