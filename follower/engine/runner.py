"""A run: wires the parts of the follower together, runs them, reloads them and stops them.

- follower/engine/roster.py: the followed pipelines (what discovery adds and drops);
- follower/engine/dispatcher.py: which pipeline gets the next token, the workers that poll,
  budget re-planning and partial snapshots; follower/engine/parking.py: how it waits;
- follower/engine/poller.py: one request and what its answer means;
- follower/engine/discovery_loop.py: one listing loop per source that discovers;
- follower/engine/keys.py: a 401 pauses a source but for a probe until its key works;
- follower/engine/state_saver.py: the checkpoint loop; follower/engine/status.py: what the ops
  server asks.

Shutdown has two phases: `stop` starts no new request; in-flight requests get
`shutdown_timeout_s` to finish and write their events; then whatever is left is cancelled and
a last checkpoint is written.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

import anyio
import anyio.abc
import structlog

from follower.clock import Clock
from follower.core.tail_errors import TailErrorMatcher
from follower.engine.checkpoint import Saved
from follower.engine.discovery_loop import Discoverer
from follower.engine.dispatcher import Dispatcher
from follower.engine.journal import Journal
from follower.engine.keys import KeyWatch
from follower.engine.parking import Parking
from follower.engine.poller import Poller, PollStats
from follower.engine.roster import Roster
from follower.engine.settings import Checkpointer, RunSettings
from follower.engine.sources import Source, SourceSettings
from follower.engine.state_saver import StateSaver
from follower.engine.status import Status
from follower.errors import CheckpointError
from follower.ops.metrics import Metrics
from follower.sinks import Sink

__all__ = ["Runner"]


class Runner:
    """Follows pipelines until stopped or until none is left to follow."""

    def __init__(
        self,
        *,
        sources: Sequence[Source],
        sink: Sink,
        clock: Clock,
        settings: RunSettings,
        matcher: TailErrorMatcher,
        rng: random.Random | None = None,
        log: Any = None,
        restored: Mapping[str, Saved] | None = None,
        reset_state: bool = False,
        checkpointer: Checkpointer | None = None,
        journal: Journal | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        names = [source.name for source in sources]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"sources need distinct names, got {names!r}")
        self._sources = tuple(sources)
        self._clock = clock
        self._settings = settings
        rng = rng or random.Random()
        self._log = log or structlog.get_logger("follower")
        # Held while a poll's answer is folded into its tracker and its events are written, and
        # while a checkpoint snapshot is taken: a checkpoint never covers an unwritten event.
        commit = anyio.Lock(fast_acquire=True)  # no yield to the loop when free
        self.stats = PollStats()
        self.metrics = metrics or Metrics()
        self._parking = Parking(clock)
        self._keys = KeyWatch(self._sources, clock=clock, settings=settings, rng=rng,
                              log=self._log)
        self._poller = Poller(
            sink=sink, clock=clock, schedule=settings.schedule_settings(), rng=rng,
            log=self._log, commit=commit, stats=self.stats, metrics=self.metrics,
            reject_key=self._keys.reject,
            in_flight_limit=self._in_flight_limit,
            followed_count=self._followed_count,
            journal=journal,
        )
        self._roster = Roster(
            clock=clock, settings=settings, matcher=matcher, commit=commit,
            write=self._poller.write, log=self._log, restored=restored, reset_state=reset_state,
            journal=journal,
        )
        for source in self._sources:
            self._roster.select(source)
            for pipeline_id in source.explicit:
                if not self._roster.is_followed(pipeline_id):
                    self._roster.follow(pipeline_id, source)
        self._dispatcher = Dispatcher(
            roster=self._roster, sources=self._sources, parking=self._parking,
            poller=self._poller, keys=self._keys, clock=clock, settings=settings,
            metrics=self.metrics, log=self._log,
        )
        self._discoverer = Discoverer(
            self._roster, parking=self._parking, clock=clock, metrics=self.metrics,
            log=self._log, keys=self._keys,
        )
        self._saver = StateSaver(self._roster, commit=commit, clock=clock, parking=self._parking,
                                 checkpointer=checkpointer, journal=journal, log=self._log)
        self.metrics.checkpoint_age_from(self._saver.age)
        self._status = Status(roster=self._roster, sources=self._sources, keys=self._keys,
                              stats=self.stats, metrics=self.metrics, dispatcher=self._dispatcher)
        self._outer: anyio.abc.TaskGroup | None = None

    def _in_flight_limit(self) -> int:
        return self._settings.max_in_flight

    def _followed_count(self) -> int:
        return len(self._roster)

    # --- what callers and tests read -----------------------------------------------------------

    @property
    def followed(self) -> tuple[str, ...]:
        """The pipelines followed right now."""
        return self._roster.ids()

    @property
    def in_flight(self) -> int:
        """Requests sent and not yet answered."""
        return self._parking.in_flight

    @property
    def parked(self) -> bool:
        """True while the dispatcher waits with nothing it could start (tests wait for this)."""
        return self._parking.parked

    @property
    def clock_sleepers(self) -> int:
        """Tasks of this runner asleep on the clock (tests tell them from the simulator's)."""
        return self._parking.sleepers

    @property
    def change(self) -> anyio.Event:
        """Set at the next change of `parked`, `in_flight` or `clock_sleepers` (for tests)."""
        return self._parking.change

    def snapshot(self) -> dict[str, Saved]:
        """Every followed pipeline's pods as of the last written events, and what its plan
        learnt."""
        return self._roster.snapshot()

    async def checkpoint(self) -> bool:
        """Save a snapshot taken between two commits (no-op without a checkpointer); False when
        it could not be saved."""
        return await self._saver.save()

    async def flush_partials(self, *, everything: bool = False) -> None:
        """Write the partial snapshots of open lines that are due (every one, at shutdown)."""
        await self._dispatcher.flush_partials(everything=everything)

    def refresh_metrics(self) -> None:
        """Set the gauges that describe the present (followed pipelines, states, budget)."""
        self._status.refresh_metrics()

    def health(self) -> tuple[bool, str]:
        """Alive while the run goes on (a failed sink ends the run)."""
        return self._status.health()

    def readiness(self) -> tuple[bool, str]:
        """Ready once a poll succeeded and while the key is accepted."""
        return self._status.readiness()

    # --- reloading -----------------------------------------------------------------------------

    async def reconfigure(
        self,
        settings: RunSettings,
        sources: Sequence[SourceSettings],
        matcher: TailErrorMatcher,
    ) -> tuple[list[str], list[str]]:
        """Apply a reloaded configuration; pipelines that stay keep their diff state.

        `sources` gives new settings to the running sources of the same name (a source cannot
        be added or removed without a restart: it has its own key and client). Returns the
        pipelines added and removed. Schedule, budgets, backoff, filters, tail-error patterns
        and discovery take effect at once; so do sharding changes.
        """
        self._settings = settings
        self._poller.reschedule(settings.schedule_settings())
        self._keys.reconfigure(settings)
        self._roster.reconfigure(settings, matcher)
        self._dispatcher.reconfigure(settings)
        given = {new.name: new for new in sources}
        for source in self._sources:
            source.reconfigure(given.get(source.name, source.settings))
            self._roster.select(source)
        removed = self._roster.unwanted()
        for pipeline_id in removed:
            await self._roster.drop(pipeline_id, "not_configured")
        added: list[str] = []
        for source in self._sources:
            for pipeline_id in source.explicit:
                if not self._roster.is_followed(pipeline_id):
                    added.append(pipeline_id)
                    await self._roster.add(pipeline_id, None, source)
        self._discoverer.restart(self._sources, self._outer)
        self._parking.wake()
        return added, removed

    # --- running -------------------------------------------------------------------------------

    async def run(self, stop: anyio.Event) -> PollStats:
        """Follow until `stop` is set, or until no pipeline is left (without discovery)."""
        self._log.info(
            "follower_started",
            pipelines=len(self._roster),
            sources=len(self._sources),
            discovery=any(source.settings.discovery.enabled for source in self._sources),
            shard=f"{self._settings.shard.index}/{self._settings.shard.count}",
            mode="fixed" if self._settings.interval_s is not None else "adaptive",
        )
        self._status.running = True
        clean = saved = False
        try:
            async with anyio.create_task_group() as outer:
                self._outer = outer
                outer.start_soon(self._shutdown_on, stop)
                if self._saver.enabled:
                    outer.start_soon(self._saver.every, self._settings.checkpoint_interval_s)
                self._discoverer.restart(self._sources, outer)
                await self._dispatcher.run()
                outer.cancel_scope.cancel()
            clean = True
        finally:
            # Also after a failure (the output closed): every tracker holds only what was
            # written (a failed write undoes its poll), so this checkpoint is still exact.
            with anyio.CancelScope(shield=True):
                try:
                    if clean:  # lines still being written reach the output as snapshots
                        await self.flush_partials(everything=True)
                finally:
                    saved = await self.checkpoint()
            self._status.running = False
        self._log.info(
            "follower_stopped",
            polls_ok=self.stats.polls_ok,
            polls_failed=self.stats.polls_failed,
            status_polls=self.stats.status_polls,
            events=self.stats.events,
        )
        if not saved:
            raise CheckpointError
        return self.stats

    async def _shutdown_on(self, stop: anyio.Event) -> None:
        await stop.wait()
        self._dispatcher.stop()
        self._log.info("shutdown_started", grace_s=self._settings.shutdown_timeout_s)
        await self._parking.sleep(self._settings.shutdown_timeout_s)
        self._log.warning("shutdown_grace_expired", action="cancelling in-flight requests")
        self._dispatcher.cancel()
