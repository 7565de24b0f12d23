"""Per-pipeline state machine: which request to send next, and when, after each outcome.

The runner feeds in what each request of one pipeline produced and executes the `Decision`: the
next request (`logs`, `status`, or none) and its delay (None: "when the schedule plans it").
Pure: `now` and the RNG are arguments; nothing here reads a clock or sleeps.

Transitions, the same from every state except GONE (final) unless noted:

    outcome                                       -> phase          next     delay
    logs: some pod has lines                      HEALTHY          logs (1) schedule
    logs: every pod a tail error, < N in a row    BACKING_OFF      logs     backoff
    logs: every pod a tail error, N-th in a row   WAITING_RUNNING  status   status_interval_s
    status: RUNNING and ready == replicas         HEALTHY          logs     0 (2)
    status: PAUSED, STOPPED, STOPPING             PAUSED           status   paused_interval_s
    status: DEPLOYING, FAILED, not all ready, ... WAITING_RUNNING  status   status_interval_s
    404, the first in a row                       unchanged (5)    same     not_found_confirm_s
    404, confirmed by the next look               GONE             none     none
    403                                           FORBIDDEN        logs     forbidden_retry_s
    401                                           unchanged (3)    same     none
    429                                           unchanged        same     Retry-After or schedule
    status failed in WAITING_RUNNING or PAUSED    unchanged        status   max(interval, backoff)
    any other failure (5xx, timeout, malformed)   BACKING_OFF      logs     backoff (4)

    (1) status when the pod list was empty, to learn whether the pipeline is paused or failed.
    (2) schedule when already HEALTHY (a status check after an empty pod list).
    (3) `key_rejected` is set: the runner pauses every pipeline until the key works.
    (4) the backoff cap for a non-retryable kind (an unexpected status): nothing changes by itself.
    (5) BACKING_OFF after a logs request; a status request keeps WAITING_RUNNING or PAUSED.

Why these choices:
- A 429 is the key's fault, not the pipeline's: the shared `RequestBudget` slows every request
  down, so the pipeline keeps its state and retries as soon as the budget (and its priority) allow.
- 401 concerns every pipeline at once; the runner treats it globally and re-sends `next_request`
  once the key works, so the machine does not count it as an attempt.
- Backoff is exponential with full jitter (`BackoffPolicy`); Retry-After (sent with 503) is a
  minimum. A non-retryable error of no special kind (an unexpected status) waits the backoff cap.
- Tail errors on every pod for N answers in a row mean the pods are not running: the docs advise
  polling the cheap status endpoint until RUNNING with every replica ready.
- 404 means "does not exist or is not visible to this key": a blip of the API (or a status
  endpoint that answers 404 while a pipeline is being deployed) must not drop a pipeline for good,
  so the same request is repeated after `not_found_confirm_s`, and only a second 404 in a row
  drops it.
- Every change of runtime phase seen on the status endpoint (the first one included) is handed
  back once as `phase_changed`, for a `pipeline_status` event a shipper can alert on (FAILED).

Size: over 300 lines because it is one state machine: its outcomes, its decision and the
transition table above read together, and the table is the specification the code follows.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final, Literal

from follower.core.backoff import BackoffPolicy
from follower.errors import ApiError

Request = Literal["logs", "status"]

RUNNING: Final = "RUNNING"
PAUSED_PHASES: Final = frozenset({"PAUSED", "STOPPED", "STOPPING"})


class Phase(StrEnum):
    """Where a pipeline stands, from the follower's point of view."""

    HEALTHY = "healthy"
    BACKING_OFF = "backing_off"
    WAITING_RUNNING = "waiting_running"
    PAUSED = "paused"
    FORBIDDEN = "forbidden"
    GONE = "gone"


@dataclass(frozen=True, slots=True)
class LifecycleSettings:
    """Delays of the non-healthy states; the healthy delay comes from `follower.core.schedule`."""

    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    tail_error_attempts_before_status: int = 3
    status_interval_s: float = 5.0
    paused_interval_s: float = 60.0
    forbidden_retry_s: float = 300.0
    not_found_confirm_s: float = 2.0
    """A 404 is looked at again after this long before the pipeline is dropped."""
    backoff_floor_s: float = 0.0
    """No backoff delay is drawn below this (e.g. the schedule's floor_s)."""

    def __post_init__(self) -> None:
        problems = [
            f"{name} must be positive, got {value!r}"
            for name, value in (
                ("tail_error_attempts_before_status", self.tail_error_attempts_before_status),
                ("status_interval_s", self.status_interval_s),
                ("paused_interval_s", self.paused_interval_s),
                ("forbidden_retry_s", self.forbidden_retry_s),
                ("not_found_confirm_s", self.not_found_confirm_s),
            )
            if not value > 0
        ]
        if problems:
            raise ValueError("; ".join(problems))


