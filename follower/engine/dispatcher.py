"""The dispatcher: spends each source's request budget on the due pipelines most at risk.

It takes a token whenever one is free and some pipeline is due, gives it to the due pipeline most
at risk of losing lines (a `Ranking`, follower/core/ranking.py, answers what `most_at_risk` in
follower/core/schedule.py would, in O(log n)), and hands that request to one of `max_in_flight`
long-lived workers, which run it through `Poller`. A worker that finishes a request chooses its
next one itself, by the same rule, while nothing else is due of the dispatcher: a saturated
follower then wakes no task per request but the worker. With several sources, a pipeline may go
when it is due and its own source has a token. Once a second it
re-plans each source's spare-budget scale and reports a budget that cannot cover its plan; it
also writes the partial snapshots of open lines as they fall due. How it waits is
follower/engine/parking.py.

Size: over 300 lines: choosing (by the dispatcher or a worker), handing to workers, budget
re-planning and partial snapshots share one rule for what may start and when to look again.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Final

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from follower.clock import Clock
from follower.core.ranking import Ranking
from follower.core.schedule import PipelinePlan, ScheduleSettings, shortfall, spare_scale
from follower.engine.keys import KeyWatch
from follower.engine.parking import Parking
from follower.engine.poller import Followed, Poller
from follower.engine.roster import Roster
from follower.engine.settings import RunSettings
from follower.engine.sources import Source
from follower.ops.metrics import Metrics

REPLAN_S: Final = 1.0
"""How often each source's spare-budget scale and shortfall are computed from the plans."""

__all__ = ["Dispatcher"]

Job = tuple[Followed, float]
"""A chosen pipeline and when its token was taken (monotonic)."""


