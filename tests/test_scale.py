"""Hundreds of pipelines in fake time: nothing observable is lost, the budget is never exceeded."""

from __future__ import annotations

import bisect
import math

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiohttp.typedefs import Handler
from harness import KEY, Harness, simulated
from test_end_to_end import check_against_truth

from follower.core.budget import BudgetSettings
from follower.core.events import GapEvent, LogEvent
from follower.simulator.app import create_app
from follower.simulator.faults import FaultSettings
from follower.simulator.world import SimSettings, World
from follower.testing import FakeClock, MemorySink


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_five_hundred_pipelines_lose_nothing() -> None:
    """500 pipelines x 2 pods with skewed rates, adaptive polling on a budget that covers them:
    every line written from a pod's first tail to its last poll is emitted once, in order."""
    settings = SimSettings(
        pipelines=500, pods=2, rate=0.5, rate_skew=0.8, window=200, line_style="unique", seed=21
    )
    sink = MemorySink()
    async with simulated(settings) as sim:
        config = sim.config(interval_s=None, budget=BudgetSettings(100.0, 100))
        stats = await sim.follow(config, sink, steps=60, tick_s=1.0)
        until = sim.clock.monotonic()
        checked = check_against_truth(sim.world, sim.recorder, sink, until)
        recorder = sim.recorder
    assert stats.polls_failed == 0
    assert recorder.outcomes["ok"] == recorder.requests["logs"] == stats.polls_ok
    assert not [e for e in sink.events if isinstance(e, GapEvent)]
    # Nothing scrolled out between two polls: every pod's lines from the first line of its
    # first tail to the last line of its last tail were shown, so the check above covers them.
    written = 0
    for pipeline_id in sim.world.pipeline_ids:
        for pod in recorder.observed_pods(pipeline_id):
            lines = recorder.observed(pipeline_id, pod)
            if not lines:  # a pod that wrote nothing yet
                continue
            truth = sim.world.lines(pipeline_id, pod, until)
            start = truth.index(lines[0])
            assert truth[start : start + len(lines)] == lines, (pipeline_id, pod)
            written += len(lines)
    assert checked == written == len([e for e in sink.events if isinstance(e, LogEvent)])
    assert checked > 500 * 2 * 0.5 * 30


class Arrivals:
    """Times (on the fake clock) at which the simulator received each request."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.times: list[float] = []

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.times.append(self.clock.monotonic())
        return await handler(request)

    def most_in(self, window_s: float) -> int:
        """The most requests received in any half-open window [t, t + window_s)."""
        times = sorted(self.times)
        return max(
            (bisect.bisect_left(times, t + window_s, lo=i) - i for i, t in enumerate(times)),
            default=0,
        )


@pytest.mark.parametrize("burst", [1, 5, 20])
async def test_requests_never_exceed_the_budget(burst: int) -> None:
    """200 pipelines that want 200 req/s against a 20 req/s budget: in any window of W seconds
    the simulator receives at most burst + 20 W requests (20 per second with burst 1) and its
    rate limiter at 20 req/s (burst 20: the follower's largest burst here) never answers 429."""
    rate = 20.0
    settings = SimSettings(pipelines=200, pods=1, rate=2.0, window=50, line_style="unique")
    clock = FakeClock()
    world = World(settings, start=clock.monotonic(), wall_at_start=clock.wall())
    app = create_app(world, clock, KEY, FaultSettings(rate_limit_rps=rate))
    arrivals = Arrivals(clock)
    app.middlewares.append(arrivals.middleware)
    async with TestServer(app, host="127.0.0.1") as server:
        sim = Harness(clock, world, app, str(server.make_url("")).rstrip("/"))
        config = sim.config(interval_s=1.0, budget=BudgetSettings(rate, burst))
        stats = await sim.follow(config, MemorySink(), steps=60)
        recorder = sim.recorder
    assert recorder.outcomes["rate_limited"] == 0
    assert stats.polls_failed == 0
    assert len(arrivals.times) == sum(recorder.requests.values())
    for window_s in (0.5, 1.0, 2.0, 10.0, 60.0):
        allowed = math.floor(burst + rate * window_s + 1e-6)
        assert arrivals.most_in(window_s) <= allowed, window_s
    # And the budget is spent, not left idle: the pipelines want ten times more.
    assert len(arrivals.times) >= rate * 60 - 1
