"""The poll loop: one task per pipeline under one task group, executing the pure core's decisions.

Each pipeline task polls its logs, folds the answer into its `PipelineTracker`, writes the events
and sleeps until its next poll (the interval on success, a backoff after failures). Shutdown has two
phases: `stop` ends every sleep and starts no new poll, in-flight polls get `shutdown_timeout_s` to
finish and write their events, then whatever is left is cancelled.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import structlog

from follower.backoff import BackoffPolicy
from follower.client import TailSource
from follower.clock import Clock
from follower.errors import ApiError, AuthError, ForbiddenError, NotFoundError
from follower.model import ApiErrorEvent, Event, LogsSnapshot, TailErrorEvent
from follower.sinks import Sink
from follower.tailerrors import TailErrorMatcher
from follower.tracker import Applied, PipelineTracker, PodState, Since

Checkpointer = Callable[[dict[str, dict[str, PodState]]], Awaitable[None]]
"""Saves a snapshot of every followed pipeline's pods (see follower.checkpoint)."""


@dataclass(frozen=True, slots=True)
class RunSettings:
    """The loop's knobs, taken from `Config` by the CLI (or set directly by tests)."""

    interval_s: float = 5.0
    since: Since = "start"
    max_in_flight: int = 8
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    shutdown_timeout_s: float = 5.0
    checkpoint_interval_s: float = 5.0


@dataclass(slots=True)
class RunStats:
    """Counters for the summary line at the end of a run."""

    polls_ok: int = 0
    polls_failed: int = 0
    events: dict[str, int] = field(default_factory=dict)
    pipelines_gone: list[str] = field(default_factory=list)

    def count(self, events: list[Event]) -> None:
        for event in events:
            self.events[event.kind] = self.events.get(event.kind, 0) + 1


@dataclass(slots=True)
class _Streak:
    """Consecutive failures of one pipeline, for backoff and for logging transitions only."""

    attempts: int = 0
    since: float = 0.0

    def fail(self, now: float) -> None:
        if self.attempts == 0:
            self.since = now
        self.attempts += 1


