"""One request for one pipeline: send it, fold the answer into the pure core, write the events.

The dispatcher (dispatcher.py) decides *which* pipeline gets the next token; this module executes
the request it chose and applies what the pure core decides about the answer: the tracker turns
tails into events, the lifecycle picks the next request and its delay, the plan learns the line rate
and window, the budget learns about 429s. Nothing here decides timing by itself.

Size: over 300 lines because it is one request's whole path: the logs and status requests,
their failures and what each means, the undo of a poll whose events could not be written, and
the per-pipeline record (`Followed`) and counters they update.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

from follower.clock import Clock
from follower.core.batch import count_kinds
from follower.core.events import ApiErrorEvent, Event, PipelineStatusEvent, TailErrorEvent
from follower.core.lifecycle import (
    Decision,
    Lifecycle,
    LogsFailed,
    LogsOk,
    Phase,
    Request,
    StatusFailed,
    StatusOk,
)
from follower.core.model import LogsSnapshot, PipelineStatus, PodProblem
from follower.core.pace import PaceMonitor
from follower.core.schedule import PipelinePlan, ScheduleSettings
from follower.core.tracker import Applied, PipelineTracker
from follower.engine.journal import Journal
from follower.engine.sources import Source
from follower.errors import ApiError, AuthError, NetworkError, ThrottledError
from follower.ops.metrics import Metrics
from follower.sinks import Sink


@dataclass(slots=True)
class Followed:
    """Everything the follower keeps about one followed pipeline."""

    tracker: PipelineTracker
    plan: PipelinePlan
    life: Lifecycle
    source: Source
    """The key and API this pipeline is polled through (and whose budget it spends)."""
    next_request: Request = "logs"
    in_flight: bool = False
    last_sent: float | None = None
    """When the previous request of this pipeline went out (monotonic)."""
    start_time: str | None = None
    """The worker's start time as the status endpoint last gave it (a new one: a restart)."""
    problems: frozenset[PodProblem] = frozenset()
    """The unusable parts of the last logs answer, reported when they first appear."""
    due_at: float = -math.inf
    """`plan.due()` as of the last change of the plan or its scale (the dispatcher keeps it, and
    tells its ranking of every change)."""

    @property
    def pipeline_id(self) -> str:
        return self.tracker.pipeline_id


PACE_EVERY = 8
"""Answers between two looks at the planned-versus-achieved interval (and its gauges)."""


