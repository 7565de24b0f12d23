"""The poll loop: one dispatcher spends the request budget on the pipelines most at risk.

Each followed pipeline has a plan (when it is due, from its line rate and tail window), a lifecycle
(which request next: logs or status, and its backoff) and a tracker (its pods' diff state). The
dispatcher takes a token from the shared budget whenever one is free and some pipeline is due,
gives it to the due pipeline most at risk of losing lines, and starts that request in the task
group; `Poller` executes it. A discovery loop (optional) adds and removes pipelines, a checkpoint
loop saves the state, and a 401 pauses everything but one probe request until the key works.

Shutdown has two phases: `stop` starts no new request; in-flight requests get
`shutdown_timeout_s` to finish and write their events; then whatever is left is cancelled and
a last checkpoint is written.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from typing import Any

import anyio
import anyio.abc
import structlog

from follower import discovery, sharding
from follower.budget import RequestBudget
from follower.client import TailSource
from follower.clock import Clock
from follower.errors import ApiError
from follower.lifecycle import Lifecycle
from follower.metrics import Metrics
from follower.model import PipelineAddedEvent, PipelinePage, PipelineRemovedEvent
from follower.poller import Followed, Poller, PollStats
from follower.schedule import PipelinePlan, most_at_risk, shortfall, spare_scale
from follower.settings import Checkpointer, DiscoverySettings, RunSettings
from follower.sinks import Sink
from follower.tailerrors import TailErrorMatcher
from follower.tracker import PipelineTracker, PodState

RunStats = PollStats
"""What `Runner.run` returns (the poller's counters)."""

__all__ = ["Checkpointer", "DiscoverySettings", "RunSettings", "RunStats", "Runner"]


class Runner:
    """Follows pipelines until stopped or until none is left to follow."""

    def __init__(
        self,
        *,
        pipelines: tuple[str, ...],
        source: TailSource,
        sink: Sink,
        clock: Clock,
        settings: RunSettings,
        matcher: TailErrorMatcher,
        rng: random.Random | None = None,
        log: Any = None,
        restored: Mapping[str, dict[str, PodState]] | None = None,
        reset_state: bool = False,
        checkpointer: Checkpointer | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._explicit = tuple(
            sharding.select(pipelines, settings.shard_index, settings.shard_count)
        )
        self._source = source
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
        self._budget = RequestBudget(settings.budget_rps, settings.budget_burst)
        # Held while a poll's answer is folded into its tracker and its events are written, and
        # while a checkpoint snapshot is taken: a checkpoint never covers an unwritten event.
        self._commit = anyio.Lock()
        self.stats = PollStats()
        self.metrics = metrics or Metrics()
        self._checkpointed_at: float | None = None
        self.metrics.checkpoint_age_from(self._checkpoint_age)
        self._running = False
        self._poller = Poller(
            source=source, sink=sink, clock=clock, budget=self._budget, schedule=self._schedule,
            rng=self._rng, log=self._log, commit=self._commit, stats=self.stats,
            metrics=self.metrics,
        )
        self._followed: dict[str, Followed] = {}
        for pipeline_id in self._explicit:
            self._follow(pipeline_id)
        self._in_flight = 0
        self._stopping = False
        self._park_scope: anyio.CancelScope | None = None
        self._wake_pending = False
        self._scale = 1.0
        self._shortfall = 0.0
        self._planned_at = -float("inf")
        self._key_rejected = False
        self._probe_at = 0.0
        self._probe_attempts = 0
        self._short_since: float | None = None
        self._reported_at = -float("inf")
        self._outer: anyio.abc.TaskGroup | None = None
        self._discovery_scope: anyio.CancelScope | None = None
        self.parked = False
        """True while the dispatcher waits with nothing it could start (tests wait for this)."""
        self.clock_sleepers = 0
        """Tasks of this runner asleep on the clock (tests tell them from the simulator's)."""
        self._changed = anyio.Event()

    # --- the followed set ----------------------------------------------------------------------

    def _follow(self, pipeline_id: str) -> None:
        pods = self._restored.pop(pipeline_id, None)
        since, lines = self._settings.since, self._settings.lines
        if pods is not None:
            tracker = PipelineTracker.restored(pipeline_id, since, self._matcher, pods, lines)
        else:
            tracker = PipelineTracker(
                pipeline_id, since, self._matcher, reset_state=self._reset_state, lines=lines
            )
        self._followed[pipeline_id] = Followed(tracker, PipelinePlan(), Lifecycle(self._lifecycle))

    @property
    def followed(self) -> tuple[str, ...]:
        """The pipelines followed right now."""
        return tuple(self._followed)

    @property
    def in_flight(self) -> int:
        """Requests sent and not yet answered."""
        return self._in_flight

    def snapshot(self) -> dict[str, dict[str, PodState]]:
        """Every followed pipeline's pods as of the last written events."""
        return {pid: f.tracker.snapshot() for pid, f in self._followed.items()}

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
        self.metrics.key_rejected.set(1 if self._key_rejected else 0)
        self.metrics.budget_rate.set(self._budget.current_rate_per_s)
        self.metrics.budget_shortfall.set(self._shortfall)

    def health(self) -> tuple[bool, str]:
        """Alive while the run goes on (a failed sink ends the run)."""
        return (True, "ok") if self._running else (False, "not running")

    def readiness(self) -> tuple[bool, str]:
        """Ready once a poll succeeded and while the key is accepted."""
        if self._key_rejected:
            return False, "the API rejects the ServiceKey (401)"
        if self.stats.polls_ok + self.stats.status_polls == 0:
            return False, "no successful poll yet"
        return True, "ok"

    async def reconfigure(
        self, settings: RunSettings, pipelines: tuple[str, ...], matcher: TailErrorMatcher
    ) -> tuple[list[str], list[str]]:
        """Apply a reloaded configuration; pipelines that stay keep their diff state.

        Returns the pipelines added and removed. Schedule, budget, backoff, filters, tail-error
        patterns and discovery take effect at once; so do sharding changes.
        """
        self._settings = settings
        self._schedule = settings.schedule_settings()
        self._lifecycle = settings.lifecycle_settings()
        self._poller.reschedule(self._schedule)
        self._budget.reconfigure(settings.budget_rps, settings.budget_burst)
        self._matcher = matcher
        for followed in self._followed.values():
            followed.tracker.matcher = matcher
            followed.tracker.lines = settings.lines
            followed.life.settings = self._lifecycle
        explicit = tuple(sharding.select(pipelines, settings.shard_index, settings.shard_count))
        added = [p for p in explicit if p not in self._followed]
        removed = [] if settings.discovery.enabled else [
            p for p in self._followed if p not in explicit
        ]
        self._explicit = explicit
        for pipeline_id in added:
            await self._add(pipeline_id, None)
        for pipeline_id in removed:
            await self._drop(pipeline_id, "not_configured")
        self._restart_discovery()
        self._notify()
        return added, removed

    # --- running -------------------------------------------------------------------------------

    async def run(self, stop: anyio.Event) -> RunStats:
        """Follow until `stop` is set, or until no pipeline is left (without discovery)."""
        self._log.info(
            "follower_started",
            pipelines=len(self._followed),
            discovery=self._settings.discovery.enabled,
            shard=f"{self._settings.shard_index}/{self._settings.shard_count}",
            mode="fixed" if self._settings.interval_s is not None else "adaptive",
        )
        self._running = True
        try:
            async with anyio.create_task_group() as outer:
                self._outer = outer
                outer.start_soon(self._shutdown_on, stop)
                if self._checkpointer is not None:
                    outer.start_soon(self._checkpoint_every, self._settings.checkpoint_interval_s)
                self._restart_discovery()
                async with anyio.create_task_group() as requests:
                    self._requests = requests
                    await self._dispatch(requests)
                outer.cancel_scope.cancel()
        finally:
            # Also after a failure (the output closed): every tracker holds only what was
            # written (a failed write undoes its poll), so this checkpoint is still exact.
            with anyio.CancelScope(shield=True):
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
        self._notify()
        self._log.info("shutdown_started", grace_s=self._settings.shutdown_timeout_s)
        await self._sleep(self._settings.shutdown_timeout_s)
        self._log.warning("shutdown_grace_expired", action="cancelling in-flight requests")
        self._requests.cancel_scope.cancel()

    async def _dispatch(self, requests: anyio.abc.TaskGroup) -> None:
        """Start requests as tokens and due pipelines allow, until stopping or nothing is left."""
        while not self._stopping:
            if not self._followed and not self._settings.discovery.enabled:
                return
            now = self._clock.monotonic()
            self._report_budget(now)
            chosen, wait_until = self._choose(now)
            if chosen is None:
                await self._park(wait_until)
                continue
            self._budget.take(now)
            self.metrics.sent()
            chosen.in_flight = True
            self._in_flight += 1
            requests.start_soon(self._request, chosen, now)

    def _choose(self, now: float) -> tuple[Followed | None, float | None]:
        """The pipeline to poll now, or None and when to look again (None: when woken).

        The token is checked before the pipelines are scanned, and the scan finds the due
        pipeline most at risk and the next due time in one pass: with thousands of pipelines
        this loop runs once per request, not once per wake-up.
        """
        if self._in_flight >= self._settings.max_in_flight:
            return None, None
        if self._key_rejected and (self._in_flight or now < self._probe_at):
            return None, None if self._in_flight else self._probe_at
        token_at = self._budget.available_at(now)
        if token_at > now:
            return None, token_at
        later: list[float] = []
        schedule, scale = self._schedule, self._scale

        def due() -> Iterator[tuple[str, PipelinePlan]]:
            for pipeline_id, followed in self._followed.items():
                if followed.in_flight:
                    continue
                at = followed.plan.due(schedule, scale)
                if at <= now:
                    yield pipeline_id, followed.plan
                else:
                    later.append(at)

        chosen = most_at_risk(due(), now, ceiling_s=schedule.ceiling_s)
        if chosen is None:
            return None, min(later, default=None)
        return self._followed[chosen], None

    async def _park(self, until: float | None) -> None:
        """Wait until `until` (monotonic) or until woken by a finished request or a change.

        `parked` turns true only once the wait is registered (the clock sleep included), so a
        test that sees it true and every in-flight request asleep knows the runner is idle.
        """
        if self._wake_pending:  # something changed since the dispatcher last looked
            self._wake_pending = False
            return
        with anyio.CancelScope() as scope:
            self._park_scope = scope
            self.parked = True
            try:
                if until is None:
                    self._signal()
                    await anyio.sleep_forever()
                else:
                    await self._sleep(until - self._clock.monotonic())
            finally:
                self._park_scope = None
                self.parked = False

    def _notify(self) -> None:
        """Wake the dispatcher: something it waits for may have changed."""
        self.parked = False
        if self._park_scope is not None:
            self._park_scope.cancel()
        else:
            self._wake_pending = True
        self._signal()

    def _signal(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    @property
    def change(self) -> anyio.Event:
        """Set at the next change of `parked`, `in_flight` or `clock_sleepers` (for tests)."""
        return self._changed

    async def _sleep(self, seconds: float) -> None:
        self.clock_sleepers += 1
        self._signal()
        try:
            await self._clock.sleep(seconds)
        finally:
            self.clock_sleepers -= 1
            self._signal()

    async def _request(self, followed: Followed, sent_at: float) -> None:
        try:
            outcome = await self._poller.poll(followed, sent_at)
            if outcome.gone:
                await self._drop(followed.pipeline_id, "not_found")
            if outcome.key_rejected:
                self._reject_key()
            elif outcome.key_accepted and self._key_rejected:
                self._key_rejected = False
                self._probe_attempts = 0
                self._log.info("service_key_accepted")
        finally:
            followed.in_flight = False
            self._in_flight -= 1
            self._notify()

    def _reject_key(self) -> None:
        """401: every request would fail; send one probe at a slowly growing interval."""
        self._probe_attempts += 1
        delay = self._settings.backoff.delay(
            self._probe_attempts, self._rng, floor_s=self._schedule.floor_s
        )
        self._probe_at = self._clock.monotonic() + delay
        if not self._key_rejected:
            self._key_rejected = True
            self._log.error(
                "service_key_rejected",
                hint="the API answered 401: check GOLDRUSH_SERVICE_KEY(_FILE) holds a valid, "
                "unrevoked ServiceKey; polling is paused and resumes when the key works "
                "(a key file is re-read when it changes)",
                next_probe_in_s=round(delay, 3),
            )

    async def _add(self, pipeline_id: str, name: str | None) -> None:
        async with self._commit:
            self._follow(pipeline_id)
            await self._poller.write([PipelineAddedEvent(self._clock.wall(), pipeline_id, name)])

    async def _drop(self, pipeline_id: str, reason: str) -> None:
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
        """Once a second: re-plan the spare-budget scale, and log `budget_exhausted` (with the
        shortfall, at most every `budget_report_s`) when the budget cannot cover the plan."""
        if now - self._planned_at < 1.0:
            return
        self._planned_at = now
        rate = self._budget.current_rate_per_s
        measured = [f.plan for f in self._followed.values() if f.plan.samples > 0]
        self._scale = spare_scale(measured, self._schedule, rate)
        self._shortfall = missing = shortfall(measured, self._schedule, rate)
        if missing > 0 and now - self._reported_at >= self._settings.budget_report_s:
            self._reported_at = now
            self._log.warning(
                "budget_exhausted",
                shortfall_rps=round(missing, 3),
                budget_rps=round(rate, 3),
                at_risk=sum(plan.risk(now) > 1 for plan in measured),
                hint="raise budget.requests_per_s if the API plan allows, or shard",
            )

    # --- periodic work -------------------------------------------------------------------------

    async def _checkpoint_every(self, interval_s: float) -> None:
        while True:
            await self._sleep(interval_s)
            await self.checkpoint()

    def _restart_discovery(self) -> None:
        """(Re)start the discovery loop with the current settings, or stop it when disabled."""
        if self._discovery_scope is not None:
            self._discovery_scope.cancel()
            self._discovery_scope = None
        if self._settings.discovery.enabled and self._outer is not None:
            scope = anyio.CancelScope()
            self._discovery_scope = scope
            self._outer.start_soon(self._discover_every, self._settings.discovery, scope)

    async def _discover_every(self, settings: DiscoverySettings, scope: anyio.CancelScope) -> None:
        with scope:
            while True:
                await self.discover(settings)
                await self._sleep(settings.interval_s)

    async def discover(self, settings: DiscoverySettings) -> None:
        """List the pipelines the key sees; follow the new ones, drop those no longer listed.

        Counts as one request in flight while it works (not while it waits for a token), like a
        poll, so the dispatcher's bound and a test's idea of "idle" both include it.
        """
        self._in_flight += 1
        self._signal()
        try:
            await self._discover(settings)
        finally:
            self._in_flight -= 1
            self._notify()

    async def _discover(self, settings: DiscoverySettings) -> None:
        try:
            items = await discovery.list_all(self._list_page, settings.page_size)
            truncated = False
        except discovery.ListingTruncated as partial:
            items, truncated = partial.items, True
        except ApiError as error:
            self._log.warning("discovery_failed", error=error.kind, message=str(error))
            return
        listed = discovery.followed_ids(self._explicit, items, settings.selection)
        mine = sharding.select(listed, self._settings.shard_index, self._settings.shard_count)
        added, removed = discovery.changes(self._followed, mine)
        names = {item.id: item.name for item in items}
        for pipeline_id in added:
            await self._add(pipeline_id, names.get(pipeline_id))
        for pipeline_id in [] if truncated else removed:
            await self._drop(pipeline_id, "not_listed")
        if added or removed:
            self._log.info("pipelines_changed", added=len(added), removed=len(removed),
                           followed=len(self._followed))
            self._notify()

    async def _list_page(self, page_number: int, page_size: int) -> PipelinePage:
        """A list request that waits for its token like every other request."""
        while (at := self._budget.available_at(self._clock.monotonic())) > self._clock.monotonic():
            self._in_flight -= 1  # waiting for a token is not work in flight
            try:
                await self._sleep(at - self._clock.monotonic())
            finally:
                self._in_flight += 1
                self._signal()
        self._budget.take(self._clock.monotonic())
        self.metrics.sent()
        sent_at = self._clock.monotonic()
        try:
            page = await self._source.list_page(page_number, page_size)
        except ApiError as error:
            self.metrics.polled("list", error.kind, self._clock.monotonic() - sent_at)
            raise
        self.metrics.polled("list", "ok", self._clock.monotonic() - sent_at)
        return page