class Runner:
    """Follows a fixed list of pipelines until stopped or until none is left to follow."""

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
    ) -> None:
        self._pipelines = pipelines
        self._source = source
        self._sink = sink
        self._clock = clock
        self._settings = settings
        self._matcher = matcher
        self._rng = rng or random.Random()
        self._log = log or structlog.get_logger("follower")
        self._limiter = anyio.CapacityLimiter(settings.max_in_flight)
        self._stopping = False
        self._sleeping: set[anyio.CancelScope] = set()
        self._key_rejected = False
        self._checkpointer = checkpointer
        # Held while a poll's answer is folded into its tracker and its events are written, and
        # while a checkpoint snapshot is taken: a checkpoint never covers an unwritten event.
        self._commit = anyio.Lock()
        self._trackers = {
            pipeline_id: self._tracker(pipeline_id, (restored or {}).get(pipeline_id), reset_state)
            for pipeline_id in pipelines
        }
        self.stats = RunStats()

    def _tracker(
        self, pipeline_id: str, pods: dict[str, PodState] | None, reset_state: bool
    ) -> PipelineTracker:
        settings = self._settings
        if pods is not None:
            return PipelineTracker.restored(pipeline_id, settings.since, self._matcher, pods)
        return PipelineTracker(pipeline_id, settings.since, self._matcher, reset_state=reset_state)

    def snapshot(self) -> dict[str, dict[str, PodState]]:
        """Every followed pipeline's pods as of the last written events."""
        return {pipeline_id: t.snapshot() for pipeline_id, t in self._trackers.items()}

    async def checkpoint(self) -> None:
        """Save a snapshot taken between two commits (no-op without a checkpointer)."""
        if self._checkpointer is None:
            return
        async with self._commit:
            state = self.snapshot()
        await self._checkpointer(state)

    async def run(self, stop: anyio.Event) -> RunStats:
        """Follow every pipeline until `stop` is set (or every pipeline is gone)."""
        self._log.info("follower_started", pipelines=len(self._pipelines))
        async with anyio.create_task_group() as outer:
            async with anyio.create_task_group() as followers:
                outer.start_soon(self._shutdown_on, stop, followers.cancel_scope)
                if self._checkpointer is not None:
                    outer.start_soon(self._checkpoint_every, self._settings.checkpoint_interval_s)
                for pipeline_id in self._pipelines:
                    followers.start_soon(self._follow, pipeline_id)
            outer.cancel_scope.cancel()  # every follower ended: the watchers are moot
        with anyio.CancelScope(shield=True):
            await self.checkpoint()
        self._log.info(
            "follower_stopped",
            polls_ok=self.stats.polls_ok,
            polls_failed=self.stats.polls_failed,
            events=self.stats.events,
        )
        return self.stats

    async def _shutdown_on(self, stop: anyio.Event, followers: anyio.CancelScope) -> None:
        await stop.wait()
        self._stopping = True
        for scope in list(self._sleeping):
            scope.cancel()
        self._log.info("shutdown_started", grace_s=self._settings.shutdown_timeout_s)
        await self._clock.sleep(self._settings.shutdown_timeout_s)
        self._log.warning("shutdown_grace_expired", action="cancelling in-flight polls")
        followers.cancel()

    async def _checkpoint_every(self, interval_s: float) -> None:
        while True:
            await self._clock.sleep(interval_s)
            await self.checkpoint()

    async def _follow(self, pipeline_id: str) -> None:
        tracker = self._trackers[pipeline_id]
        streak = _Streak()
        while not self._stopping:
            async with self._limiter:
                if self._stopping:
                    return
                started = self._clock.monotonic()
                try:
                    snapshot: LogsSnapshot | ApiError = await self._source.logs(pipeline_id)
                except ApiError as exc:
                    snapshot = exc
            if isinstance(snapshot, ApiError):
                delay = await self._failed(pipeline_id, snapshot, streak)
                if delay is None:
                    async with self._commit:
                        del self._trackers[pipeline_id]  # its state is freed and not saved
                    return
            else:
                delay = await self._succeeded(tracker, snapshot, streak, started)
            await self._pause(delay)

    async def _succeeded(
        self, tracker: PipelineTracker, snapshot: LogsSnapshot, streak: _Streak, started: float
    ) -> float:
        self.stats.polls_ok += 1
        if self._key_rejected:
            self._key_rejected = False
            self._log.info("service_key_accepted")
        async with self._commit:
            applied = tracker.apply(snapshot, self._clock.wall())
            if applied.all_failing:
                streak.fail(self._clock.monotonic())
                delay = self._backoff(streak)
            else:
                self._recovered(tracker.pipeline_id, streak)
                delay = max(0.0, started + self._settings.interval_s - self._clock.monotonic())
            await self._write(applied.events + self._tail_error_events(tracker, applied, delay))
        return delay

    def _tail_error_events(
        self, tracker: PipelineTracker, applied: Applied, delay: float
    ) -> list[Event]:
        now = self._clock.wall()
        return [
            TailErrorEvent(now, tracker.pipeline_id, failed.pod, failed.error, delay)
            for failed in applied.tail_errors
            if failed.changed or applied.all_failing
        ]

    async def _failed(self, pipeline_id: str, error: ApiError, streak: _Streak) -> float | None:
        """Report a failed poll; return the delay before the next, or None to stop following."""
        self.stats.polls_failed += 1
        streak.fail(self._clock.monotonic())
        delay: float | None
        if isinstance(error, NotFoundError):
            delay = None
        elif isinstance(error, AuthError | ForbiddenError):
            delay = self._settings.backoff.max_s  # nothing changes until someone fixes the key
        else:
            delay = self._backoff(streak, retry_after_s=error.retry_after_s)
        await self._write(
            [
                ApiErrorEvent(
                    self._clock.wall(), pipeline_id, error.kind, error.status, error.message, delay
                )
            ]
        )
        self._log_failure(pipeline_id, error, streak, delay)
        return delay

    def _log_failure(
        self, pipeline_id: str, error: ApiError, streak: _Streak, delay: float | None
    ) -> None:
        if isinstance(error, AuthError):
            if not self._key_rejected:
                self._key_rejected = True
                self._log.error(
                    "service_key_rejected",
                    status=error.status,
                    hint="the API answered 401: check GOLDRUSH_SERVICE_KEY(_FILE) holds a valid, "
                    "unrevoked ServiceKey; polling continues and resumes when the key works",
                )
        elif delay is None:
            self.stats.pipelines_gone.append(pipeline_id)
            self._log.error(
                "pipeline_not_found",
                pipeline_id=pipeline_id,
                hint="the API answered 404: check the pipeline id and the base URL; "
                "this pipeline is no longer polled",
            )
        elif streak.attempts == 1:
            self._log.warning(
                "poll_failing",
                pipeline_id=pipeline_id,
                error=error.kind,
                message=str(error),
                attempt=streak.attempts,
                retry_in_s=round(delay, 3),
            )

    def _recovered(self, pipeline_id: str, streak: _Streak) -> None:
        if streak.attempts:
            self._log.info(
                "poll_recovered",
                pipeline_id=pipeline_id,
                attempts=streak.attempts,
                down_for_s=round(self._clock.monotonic() - streak.since, 3),
            )
        streak.attempts = 0

    def _backoff(self, streak: _Streak, retry_after_s: float | None = None) -> float:
        return self._settings.backoff.delay(
            streak.attempts,
            self._rng,
            floor_s=self._settings.interval_s,
            retry_after_s=retry_after_s,
        )

    async def _write(self, events: list[Event]) -> None:
        if events:
            await self._sink.write(events)
            self.stats.count(events)

    async def _pause(self, seconds: float) -> None:
        """Sleep until the next poll; `stop` ends the sleep at once."""
        if self._stopping:
            return
        with anyio.CancelScope() as scope:
            self._sleeping.add(scope)
            try:
                await self._clock.sleep(seconds)
            finally:
                self._sleeping.discard(scope)
