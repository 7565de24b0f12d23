"""The poll loop: one dispatcher spends the request budget on the pipelines most at risk.

Each followed pipeline has a plan (when it is due, from its line rate and tail window), a lifecycle
(which request next: logs or status, and its backoff) and a tracker (its pods' diff state). The
dispatcher takes a token whenever one is free and some pipeline is due, gives it to the due
pipeline most at risk of losing lines, and starts that request in the task group; `Poller`
executes it. Each pipeline belongs to a source (one key on one API, follower/engine/sources.py)
whose budget it spends: with several sources, a pipeline may go when it is due and its own
source has a token. Discovery loops (follower/engine/discovery_loop.py, one per source that
discovers) add and remove pipelines, a checkpoint loop saves the state, and a 401 pauses that
source's requests but one probe until its key works. How the dispatcher waits is
follower/engine/parking.py.

Shutdown has two phases: `stop` starts no new request; in-flight requests get
`shutdown_timeout_s` to finish and write their events; then whatever is left is cancelled and
a last checkpoint is written.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final

import anyio
import anyio.abc
import structlog

from follower.clock import Clock
from follower.core import sharding
from follower.core.events import PipelineAddedEvent, PipelineRemovedEvent
from follower.core.lifecycle import Lifecycle
from follower.core.schedule import PipelinePlan, most_urgent, shortfall, spare_scale
from follower.core.tail_errors import TailErrorMatcher
from follower.core.tracker import PipelineTracker
from follower.engine.checkpoint import Saved
from follower.engine.discovery_loop import Discoverer
from follower.engine.parking import Parking
from follower.engine.poller import Followed, Poller, PollStats
from follower.engine.settings import Checkpointer, RunSettings
from follower.engine.sources import DEFAULT_SOURCE, Source, SourceSettings
from follower.ops.metrics import Metrics
from follower.sinks import Sink

RANKED: Final = 16
"""Pipelines one dispatcher scan ranks for the next tokens."""
RANKING_TTL_S: Final = 0.01
"""How long a ranking serves: a few ms of staleness costs nothing (risk moves by the line rate
times that), and in a saturated follower it saves a scan of every pipeline per request."""

REPLAN_S: Final = 1.0
"""How often each source's spare-budget scale and shortfall are computed from the plans."""

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
        metrics: Metrics | None = None,
    ) -> None:
        names = [source.name for source in sources]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"sources need distinct names, got {names!r}")
        self._sources = tuple(sources)
        self._clock = clock
        self._settings = settings
        self._schedule = settings.schedule_settings()
        self._lifecycle = settings.lifecycle_settings()
        self._matcher = matcher
        self._rng = rng or random.Random()
        self._log = log or structlog.get_logger("follower")
        self._restored = dict(restored or {})
        self._reset_state = reset_state
        self._checkpointer = checkpointer
        # Held while a poll's answer is folded into its tracker and its events are written, and
        # while a checkpoint snapshot is taken: a checkpoint never covers an unwritten event.
        self._commit = anyio.Lock(fast_acquire=True)  # no yield to the loop when free
        self.stats = PollStats()
        self.metrics = metrics or Metrics()
        self._checkpointed_at: float | None = None
        self.metrics.checkpoint_age_from(self._checkpoint_age)
        self._running = False
        self._poller = Poller(
            sink=sink, clock=clock, schedule=self._schedule, rng=self._rng, log=self._log,
            commit=self._commit, stats=self.stats, metrics=self.metrics,
            reject_key=self._reject_key,
            in_flight_limit=lambda: self._settings.max_in_flight,
            followed_count=lambda: len(self._followed),
        )
        self._followed: dict[str, Followed] = {}
        for source in self._sources:
            self._select(source)
            for pipeline_id in source.explicit:
                if pipeline_id not in self._followed:
                    self._follow(pipeline_id, source)
        self._stopping = False
        self._parking = Parking(clock)
        self._discoverer = Discoverer(
            self, parking=self._parking, clock=clock, metrics=self.metrics, log=self._log,
            shard=lambda: (self._settings.shard_index, self._settings.shard_count),
            labels=self._source_field,
        )
        self._shortfall = 0.0
        self._partial_due = math.inf
        """The earliest partial snapshot due, on the monotonic clock."""
        self._replan_soon = False
        """A busy first look waits for its probe: re-plan at the next `REPLAN_S`."""
        self._ranked: list[Followed] = []
        self._ranked_at = -math.inf
        self._planned_at = -float("inf")
        self._short_since: float | None = None
        self._reported_at = -float("inf")
        self._outer: anyio.abc.TaskGroup | None = None

    # --- the followed set ----------------------------------------------------------------------

    def _select(self, source: Source) -> None:
        """This replica's share of the source's explicit pipelines."""
        settings = self._settings
        source.explicit = tuple(
            sharding.select(source.settings.pipelines, settings.shard_index, settings.shard_count)
        )

    def _follow(self, pipeline_id: str, source: Source) -> None:
        saved = self._restored.pop(pipeline_id, None)
        since, lines = self._settings.since, self._settings.lines
        if saved is not None:
            tracker = PipelineTracker.restored(
                pipeline_id, since, self._matcher, saved.pods, lines
            )
        else:
            tracker = PipelineTracker(
                pipeline_id, since, self._matcher, reset_state=self._reset_state, lines=lines
            )
        added = self._clock.monotonic()  # bounds the wait for a first look
        if saved is not None and saved.plan is not None:
            plan = PipelinePlan.from_learned(saved.plan, added)
        else:
            plan = PipelinePlan(waiting_since=added)
        self._followed[pipeline_id] = Followed(tracker, plan, Lifecycle(self._lifecycle), source)

    @property
    def followed(self) -> tuple[str, ...]:
        """The pipelines followed right now."""
        return tuple(self._followed)

    @property
    def in_flight(self) -> int:
        """Requests sent and not yet answered."""
        return self._parking.in_flight

    def snapshot(self) -> dict[str, Saved]:
        """Every followed pipeline's pods as of the last written events, and what its plan
        learnt."""
        return {
            pid: Saved(f.tracker.snapshot(), f.plan.learned()) for pid, f in self._followed.items()
        }

    async def checkpoint(self) -> None:
        """Save a snapshot taken between two commits (no-op without a checkpointer)."""
        if self._checkpointer is None:
            return
        async with self._commit:
            state = self.snapshot()
        if await self._checkpointer(state):
            self._checkpointed_at = self._clock.monotonic()

    # --- what the ops server asks --------------------------------------------------------------

    def _checkpoint_age(self) -> float:
        if self._checkpointed_at is None:
            return float("nan")
        return self._clock.monotonic() - self._checkpointed_at

    def refresh_metrics(self) -> None:
        """Set the gauges that describe the present (followed pipelines, states, budget)."""
        followed = self._followed.values()
        self.metrics.pipelines.set(len(self._followed))
        self.metrics.pods.set(sum(len(f.tracker.pods) for f in followed))
        self.metrics.states(f.life.phase for f in followed)
        self.metrics.key_rejected.set(1 if self._rejected_sources() else 0)
        self.metrics.budget_rate.set(sum(s.budget.current_rate_per_s for s in self._sources))
        self.metrics.budget_shortfall.set(self._shortfall)
        if len(self._sources) > 1:
            counts = dict.fromkeys(self._sources, 0)
            for each in followed:
                counts[each.source] += 1
            for source, count in counts.items():
                self.metrics.source(
                    source.name, count, source.budget.current_rate_per_s, source.key_rejected
                )

    def _rejected_sources(self) -> list[str]:
        return [source.name for source in self._sources if source.key_rejected]

    def health(self) -> tuple[bool, str]:
        """Alive while the run goes on (a failed sink ends the run)."""
        return (True, "ok") if self._running else (False, "not running")

    def readiness(self) -> tuple[bool, str]:
        """Ready once a poll succeeded and while the key is accepted."""
        rejected = self._rejected_sources()
        if rejected:
            if self._sources[0].name == DEFAULT_SOURCE and len(self._sources) == 1:
                return False, "the API rejects the ServiceKey (401)"
            return False, f"the API rejects the ServiceKey of source {', '.join(rejected)} (401)"
        if self.stats.polls_ok + self.stats.status_polls == 0:
            return False, "no successful poll yet"
        return True, "ok"

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
        self._schedule = settings.schedule_settings()
        self._lifecycle = settings.lifecycle_settings()
        self._poller.reschedule(self._schedule)
        self._matcher = matcher
        for followed in self._followed.values():
            followed.tracker.matcher = matcher
            followed.tracker.lines = settings.lines
            followed.life.settings = self._lifecycle
            self._replan(followed)
        given = {new.name: new for new in sources}
        for source in self._sources:
            source.reconfigure(given.get(source.name, source.settings))
            self._select(source)
        removed = [
            p for p, f in self._followed.items()
            if not f.source.settings.discovery.enabled and p not in f.source.explicit
        ]
        for pipeline_id in removed:
            await self.drop(pipeline_id, "not_configured")
        added: list[str] = []
        for source in self._sources:
            for pipeline_id in source.explicit:
                if pipeline_id not in self._followed:
                    added.append(pipeline_id)
                    await self.add(pipeline_id, None, source)
        self._discoverer.restart(self._sources, self._outer)
        self._parking.wake()
        return added, removed

    @property
    def _discovering(self) -> bool:
        return any(source.settings.discovery.enabled for source in self._sources)

    # --- running -------------------------------------------------------------------------------

    async def run(self, stop: anyio.Event) -> PollStats:
        """Follow until `stop` is set, or until no pipeline is left (without discovery)."""
        self._log.info(
            "follower_started",
            pipelines=len(self._followed),
            sources=len(self._sources),
            discovery=self._discovering,
            shard=f"{self._settings.shard_index}/{self._settings.shard_count}",
            mode="fixed" if self._settings.interval_s is not None else "adaptive",
        )
        self._running = True
        clean = False
        try:
            async with anyio.create_task_group() as outer:
                self._outer = outer
                outer.start_soon(self._shutdown_on, stop)
                if self._checkpointer is not None:
                    outer.start_soon(self._checkpoint_every, self._settings.checkpoint_interval_s)
                self._discoverer.restart(self._sources, self._outer)
                async with anyio.create_task_group() as requests:
                    self._requests = requests
                    await self._dispatch(requests)
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
                    await self.checkpoint()
            self._running = False
        self._log.info(
            "follower_stopped",
            polls_ok=self.stats.polls_ok,
            polls_failed=self.stats.polls_failed,
            status_polls=self.stats.status_polls,
            events=self.stats.events,
        )
        return self.stats

    async def _shutdown_on(self, stop: anyio.Event) -> None:
        await stop.wait()
        self._stopping = True
        self._parking.wake()
        self._log.info("shutdown_started", grace_s=self._settings.shutdown_timeout_s)
        await self._parking.sleep(self._settings.shutdown_timeout_s)
        self._log.warning("shutdown_grace_expired", action="cancelling in-flight requests")
        self._requests.cancel_scope.cancel()

    async def _dispatch(self, requests: anyio.abc.TaskGroup) -> None:
        """Start requests as tokens and due pipelines allow, until stopping or nothing is left."""
        while not self._stopping:
            if not self._followed and not self._discovering:
                return
            now = self._clock.monotonic()
            self._report_budget(now)
            if self._partial_due <= now:
                await self.flush_partials()
            chosen, wait_until = self._choose(now)
            if chosen is None:
                await self._parking.park(self._wake_at(wait_until))
                continue
            chosen.source.budget.take(now)
            self.metrics.sent()
            chosen.in_flight = True
            chosen.source.in_flight += 1
            self._parking.in_flight += 1
            requests.start_soon(self._request, chosen, now)

    def _choose(self, now: float) -> tuple[Followed | None, float | None]:
        """The pipeline to poll now, or None and when to look again (None: when woken).

        A pipeline may go when it is due and its source may send (a token, and its key not
        refused). Each source is asked once, and one scan finds the due pipelines most at risk
        and the next time one could go. The scan ranks up to `RANKED` pipelines; the next
        tokens take the next of them while the ranking is at most `RANKING_TTL_S` old, so a
        follower that polls as fast as it can does not re-scan every pipeline per request.
        """
        if self._parking.in_flight >= self._settings.max_in_flight:
            return None, None
        ready = {source: source.ready_at(now) for source in self._sources}
        if all(at is None or at > now for at in ready.values()):
            return None, min((at for at in ready.values() if at is not None), default=None)
        if now - self._ranked_at <= RANKING_TTL_S:
            while self._ranked:
                followed = self._ranked.pop()
                source_at = ready[followed.source]
                if (
                    not followed.in_flight
                    and self._followed.get(followed.pipeline_id) is followed
                    and followed.due_at <= now
                    and source_at is not None
                    and source_at <= now
                ):
                    return followed, None
        later: list[float] = []

        def due() -> Iterator[tuple[str, PipelinePlan]]:
            for pipeline_id, followed in self._followed.items():
                source_at = ready[followed.source]
                if followed.in_flight or source_at is None:
                    continue
                at = followed.due_at if followed.due_at > source_at else source_at
                if at <= now:
                    yield pipeline_id, followed.plan
                else:
                    later.append(at)

        # Rank ahead only when scans come back to back (tokens faster than RANKING_TTL_S): with
        # a token every 50 ms, ranking 16 would cost more than picking the best.
        count = RANKED if now - self._ranked_at <= RANKING_TTL_S else 1
        chosen = most_urgent(due(), now, count, ceiling_s=self._schedule.ceiling_s)
        if not chosen:
            return None, min(later, default=None)
        self._ranked = [self._followed[pipeline_id] for pipeline_id in reversed(chosen[1:])]
        self._ranked_at = now
        return self._followed[chosen[0]], None

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

    async def _request(self, followed: Followed, sent_at: float) -> None:
        try:
            outcome = await self._poller.poll(followed, sent_at)
            if outcome.gone:
                await self.drop(followed.pipeline_id, "not_found")
            if outcome.key_accepted and followed.source.accept_key():  # (a 401: the poller)
                self._log.info("service_key_accepted", **self._source_field(followed.source))
        finally:
            followed.in_flight = False
            followed.source.in_flight -= 1
            self._replan(followed)
            self._noted(followed)
            self._parking.end()

    def _reject_key(self, source: Source) -> None:
        """401: every request of this key would fail; send one probe at a growing interval."""
        delay = self._settings.backoff.delay(
            source.probe_attempts + 1, self._rng, floor_s=self._schedule.floor_s
        )
        if source.reject_key(self._clock.monotonic() + delay):
            self._log.error(
                "service_key_rejected",
                **self._source_field(source),
                hint="the API answered 401: check GOLDRUSH_SERVICE_KEY(_FILE) (or the source's "
                "key) holds a valid, unrevoked ServiceKey; polling is paused and resumes when "
                "the key works (a key file is re-read when it changes)",
                next_probe_in_s=round(delay, 3),
            )

    def _source_field(self, source: Source) -> dict[str, str]:
        """`source=NAME` for diagnostics, when there is more than one source to tell apart."""
        return {"source": source.name} if len(self._sources) > 1 else {}

    # --- the followed set, as discovery changes it (discovering.Roster) -----------------------

    def owned_by(self, source: Source) -> list[str]:
        """The pipelines followed through `source`."""
        return [p for p, f in self._followed.items() if f.source is source]

    def is_followed(self, pipeline_id: str) -> bool:
        return pipeline_id in self._followed

    async def add(self, pipeline_id: str, name: str | None, source: Source) -> None:
        """Follow a pipeline through `source`, announced by `pipeline_added`."""
        async with self._commit:
            self._follow(pipeline_id, source)
            await self._poller.write([PipelineAddedEvent(self._clock.wall(), pipeline_id, name)])

    async def drop(self, pipeline_id: str, reason: str) -> None:
        """Stop following a pipeline and free its state, announced by `pipeline_removed`."""
        async with self._commit:
            if self._followed.pop(pipeline_id, None) is None:
                return
            event = PipelineRemovedEvent(self._clock.wall(), pipeline_id, reason)
            await self._poller.write([event])
        if reason == "not_found":
            self._log.error(
                "pipeline_not_found",
                pipeline_id=pipeline_id,
                hint="the API answered 404: check the pipeline id and the base URL; "
                "this pipeline is no longer polled",
            )

    def _report_budget(self, now: float) -> None:
        """Once a second: re-plan each source's spare-budget scale, and log `budget_exhausted`
        (with the shortfall, at most every `budget_report_s`) when a budget cannot cover its
        plan."""
        if now - self._planned_at < REPLAN_S:
            return
        self._planned_at = now
        self._replan_soon = False
        measured: dict[Source, list[PipelinePlan]] = {source: [] for source in self._sources}
        for followed in self._followed.values():
            plan = followed.plan
            if plan.samples > 0 or plan.looks_busy:  # a busy first look's probe is demand too
                measured[followed.source].append(plan)
        report = now - self._reported_at >= self._settings.budget_report_s
        total = 0.0
        rescaled: set[Source] = set()
        for source, plans in measured.items():
            rate = source.budget.current_rate_per_s
            scale = spare_scale(plans, self._schedule, rate)
            if scale != source.scale:
                source.scale = scale
                rescaled.add(source)
            missing = shortfall(plans, self._schedule, rate)
            total += missing
            if missing > 0 and report:
                self._reported_at = now
                self._log.warning(
                    "budget_exhausted",
                    **self._source_field(source),
                    shortfall_rps=round(missing, 3),
                    budget_rps=round(rate, 3),
                    at_risk=sum(plan.risk(now) > 1 for plan in plans),
                    hint="raise budget.requests_per_s if the API plan allows, or shard",
                )
        self._shortfall = total
        for followed in self._followed.values():
            if followed.source in rescaled:
                self._replan(followed)

    def _replan(self, followed: Followed) -> None:
        followed.due_at = followed.plan.due(self._schedule, followed.source.scale)

    # --- periodic work -------------------------------------------------------------------------

    async def _checkpoint_every(self, interval_s: float) -> None:
        while True:
            await self._parking.sleep(interval_s)
            await self.checkpoint()

    def _wake_at(self, wait_until: float | None) -> float | None:
        """When the parked dispatcher must look again even if nothing changes: the next poll it
        could start, a partial snapshot falling due, and (while a busy first look waits for its
        probe) the next re-plan, whose spare budget may bring that probe forward."""
        candidates = [at for at in (wait_until, self._partial_due) if at is not None]
        if self._replan_soon:
            candidates.append(self._planned_at + REPLAN_S)
        at = min(candidates, default=math.inf)
        return None if at == math.inf else at

    async def flush_partials(self, *, everything: bool = False) -> None:
        """Write the partial snapshots of open lines that are due (every one, at shutdown).

        Between polls: a quiet pod's open line must reach consumers within `partial_flush_s`
        of being seen, however long its pipeline's poll interval.
        """
        wall = self._clock.wall()
        due = math.inf
        async with self._commit:
            for followed in list(self._followed.values()):
                tracker = followed.tracker
                if everything or tracker.partial_due <= wall:
                    before = tracker.memento()
                    events = tracker.flush_partials(wall, everything=everything)
                    try:
                        await self._poller.write(events)
                    except BaseException:
                        tracker.restore(before)  # not written: a checkpoint must not say it was
                        raise
                due = min(due, tracker.partial_due)
        self._partial_due = self._monotonic_of(due)

    def _monotonic_of(self, wall: float) -> float:
        return wall - (self._clock.wall() - self._clock.monotonic())

    def _noted(self, followed: Followed) -> None:
        """After a request: what its tracker and plan now ask of the dispatcher."""
        due = self._monotonic_of(followed.tracker.partial_due)
        self._partial_due = min(self._partial_due, due)
        plan = followed.plan
        if plan.samples == 0 and plan.looks_busy:
            self._replan_soon = True