class Dispatcher:
    """Chooses the next request, hands it to a worker, and waits when it can start none."""

    def __init__(
        self,
        *,
        roster: Roster,
        sources: Sequence[Source],
        parking: Parking,
        poller: Poller,
        keys: KeyWatch,
        clock: Clock,
        settings: RunSettings,
        metrics: Metrics,
        log: Any,
    ) -> None:
        self._roster = roster
        self._sources = tuple(sources)
        self._parking = parking
        self._poller = poller
        self._keys = keys
        self._clock = clock
        self._settings = settings
        self._schedule = settings.schedule_settings()
        self._metrics = metrics
        self._log = log
        self._stopping = False
        self.shortfall = 0.0
        """Requests/s the budgets lack to cover every plan, summed over the sources."""
        self._partial_due = math.inf
        """The earliest partial snapshot due, on the monotonic clock."""
        self._replan_soon = False
        """A busy first look waits for its probe: re-plan at the next `REPLAN_S`."""
        self._ranking: Ranking[Source] = Ranking(self._schedule.ceiling_s)
        """The pipelines not in flight; every change of a due time or of the roster goes in."""
        self._planned_at = -math.inf
        self._reported_at = -math.inf
        self._workers: anyio.abc.TaskGroup | None = None
        self._jobs: MemoryObjectReceiveStream[Job] | None = None
        self._worker_count = 0
        roster.watch(self)
        for followed in roster:
            self.replan(followed)

    @property
    def schedule(self) -> ScheduleSettings:
        """The schedule settings in force."""
        return self._schedule

    def reconfigure(self, settings: RunSettings) -> None:
        """Apply reloaded settings: every pipeline's due time is re-planned; more workers are
        started if `max_in_flight` grew."""
        self._settings = settings
        self._schedule = settings.schedule_settings()
        self._ranking.reconfigure(self._schedule.ceiling_s)
        for followed in self._roster:
            self.replan(followed)
        self._hire()
        self._parking.wake()

    def stop(self) -> None:
        """Start no new request (those in flight go on)."""
        self._stopping = True
        self._parking.wake()

    def cancel(self) -> None:
        """Cancel the requests in flight."""
        if self._workers is not None:
            self._workers.cancel_scope.cancel()

    # --- running -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Start requests until stopped or nothing is left to follow, then let the workers
        finish the requests they have."""
        send, receive = anyio.create_memory_object_stream[Job](math.inf)
        async with anyio.create_task_group() as workers:
            self._workers, self._jobs = workers, receive
            while self._worker_count < self._settings.max_in_flight:
                # Started (and waiting for a job) before the first job is sent.
                self._worker_count += 1
                await workers.start(self._work, receive.clone())
            with send:
                await self._dispatch(send)
            receive.close()
            self._jobs = None

    def _hire(self) -> None:
        """Start more workers if `max_in_flight` grew (each takes one job at a time)."""
        if self._workers is None or self._jobs is None:
            return
        while self._worker_count < self._settings.max_in_flight:
            self._worker_count += 1
            self._workers.start_soon(self._work, self._jobs.clone())

    async def _work(
        self,
        jobs: MemoryObjectReceiveStream[Job],
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run jobs one after the other until the dispatcher closes the stream."""
        task_status.started()
        job: Job | None = None
        with jobs:
            while True:
                if job is None:
                    try:  # a job already waiting is taken without a trip through the event loop
                        job = jobs.receive_nowait()
                    except anyio.WouldBlock:
                        try:
                            job = await jobs.receive()
                        except anyio.EndOfStream:
                            return
                    except anyio.EndOfStream:
                        return
                try:
                    await self._request(*job)
                except BaseException:
                    self._parking.wake()  # it must not wait for this worker's next job
                    raise
                job = self._next_job()

    def _next_job(self) -> Job | None:
        """After a request: the worker's next job, chosen here as the dispatcher would choose it
        (sparing the dispatcher's wake-up and the hand-over), or None, the dispatcher woken, when
        the dispatcher has more to do than choose (stopping, re-planning, partial snapshots) or
        nothing may go now."""
        now = self._clock.monotonic()
        if (
            self._stopping or self._replan_due(now) or self._partial_due <= now
            or not len(self._roster)
        ):
            chosen = None
        else:
            chosen, _ = self._choose(now)
        if chosen is None:
            self._parking.wake()
            return None
        self._start(chosen, now)
        return chosen, now

    async def _dispatch(self, send: MemoryObjectSendStream[Job]) -> None:
        while not self._stopping:
            if not len(self._roster) and not self._discovering:
                return
            now = self._clock.monotonic()
            self._report_budget(now)
            if self._partial_due <= now:
                await self.flush_partials()
            chosen, wait_until = self._choose(now)
            if chosen is None:
                await self._parking.park(self._wake_at(wait_until))
                continue
            self._start(chosen, now)
            send.send_nowait((chosen, now))

    def _start(self, chosen: Followed, now: float) -> None:
        """Spend a token on `chosen`, which is in flight from `now`."""
        chosen.source.budget.take(now)
        self._metrics.sent()
        chosen.in_flight = True
        self._ranking.remove(chosen.pipeline_id)
        chosen.source.in_flight += 1
        self._parking.in_flight += 1

    @property
    def _discovering(self) -> bool:
        return any(source.settings.discovery.enabled for source in self._sources)

    def _choose(self, now: float) -> tuple[Followed | None, float | None]:
        """The pipeline to poll now, or None and when to look again (None: when woken).

        A pipeline may go when it is due and its source may send (a token, and its key not
        refused). Each source is asked once; the ranking answers which due pipeline is most at
        risk, or the next time one could go.
        """
        if self._parking.in_flight >= self._settings.max_in_flight:
            return None, None
        ready = {source: source.ready_at(now) for source in self._sources}
        if all(at is None or at > now for at in ready.values()):
            return None, min((at for at in ready.values() if at is not None), default=None)
        pipeline_id, wait_until = self._ranking.pick(now, ready)
        if pipeline_id is None:
            return None, wait_until
        return self._roster.get(pipeline_id), None

    async def _request(self, followed: Followed, sent_at: float) -> None:
        try:
            outcome = await self._poller.poll(followed, sent_at)
            if outcome.gone:
                await self._roster.drop(followed.pipeline_id, "not_found")
            if outcome.key_accepted:  # (a 401: the poller)
                self._keys.accepted(followed.source)
        finally:
            followed.in_flight = False
            followed.source.in_flight -= 1
            self.replan(followed)
            self._noted(followed)
            self._parking.in_flight -= 1  # the worker takes its next job or wakes the dispatcher

    # --- the budget ----------------------------------------------------------------------------

    def _replan_due(self, now: float) -> bool:
        """Whether a second has passed since the last re-plan (`_report_budget`)."""
        return now - self._planned_at >= REPLAN_S

    def _report_budget(self, now: float) -> None:
        """Once a second: re-plan each source's spare-budget scale, and log `budget_exhausted`
        (with the shortfall, at most every `budget_report_s`) when a budget cannot cover its
        plan."""
        if not self._replan_due(now):
            return
        self._planned_at = now
        self._replan_soon = False
        measured: dict[Source, list[PipelinePlan]] = {source: [] for source in self._sources}
        for followed in self._roster:
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
                    **self._keys.labels(source),
                    shortfall_rps=round(missing, 3),
                    budget_rps=round(rate, 3),
                    at_risk=sum(plan.risk(now) > 1 for plan in plans),
                    hint="raise budget.requests_per_s if the API plan allows, or shard",
                )
        self.shortfall = total
        for followed in self._roster:
            if followed.source in rescaled:
                self.replan(followed)

    def replan(self, followed: Followed) -> None:
        """Recompute when the pipeline is due, after its plan or its source's scale changed, and
        tell the ranking (unless the pipeline is in flight or no longer followed)."""
        followed.due_at = followed.plan.due(self._schedule, followed.source.scale)
        if not followed.in_flight and self._roster.get(followed.pipeline_id) is followed:
            self._ranking.put(followed.pipeline_id, followed.plan, followed.source, followed.due_at)

    def followed(self, followed: Followed) -> None:
        """The roster follows a new pipeline: rank it."""
        self.replan(followed)

    def dropped(self, followed: Followed) -> None:
        """The roster dropped a pipeline: it is ranked no more."""
        if not followed.in_flight:
            self._ranking.remove(followed.pipeline_id)

    # --- waking --------------------------------------------------------------------------------

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
        due = await self._roster.flush_partials(everything=everything)
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
