"""The simulator served on loopback under a fake clock, and the real follower driven against it."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

import anyio
from aiohttp import web
from aiohttp.test_utils import TestServer

from follower.config import Config
from follower.runner import RunStats
from follower.secret import ServiceKey
from follower.service import follow
from follower.simulator.app import RECORDER, create_app
from follower.simulator.faults import FaultSettings
from follower.simulator.recorder import Recorder
from follower.simulator.world import SimSettings, World
from follower.sinks import Sink
from follower.testing import FakeClock

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

    async def follow(
        self,
        config: Config,
        sink: Sink,
        *,
        steps: int,
        reset_state: bool = False,
        seed: int = 5,
        on_step: Callable[[int], None] | None = None,
        followed: Callable[[int], int] | None = None,
    ) -> RunStats:
        """Follow for `steps` intervals of fake time (advanced whenever all tasks sleep), stop.

        `followed(step)` says how many pipelines are still followed at a step (default: all).
        """

        def sleepers(step: int) -> int:
            tasks = followed(step) if followed else len(config.pipelines)
            return tasks + (1 if config.state_file else 0)

        stop = anyio.Event()
        stats: list[RunStats] = []

        finished = anyio.Event()

        async def run() -> None:
            stats.append(
                await follow(
                    config,
                    sink=sink,
                    clock=self.clock,
                    stop=stop,
                    rng=random.Random(seed),
                    reset_state=reset_state,
                )
            )
            finished.set()

        async def keep_time_moving(grace_ends: float) -> None:
            # After stop, in-flight polls may wait on a slow simulated answer, which sleeps on the
            # fake clock: wake those, but never run into the end of the shutdown grace period.
            while True:
                deadline = self.clock.next_deadline()
                if deadline is not None and deadline < grace_ends:
                    self.clock.advance(deadline - self.clock.monotonic())
                else:
                    await self.clock.wait_for_sleepers(self.clock.sleepers + 1)

        async with anyio.create_task_group() as group:
            group.start_soon(run)
            for step in range(steps):
                await self.clock.wait_for_sleepers(sleepers(step))
                if on_step is not None:
                    on_step(step)
                self.clock.advance(config.interval_s)
            await self.clock.wait_for_sleepers(sleepers(steps))
            stop.set()
            group.start_soon(keep_time_moving, self.clock.monotonic() + config.shutdown_timeout_s)
            await finished.wait()
            group.cancel_scope.cancel()
        return stats[0]


@asynccontextmanager
async def simulated(
    settings: SimSettings,
    *,
    world_age_s: float = 0.0,
    faults: FaultSettings | None = None,
) -> AsyncIterator[Harness]:
    """Serve a world whose pods started `world_age_s` before now, on a free loopback port."""
    clock = FakeClock()
    world = World(
        settings, start=clock.monotonic() - world_age_s, wall_at_start=clock.wall() - world_age_s
    )
    app = create_app(world, clock, KEY, faults or FaultSettings())
    async with TestServer(app, host="127.0.0.1") as server:
        yield Harness(clock, world, app, str(server.make_url("")).rstrip("/"))
