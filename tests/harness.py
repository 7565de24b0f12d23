"""The simulator served on loopback under a fake clock, and the real follower driven against it.

Time is a discrete-event simulation: the harness waits until the follower is idle (its dispatcher
parked, and every request in flight waiting on the simulator's clock), then advances the fake clock
to the next deadline. Nothing sleeps in real time, and runs are reproducible.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

import anyio
from aiohttp import web
from aiohttp.test_utils import TestServer

from follower.api.secret import ServiceKey
from follower.config import Config
from follower.engine.poller import PollStats
from follower.engine.runner import Runner
from follower.engine.service import follow
from follower.simulator.app import RECORDER, create_app
from follower.simulator.faults import FaultSettings
from follower.simulator.recorder import Recorder
from follower.simulator.world import SimSettings, World
from follower.sinks import Sink
from follower.testing import FakeClock, advance_to, settle

KEY = "e2e-key"


@dataclass
class Harness:
    """A served simulator plus what a test needs to follow it."""

    clock: FakeClock
    world: World
    app: web.Application
    base_url: str

    @property
    def recorder(self) -> Recorder:
        return self.app[RECORDER]

    def config(self, **overrides: Any) -> Config:
        """A Config for every simulated pipeline; keyword arguments override fields."""
        base = Config(
            key=ServiceKey(KEY),
            pipelines=tuple(self.world.pipeline_ids),
            base_url=self.base_url,
            interval_s=1.0,
        )
        return replace(base, **overrides)

    async def settle(self, runner: Runner) -> None:
        """Wait until the runner is idle (see follower.testing.settle)."""
        await settle(runner, self.clock)

    async def advance_to(self, runner: Runner, until: float) -> None:
        """Let fake time run to `until` (see follower.testing.advance_to)."""
        await advance_to(runner, self.clock, until)

    async def follow(
        self,
        config: Config,
        sink: Sink,
        *,
        steps: int,
        reset_state: bool = False,
        seed: int = 5,
        on_step: Callable[[int], None] | None = None,
        tick_s: float | None = None,
        on_runner: Callable[[Runner], None] | None = None,
    ) -> PollStats:
        """Follow for `steps` ticks of fake time (a tick: `tick_s`, default the poll interval).

        `on_step(i)` runs at the start of tick i, to change the world mid-run.
        """
        tick = tick_s or config.interval_s or 1.0
        stop = anyio.Event()
        stats: list[PollStats] = []
        runners: list[Runner] = []
        started = anyio.Event()
        finished = anyio.Event()

        def got_runner(runner: Runner) -> None:
            runners.append(runner)
            if on_runner is not None:
                on_runner(runner)
            started.set()

        async def run() -> None:
            stats.append(
                await follow(
                    config, sink=sink, clock=self.clock, stop=stop, rng=random.Random(seed),
                    reset_state=reset_state, on_runner=got_runner,
                )
            )
            finished.set()

        async def drive() -> None:
            await started.wait()
            runner = runners[0]
            for step in range(steps):
                if on_step is not None:
                    on_step(step)
                await self.advance_to(runner, self.clock.monotonic() + tick)
            await self.settle(runner)
            stop.set()
            # In-flight polls may wait on a slow simulated answer (asleep on the fake clock):
            # wake those, but never run into the end of the shutdown grace period.
            grace_ends = self.clock.monotonic() + config.shutdown_timeout_s
            while True:
                deadline = self.clock.next_deadline()
                if deadline is not None and deadline < grace_ends:
                    self.clock.advance_to(deadline)
                else:
                    await self.clock.change.wait()

        async with anyio.create_task_group() as group:
            group.start_soon(run)
            group.start_soon(drive)
            await finished.wait()
            group.cancel_scope.cancel()
        return stats[0]


@asynccontextmanager
async def simulated(
    settings: SimSettings,
    *,
    world_age_s: float = 0.0,
    faults: FaultSettings | None = None,
    clock: FakeClock | None = None,
    key: str = KEY,
) -> AsyncIterator[Harness]:
    """Serve a world whose pods started `world_age_s` before now, on a free loopback port.

    Pass the `clock` of another harness to serve a second API (another key's group) in the same
    fake time.
    """
    clock = clock or FakeClock()
    world = World(
        settings, start=clock.monotonic() - world_age_s, wall_at_start=clock.wall() - world_age_s
    )
    app = create_app(world, clock, key, faults or FaultSettings())
    async with TestServer(app, host="127.0.0.1") as server:
        yield Harness(clock, world, app, str(server.make_url("")).rstrip("/"))