@dataclass(slots=True)
class PollStats:
    """Counters for the summary line and the metrics."""

    polls_ok: int = 0
    polls_failed: int = 0
    status_polls: int = 0
    events: dict[str, int] = field(default_factory=dict)
    pipelines_gone: list[str] = field(default_factory=list)

    def count(self, kinds: Mapping[str, int]) -> None:
        for kind, count in kinds.items():
            self.events[kind] = self.events.get(kind, 0) + count


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the dispatcher must know after a request: is the pipeline gone, was the key refused?"""

    gone: bool = False
    key_rejected: bool = False
    key_accepted: bool = False


class Poller:
    """Executes requests for followed pipelines, each through its own source."""

    def __init__(
        self,
        *,
        sink: Sink,
        clock: Clock,
        schedule: ScheduleSettings,
        rng: random.Random,
        log: Any,
        commit: anyio.Lock,
        stats: PollStats,
        metrics: Metrics,
        reject_key: Callable[[Source], None] = lambda _: None,
        in_flight_limit: Callable[[], int] = lambda: 8,
        followed_count: Callable[[], int] = lambda: 1,
        journal: Journal | None = None,
    ) -> None:
        """`reject_key` pauses a source whose key got a 401 (keys.py's; it sets the probe
        time, which the api_error event then reports as `retry_in_s`). `in_flight_limit`: the
        dispatcher's bound and `followed_count` the pipelines followed, for the diagnostic that says
        the planned interval is not kept. `journal` records new numberings before their events
        are written (with a state file)."""
        self._journal = journal
        self._reject_key = reject_key
        self._in_flight_limit = in_flight_limit
        self._followed_count = followed_count
        self.pace = PaceMonitor()
        self._answers = 0
        self._sink = sink
        self._clock = clock
        self._schedule = schedule
        self._rng = rng
        self._log = log
        self._commit = commit
        self.stats = stats
        self._metrics = metrics

    def reschedule(self, schedule: ScheduleSettings) -> None:
        """Use new planning settings from now on (a configuration reload)."""
        self._schedule = schedule

    async def poll(self, followed: Followed, sent_at: float) -> Outcome:
        """Send `followed.next_request` and apply its outcome."""
        self.pace.sent(sent_at, followed.due_at, followed.last_sent)
        followed.last_sent = sent_at
        try:
            if followed.next_request == "status":
                return await self._poll_status(followed, sent_at)
            return await self._poll_logs(followed, sent_at)
        finally:
            self.pace.answered(self._clock.monotonic() - sent_at)
            self._check_pace()

    def _check_pace(self) -> None:
        """Every few answers: the interval gauges, and once when the planned interval stops
        being kept (and when it is kept again), a diagnostic."""
        self._answers += 1
        if self._answers % PACE_EVERY:
            return
        intervals = self.pace.intervals()
        if intervals is not None:
            self._metrics.pace(*intervals)
        report = self.pace.check(self._in_flight_limit(), self._followed_count())
        if report is None:
            return
        figures = {
            "planned_interval_s": round(report.planned_interval_s, 3),
            "achieved_interval_s": round(report.achieved_interval_s, 3),
            "latency_s": round(report.latency_s, 3),
            "in_flight_limit": report.in_flight_limit,
            "max_rate_rps": round(report.max_rate_rps, 3),
            "needed_rate_rps": round(report.needed_rate_rps, 3),
        }
        if report.kept:
            self._log.info("interval_kept", **figures)
            return
        hint = (
            "answers are slow for the requests allowed in flight: raise http.max_in_flight "
            f"to about {math.ceil(report.needed_rate_rps * report.latency_s)}, poll less often "
            "or shard" if report.cause == "latency"
            else "see budget_exhausted, backoff and pipeline states"
        )
        self._log.warning("interval_not_kept", cause=report.cause, **figures, hint=hint)

    async def _poll_logs(self, followed: Followed, sent_at: float) -> Outcome:
        try:
            snapshot = await followed.source.api.logs(followed.pipeline_id)
        except ApiError as error:
            now = self._clock.monotonic()
            self._metrics.polled("logs", error.kind, now - sent_at)
            decision = followed.life.on_logs(LogsFailed.of(error), now, self._rng)
            return await self._failed(followed, error, decision, sent_at)
        followed.source.budget.succeeded(self._clock.monotonic())
        self._metrics.polled("logs", "ok", self._clock.monotonic() - sent_at)
        self.stats.polls_ok += 1
        async with self._commit:
            before = followed.tracker.memento()
            applied = followed.tracker.apply(snapshot, self._clock.wall())
            if applied.numbered and not self._journaled(followed, applied):
                followed.tracker.restore(before)  # asked again at its next turn
                return Outcome(key_accepted=True)
            decision = followed.life.on_logs(
                LogsOk(applied.all_failing, no_pods=not snapshot.pods),
                self._clock.monotonic(),
                self._rng,
            )
            if not applied.all_failing:
                followed.plan.observe(sent_at, applied.observations, self._schedule)
            self._apply(followed, decision)
            events = applied.events + self._tail_errors(followed, applied, decision)
            events += self._problems(followed, snapshot)
            try:
                await self.write(events)
            except BaseException:
                # Not written (the reader went away, or shutdown cancelled the write): undo, so
                # a checkpoint never covers these lines and a restart fetches them again.
                followed.tracker.restore(before)
                raise
        self._log_transition(followed, decision)
        return Outcome(key_accepted=True)

    def _journaled(self, followed: Followed, applied: Applied) -> bool:
        """Record the poll's new numberings before its events are written (follower/engine/
        journal.py); False when they cannot be (the events must not be written then)."""
        if self._journal is None:
            return True
        try:
            self._journal.append(followed.pipeline_id, applied.numbered)
        except OSError as exc:
            self._log.error(
                "journal_failed", pipeline_id=followed.pipeline_id,
                error=exc.strerror or str(exc),
                hint="free space in the state file's folder; the poll is tried again",
            )
            return False
        return True

    async def _poll_status(self, followed: Followed, sent_at: float) -> Outcome:
        try:
            status = await followed.source.api.status(followed.pipeline_id)
        except ApiError as error:
            now = self._clock.monotonic()
            self._metrics.polled("status", error.kind, now - sent_at)
            decision = followed.life.on_status(StatusFailed.of(error), now, self._rng)
            return await self._failed(followed, error, decision, sent_at)
        followed.source.budget.succeeded(self._clock.monotonic())
        self._metrics.polled("status", "ok", self._clock.monotonic() - sent_at)
        self.stats.status_polls += 1
        self._restarted(followed, status)
        decision = followed.life.on_status(
            StatusOk(status.status, status.ready, status.replicas),
            self._clock.monotonic(),
            self._rng,
        )
        self._apply(followed, decision)
        if decision.phase_changed is not None:
            await self.write([self._status_event(status, decision.phase_changed)])
        self._log_transition(followed, decision)
        return Outcome(key_accepted=True)

    async def _failed(
        self, followed: Followed, error: ApiError, decision: Decision, sent_at: float
    ) -> Outcome:
        now = self._clock.monotonic()
        if isinstance(error, ThrottledError):
            followed.source.budget.throttled(now, error.retry_after_s, sent_at=sent_at)
        elif not isinstance(error, NetworkError):
            # The server answered: the rate is not the problem.
            followed.source.budget.succeeded(now)
        self.stats.polls_failed += 1
        self._apply(followed, decision)
        if decision.key_rejected:
            self._reject_key(followed.source)
        gone = decision.phase is Phase.GONE
        retry_in = self._retry_in(followed, now)
        event = ApiErrorEvent(
            self._clock.wall(), followed.pipeline_id, error.kind, error.status, error.message,
            None if gone else retry_in,
        )
        await self.write([event])
        if gone:
            self.stats.pipelines_gone.append(followed.pipeline_id)
        elif not isinstance(error, AuthError):
            self._log_failure(followed, error, decision, retry_in)
        return Outcome(gone=gone, key_rejected=decision.key_rejected)

    def _apply(self, followed: Followed, decision: Decision) -> None:
        """Execute a lifecycle decision: the next request, and its time when it gives one."""
        if decision.next_request is not None:
            followed.next_request = decision.next_request
        if decision.delay_s is not None:
            followed.plan.defer_until(self._clock.monotonic() + decision.delay_s)

    def _retry_in(self, followed: Followed, now: float) -> float:
        """Seconds until the pipeline can really be asked again: when it is due, when its
        source's budget has a token (after a Retry-After pause), and while its key is refused,
        when the probe goes."""
        source = followed.source
        at = max(followed.plan.due(self._schedule, source.scale), source.budget.available_at(now))
        if source.key_rejected:
            at = max(at, source.probe_at)
        return max(0.0, at - now)

    def _tail_errors(self, followed: Followed, applied: Applied, decision: Decision) -> list[Event]:
        if not applied.tail_errors:  # nearly every poll: spare working out the retry time
            return []
        retry_in = self._retry_in(followed, self._clock.monotonic())
        wall = self._clock.wall()
        return [
            TailErrorEvent(wall, followed.pipeline_id, failed.pod, failed.error, retry_in)
            for failed in applied.tail_errors
            if failed.changed or applied.all_failing
        ]

    def _restarted(self, followed: Followed, status: PipelineStatus) -> None:
        """A new `start_time` means the worker restarted: the pods' next gap is named so."""
        if status.start_time is None:
            return
        if followed.start_time is not None and status.start_time != followed.start_time:
            followed.tracker.mark_restarted()
            self._log.info("pipeline_restarted", pipeline_id=followed.pipeline_id,
                           start_time=status.start_time, previous=followed.start_time)
        followed.start_time = status.start_time

    def _problems(self, followed: Followed, snapshot: LogsSnapshot) -> list[Event]:
        """An `api_error` naming the pod for each unusable part of the answer that is new (a
        duplicate pod name, logs not UTF-8): reported once, not at every poll; the rest of the
        answer was read."""
        if not snapshot.problems and not followed.problems:
            return []
        now, wall = self._clock.monotonic(), self._clock.wall()
        current = frozenset(snapshot.problems)
        new = [p for p in dict.fromkeys(snapshot.problems) if p not in followed.problems]
        followed.problems = current
        if not new:
            return []
        retry_in = self._retry_in(followed, now)
        events: list[Event] = []
        nameless = False
        for problem in new:
            self._log.warning("answer_part_unusable", pipeline_id=followed.pipeline_id,
                              pod=problem.pod, problem=problem.problem)
            if problem.pod is None:
                if nameless:  # one event per poll for nameless entries: their ids would clash
                    continue
                nameless = True
            events.append(ApiErrorEvent(
                wall, followed.pipeline_id, "malformed_response", 200, problem.problem,
                retry_in, pod=problem.pod,
            ))
        return events

    def _status_event(self, status: PipelineStatus, phase: str) -> PipelineStatusEvent:
        return PipelineStatusEvent(
            self._clock.wall(), status.pipeline_id, phase, status.ready, status.replicas
        )

    async def write(self, events: Sequence[Event]) -> None:
        """Write events to the sink and count them (stats and metrics): every event goes here."""
        if events:
            await self._sink.write(events)
            kinds = count_kinds(events)  # one count for both
            self.stats.count(kinds)
            self._metrics.wrote(kinds)

    def _log_failure(
        self, followed: Followed, error: ApiError, decision: Decision, retry_in: float
    ) -> None:
        if decision.attempt == 1 or decision.entered:
            self._log.warning(
                "poll_failing",
                pipeline_id=followed.pipeline_id,
                error=error.kind,
                message=str(error),
                phase=decision.phase.value,
                attempt=decision.attempt,
                retry_in_s=round(retry_in, 3),
            )

    def _log_transition(self, followed: Followed, decision: Decision) -> None:
        if not decision.entered:
            return
        if decision.phase is Phase.HEALTHY:
            since = followed.life.failing_since
            self._log.info(
                "poll_recovered", pipeline_id=followed.pipeline_id,
                previous=decision.previous.value,
                down_for_s=None if since is None else round(self._clock.monotonic() - since, 3),
            )
        else:
            self._log.warning(
                "pipeline_state", pipeline_id=followed.pipeline_id,
                state=decision.phase.value, previous=decision.previous.value,
                attempt=decision.attempt,
            )