# --- outcomes fed in by the runner ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LogsOk:
    """A logs answer was parsed. `no_pods`: its pod list was empty (paused, or no replicas)."""

    all_pods_failing: bool = False
    no_pods: bool = False


@dataclass(frozen=True, slots=True)
class LogsFailed:
    """A logs request failed; `kind` is the `ApiError.kind`."""

    kind: str
    retryable: bool = True
    retry_after_s: float | None = None

    @classmethod
    def of(cls, error: ApiError) -> LogsFailed:
        """The outcome for an error raised by the client."""
        return cls(error.kind, error.retryable, error.retry_after_s)


@dataclass(frozen=True, slots=True)
class StatusOk:
    """A status answer: the runtime phase and, when given, ready and total replicas."""

    phase: str
    ready: int | None = None
    replicas: int | None = None

    @property
    def running(self) -> bool:
        """RUNNING with every replica ready (missing counts cannot hold it back)."""
        ready, replicas = self.ready, self.replicas
        counts_ok = ready is None or replicas is None or ready >= replicas
        return _normal(self.phase) == RUNNING and counts_ok


@dataclass(frozen=True, slots=True)
class StatusFailed:
    """A status request failed; `kind` is the `ApiError.kind`."""

    kind: str
    retryable: bool = True
    retry_after_s: float | None = None

    @classmethod
    def of(cls, error: ApiError) -> StatusFailed:
        """The outcome for an error raised by the client."""
        return cls(error.kind, error.retryable, error.retry_after_s)


LogsOutcome = LogsOk | LogsFailed
StatusOutcome = StatusOk | StatusFailed


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do next for one pipeline.

    `delay_s` None means "when the schedule plans it" (healthy polling, or a 429 without
    Retry-After); a number overrides the schedule. `phase_changed` is the runtime phase to report
    as `pipeline_status` when it differs from the last one seen. `attempt` counts consecutive
    failures (0 when healthy). `key_rejected`: a 401, which the caller handles for every pipeline.
    """

    phase: Phase
    next_request: Request | None
    delay_s: float | None
    phase_changed: str | None
    attempt: int
    previous: Phase
    key_rejected: bool = False

    @property
    def entered(self) -> bool:
        """The phase changed with this decision: the moment to log a transition."""
        return self.phase is not self.previous


def _normal(phase: str) -> str:
    return phase.strip().upper()


@dataclass(slots=True)
class Lifecycle:
    """One pipeline's state; `on_logs` and `on_status` apply an outcome and return a Decision."""

    settings: LifecycleSettings
    phase: Phase = Phase.HEALTHY
    attempt: int = 0
    """Consecutive failures: failed requests and answers where every pod held a tail error."""
    tail_errors: int = 0
    """Consecutive logs answers where every pod held a tail error."""
    runtime_phase: str | None = None
    """The last runtime phase the status endpoint reported."""
    failing_since: float | None = None
    """When the current run of failures started (for `poll_recovered`'s down time)."""
    not_found: int = 0
    """Consecutive 404 answers (a second one confirms the first)."""

    def on_logs(self, outcome: LogsOutcome, now: float, rng: random.Random) -> Decision:
        """Apply the outcome of a logs request sent for this pipeline."""
        previous = self.phase
        if previous is Phase.GONE:
            return self._decide(previous, Phase.GONE, None, None)
        self._count_not_found(outcome)
        if isinstance(outcome, LogsFailed):
            return self._failure(previous, "logs", outcome, now, rng)
        if not outcome.all_pods_failing:
            self._recovered()
            request: Request = "status" if outcome.no_pods else "logs"
            return self._decide(previous, Phase.HEALTHY, request, None)
        self._failed(now)
        self.tail_errors += 1
        if self.tail_errors >= self.settings.tail_error_attempts_before_status:
            delay = self.settings.status_interval_s
            return self._decide(previous, Phase.WAITING_RUNNING, "status", delay)
        return self._decide(previous, Phase.BACKING_OFF, "logs", self._backoff(rng, None))

    def on_status(self, outcome: StatusOutcome, now: float, rng: random.Random) -> Decision:
        """Apply the outcome of a status request sent for this pipeline."""
        previous = self.phase
        if previous is Phase.GONE:
            return self._decide(previous, Phase.GONE, None, None)
        self._count_not_found(outcome)
        if isinstance(outcome, StatusFailed):
            return self._failure(previous, "status", outcome, now, rng)
        seen = _normal(outcome.phase)
        changed = seen if seen != self.runtime_phase else None
        self.runtime_phase = seen
        self.attempt = 0  # the request worked; waiting for the pipeline is not failing
        if outcome.running:
            self._recovered()
            delay = None if previous is Phase.HEALTHY else 0.0  # pods just came up: read them
            return self._decide(previous, Phase.HEALTHY, "logs", delay, changed)
        if self.failing_since is None:
            self.failing_since = now
        if seen in PAUSED_PHASES:
            delay = self.settings.paused_interval_s
            return self._decide(previous, Phase.PAUSED, "status", delay, changed)
        delay = self.settings.status_interval_s
        return self._decide(previous, Phase.WAITING_RUNNING, "status", delay, changed)

    # --- shared rules --------------------------------------------------------------------------

    def _failure(
        self,
        previous: Phase,
        request: Request,
        failure: LogsFailed | StatusFailed,
        now: float,
        rng: random.Random,
    ) -> Decision:
        """A request failed: the key-wide kinds keep the state, the others are counted."""
        if failure.kind == "unauthorized":
            return self._decide(previous, previous, request, None, key_rejected=True)
        if failure.kind == "throttled":
            return self._decide(previous, previous, request, failure.retry_after_s)
        self._failed(now)
        phase, next_request, delay = self._after_failure(previous, request, failure, rng)
        return self._decide(previous, phase, next_request, delay)

    def _after_failure(
        self,
        previous: Phase,
        request: Request,
        failure: LogsFailed | StatusFailed,
        rng: random.Random,
    ) -> tuple[Phase, Request | None, float | None]:
        settings = self.settings
        match failure.kind:
            case "not_found" if self.not_found > 1:
                return Phase.GONE, None, None
            case "not_found":
                waiting = request == "status" and previous in (Phase.WAITING_RUNNING, Phase.PAUSED)
                phase = previous if waiting else Phase.BACKING_OFF
                return phase, request, settings.not_found_confirm_s
            case "forbidden":
                return Phase.FORBIDDEN, "logs", settings.forbidden_retry_s
        if failure.retryable:
            delay = self._backoff(rng, failure.retry_after_s)
        else:
            delay = max(settings.backoff.max_s, failure.retry_after_s or 0.0)
        interval = {
            Phase.WAITING_RUNNING: settings.status_interval_s,
            Phase.PAUSED: settings.paused_interval_s,
        }.get(previous)
        if request == "status" and interval is not None:
            return previous, "status", max(interval, delay)  # keep polling the status, slower
        return Phase.BACKING_OFF, "logs", delay

    def _count_not_found(self, outcome: LogsOutcome | StatusOutcome) -> None:
        """Count 404s in a row; any other outcome ends the run."""
        failed = isinstance(outcome, LogsFailed | StatusFailed) and outcome.kind == "not_found"
        self.not_found = self.not_found + 1 if failed else 0

    def _backoff(self, rng: random.Random, retry_after_s: float | None) -> float:
        return self.settings.backoff.delay(
            self.attempt, rng, floor_s=self.settings.backoff_floor_s, retry_after_s=retry_after_s
        )

    def _failed(self, now: float) -> None:
        self.attempt += 1
        if self.failing_since is None:
            self.failing_since = now

    def _recovered(self) -> None:
        self.attempt = 0
        self.tail_errors = 0
        self.failing_since = None

    def _decide(
        self,
        previous: Phase,
        phase: Phase,
        request: Request | None,
        delay_s: float | None,
        changed: str | None = None,
        *,
        key_rejected: bool = False,
    ) -> Decision:
        self.phase = phase
        return Decision(
            phase=phase,
            next_request=request,
            delay_s=delay_s,
            phase_changed=changed,
            attempt=self.attempt,
            previous=previous,
            key_rejected=key_rejected,
        )
