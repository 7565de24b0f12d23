"""Table tests of the per-pipeline state machine: every (state, outcome) pair that matters."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from follower.core.backoff import BackoffPolicy
from follower.core.lifecycle import (
    Decision,
    Lifecycle,
    LifecycleSettings,
    LogsFailed,
    LogsOk,
    LogsOutcome,
    Phase,
    StatusFailed,
    StatusOk,
    StatusOutcome,
)
from follower.errors import ServerError, ThrottledError


class TopRng(random.Random):
    """Always draws the top of the jitter range, so backoff delays equal their bounds."""

    def uniform(self, a: float, b: float) -> float:
        return b


SETTINGS = LifecycleSettings(
    backoff=BackoffPolicy(initial_s=1.0, max_s=16.0),
    tail_error_attempts_before_status=3,
    status_interval_s=5.0,
    paused_interval_s=60.0,
    forbidden_retry_s=300.0,
)
RNG = TopRng(0)

OK = LogsOk()
NO_PODS = LogsOk(no_pods=True)
TAIL_ERRORS = LogsOk(all_pods_failing=True)
RUNNING = StatusOk("RUNNING", ready=2, replicas=2)
NOT_READY = StatusOk("RUNNING", ready=1, replicas=2)
DEPLOYING = StatusOk("DEPLOYING", ready=0, replicas=1)
FAILED = StatusOk("FAILED", ready=0, replicas=1)
PAUSED = StatusOk("PAUSED", ready=0, replicas=0)


def logs_failed(
    kind: str, retry_after: float | None = None, *, retryable: bool = True
) -> LogsFailed:
    return LogsFailed(kind, retryable, retry_after)


def status_failed(kind: str, retry_after: float | None = None) -> StatusFailed:
    return StatusFailed(kind, kind not in ("unauthorized", "forbidden", "not_found"), retry_after)


Outcome = LogsOutcome | StatusOutcome


def feed(machine: Lifecycle, outcome: Outcome, now: float = 0.0) -> Decision:
    if isinstance(outcome, LogsOk | LogsFailed):
        return machine.on_logs(outcome, now, RNG)
    return machine.on_status(outcome, now, RNG)


def in_phase(phase: Phase) -> Lifecycle:
    """A machine brought into `phase` the way the runner would get it there."""
    machine = Lifecycle(SETTINGS)
    steps: dict[Phase, list[Outcome]] = {
        Phase.HEALTHY: [OK],
        Phase.BACKING_OFF: [logs_failed("server_error")],
        Phase.WAITING_RUNNING: [TAIL_ERRORS] * 3,
        Phase.PAUSED: [PAUSED],
        Phase.FORBIDDEN: [logs_failed("forbidden", retryable=False)],
        Phase.GONE: [logs_failed("not_found", retryable=False)] * 2,
    }
    for outcome in steps[phase]:
        feed(machine, outcome)
    assert machine.phase is phase
    return machine


@dataclass(frozen=True)
class Row:
    start: Phase
    outcome: Outcome
    phase: Phase
    request: str | None
    delay: float | None


FAILING = (Phase.BACKING_OFF, Phase.WAITING_RUNNING, Phase.PAUSED, Phase.FORBIDDEN)
LIVE = (Phase.HEALTHY, *FAILING)

TABLE = [
    # recovery from every state by a healthy logs answer: the schedule decides when
    *[Row(s, OK, Phase.HEALTHY, "logs", None) for s in LIVE],
    # an empty pod list asks the cheap status endpoint why
    Row(Phase.HEALTHY, NO_PODS, Phase.HEALTHY, "status", None),
    # RUNNING with every replica ready: read the logs at once (schedule if already healthy)
    Row(Phase.HEALTHY, RUNNING, Phase.HEALTHY, "logs", None),
    *[Row(s, RUNNING, Phase.HEALTHY, "logs", 0.0) for s in FAILING],
    Row(Phase.WAITING_RUNNING, StatusOk("RUNNING"), Phase.HEALTHY, "logs", 0.0),
    # not running yet, or failed: keep polling the status every status_interval_s
    *[
        Row(s, o, Phase.WAITING_RUNNING, "status", 5.0)
        for s in LIVE
        for o in (NOT_READY, DEPLOYING, FAILED, StatusOk("SOMETHING_NEW"))
    ],
    # paused by the user: poll the status rarely
    *[
        Row(s, StatusOk(p), Phase.PAUSED, "status", 60.0)
        for s in LIVE
        for p in ("PAUSED", "STOPPED", "STOPPING", "paused")
    ],
    # a first 404: the same request again after not_found_confirm_s (a status poll keeps its
    # waiting state); 403: slow retry with the logs request
    *[Row(s, logs_failed("not_found"), Phase.BACKING_OFF, "logs", 2.0) for s in LIVE],
    *[
        Row(s, status_failed("not_found"),
            s if s in (Phase.WAITING_RUNNING, Phase.PAUSED) else Phase.BACKING_OFF, "status", 2.0)
        for s in LIVE
    ],
    *[Row(s, logs_failed("forbidden"), Phase.FORBIDDEN, "logs", 300.0) for s in LIVE],
    *[Row(s, status_failed("forbidden"), Phase.FORBIDDEN, "logs", 300.0) for s in LIVE],
    # 429: not this pipeline's fault; same state, same request, Retry-After or the schedule
    Row(Phase.HEALTHY, logs_failed("throttled", 7.0), Phase.HEALTHY, "logs", 7.0),
    Row(Phase.HEALTHY, logs_failed("throttled"), Phase.HEALTHY, "logs", None),
    Row(Phase.BACKING_OFF, logs_failed("throttled", 2.0), Phase.BACKING_OFF, "logs", 2.0),
    Row(Phase.WAITING_RUNNING, status_failed("throttled"), Phase.WAITING_RUNNING, "status", None),
    Row(Phase.PAUSED, status_failed("throttled", 9.0), Phase.PAUSED, "status", 9.0),
    # request failures back off the logs; a 503's Retry-After is a minimum
    Row(Phase.HEALTHY, logs_failed("server_error"), Phase.BACKING_OFF, "logs", 1.0),
    Row(Phase.HEALTHY, logs_failed("server_error", 42.0), Phase.BACKING_OFF, "logs", 42.0),
    Row(Phase.BACKING_OFF, logs_failed("network_error"), Phase.BACKING_OFF, "logs", 2.0),
    Row(Phase.HEALTHY, logs_failed("malformed_response"), Phase.BACKING_OFF, "logs", 1.0),
    Row(Phase.FORBIDDEN, logs_failed("envelope_error"), Phase.BACKING_OFF, "logs", 2.0),
    Row(Phase.HEALTHY, status_failed("server_error"), Phase.BACKING_OFF, "logs", 1.0),
    # a non-retryable kind of no special meaning waits the backoff cap
    Row(
        Phase.HEALTHY,
        logs_failed("unexpected_status", retryable=False),
        Phase.BACKING_OFF,
        "logs",
        16.0,
    ),
    # a failing status request keeps the status polling, never faster than its interval
    # (three tail errors, then this: the 4th failure in a row, bound 8 s)
    Row(Phase.WAITING_RUNNING, status_failed("server_error"), Phase.WAITING_RUNNING, "status", 8),
    Row(Phase.WAITING_RUNNING, status_failed("timeout", 30), Phase.WAITING_RUNNING, "status", 30),
    Row(Phase.PAUSED, status_failed("server_error"), Phase.PAUSED, "status", 60.0),
    # GONE is final
    *[Row(Phase.GONE, o, Phase.GONE, None, None) for o in (OK, RUNNING, TAIL_ERRORS)],
]


@pytest.mark.parametrize("row", TABLE, ids=lambda r: f"{r.start}-{r.outcome}")
def test_transition_table(row: Row) -> None:
    """Each (state, outcome) pair leads to the documented phase, request and delay."""
    decision = feed(in_phase(row.start), row.outcome, now=100.0)
    assert (decision.phase, decision.next_request, decision.delay_s) == (
        row.phase,
        row.request,
        row.delay,
    )
    assert decision.previous is row.start
    assert decision.entered == (row.phase is not row.start)


def test_backoff_grows_to_the_cap_and_resets_on_recovery() -> None:
    """Consecutive failures double the jitter bound up to max_s; a success starts over."""
    machine = Lifecycle(SETTINGS)
    delays = [feed(machine, logs_failed("server_error")).delay_s for _ in range(7)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 16.0, 16.0]
    assert machine.attempt == 7
    assert feed(machine, OK).attempt == 0
    assert feed(machine, logs_failed("server_error")).delay_s == 1.0


def test_backoff_is_jittered_with_the_injected_rng() -> None:
    """Full jitter: the delay is drawn in [floor, bound] from the RNG passed in."""
    settings = LifecycleSettings(
        backoff=BackoffPolicy(initial_s=1.0, max_s=60.0), backoff_floor_s=2
    )
    draws = set()
    for seed in range(50):
        machine = Lifecycle(settings)
        for _ in range(4):
            decision = machine.on_logs(logs_failed("server_error"), 0.0, random.Random(seed))
        assert decision.delay_s is not None
        assert 2.0 <= decision.delay_s <= 8.0
        draws.add(decision.delay_s)
    assert len(draws) > 40


def test_tail_errors_switch_to_status_polling_after_n_answers() -> None:
    """N answers in a row with every pod failing: stop reading logs, poll the status instead."""
    machine = Lifecycle(SETTINGS)
    first, second, third = (feed(machine, TAIL_ERRORS) for _ in range(3))
    assert (first.phase, first.next_request, first.delay_s) == (Phase.BACKING_OFF, "logs", 1.0)
    assert (second.phase, second.next_request, second.delay_s) == (Phase.BACKING_OFF, "logs", 2.0)
    assert (third.phase, third.next_request, third.delay_s) == (
        Phase.WAITING_RUNNING,
        "status",
        5.0,
    )
    assert third.attempt == 3


def test_request_errors_between_tail_errors_do_not_reset_the_count() -> None:
    """A 5xx says nothing about the pods, so the tail-error streak goes on across it."""
    machine = Lifecycle(SETTINGS)
    for outcome in (TAIL_ERRORS, logs_failed("server_error"), TAIL_ERRORS):
        feed(machine, outcome)
    assert feed(machine, TAIL_ERRORS).phase is Phase.WAITING_RUNNING


def test_waiting_until_every_replica_is_ready_then_back_to_logs() -> None:
    """RUNNING with ready < replicas keeps waiting; ready == replicas reads the logs at once."""
    machine = in_phase(Phase.WAITING_RUNNING)
    for outcome in (DEPLOYING, NOT_READY, NOT_READY):
        decision = feed(machine, outcome)
        assert (decision.phase, decision.next_request) == (Phase.WAITING_RUNNING, "status")
    decision = feed(machine, RUNNING)
    assert (decision.phase, decision.next_request, decision.delay_s) == (Phase.HEALTHY, "logs", 0)
    assert machine.tail_errors == 0  # a new run of tail errors needs N answers again


def test_paused_is_polled_rarely_and_resumes_on_running() -> None:
    """A paused pipeline is asked for its status every paused_interval_s until it runs again."""
    machine = in_phase(Phase.HEALTHY)
    assert feed(machine, NO_PODS).next_request == "status"
    paused = feed(machine, PAUSED, now=10.0)
    assert (paused.phase, paused.next_request, paused.delay_s) == (Phase.PAUSED, "status", 60.0)
    assert feed(machine, StatusOk("PAUSED"), now=70.0).delay_s == 60.0
    resumed = feed(machine, RUNNING, now=130.0)
    assert (resumed.phase, resumed.next_request, resumed.delay_s) == (Phase.HEALTHY, "logs", 0)


def test_runtime_phase_is_reported_once_per_change() -> None:
    """FAILED is reported when it is first seen, not again while it lasts, and again after."""
    machine = in_phase(Phase.WAITING_RUNNING)
    reported = [
        feed(machine, outcome).phase_changed
        for outcome in (DEPLOYING, DEPLOYING, FAILED, FAILED, FAILED, DEPLOYING, RUNNING, OK)
    ]
    assert reported == ["DEPLOYING", None, "FAILED", None, None, "DEPLOYING", "RUNNING", None]
    feed(machine, NO_PODS)
    assert feed(machine, FAILED).phase_changed == "FAILED"
    assert feed(machine, StatusOk("failed ")).phase_changed is None  # normalised


def test_forbidden_retries_slowly_and_recovers() -> None:
    """A 403 is retried every forbidden_retry_s until the key may read the pipeline again."""
    machine = Lifecycle(SETTINGS)
    for _ in range(3):
        decision = feed(machine, logs_failed("forbidden", retryable=False), now=5.0)
        assert (decision.phase, decision.delay_s) == (Phase.FORBIDDEN, 300.0)
    assert machine.failing_since == 5.0
    recovered = feed(machine, OK, now=905.0)
    assert recovered.entered
    assert (recovered.phase, recovered.attempt) == (Phase.HEALTHY, 0)
    assert machine.failing_since is None


def test_not_found_stops_for_good() -> None:
    """After a 404 confirmed by the next look the pipeline is never polled again."""
    machine = Lifecycle(SETTINGS)
    first = feed(machine, logs_failed("not_found", retryable=False))
    assert (first.next_request, first.delay_s) == ("logs", 2.0)
    gone = feed(machine, status_failed("not_found"))
    assert (gone.phase, gone.next_request, gone.delay_s) == (Phase.GONE, None, None)
    assert feed(machine, RUNNING).next_request is None


def test_a_404_between_other_outcomes_is_only_a_blip() -> None:
    """A 404 followed by anything else (an answer, another error) starts the count again."""
    machine = Lifecycle(SETTINGS)
    for between in (OK, logs_failed("server_error"), RUNNING):
        assert feed(machine, logs_failed("not_found")).phase is not Phase.GONE
        feed(machine, between)
    assert feed(machine, logs_failed("not_found")).phase is not Phase.GONE


@pytest.mark.parametrize("start", LIVE)
def test_unauthorized_is_reported_for_the_caller_to_handle_globally(start: Phase) -> None:
    """401 keeps the state and the attempt count and asks to repeat the same request later."""
    machine = in_phase(start)
    attempt = machine.attempt
    request = "status" if start in (Phase.WAITING_RUNNING, Phase.PAUSED) else "logs"
    failed = (
        status_failed("unauthorized")
        if request == "status"
        else logs_failed("unauthorized", retryable=False)
    )
    decision = feed(machine, failed)
    assert decision.key_rejected
    assert (decision.phase, decision.next_request, decision.delay_s) == (start, request, None)
    assert decision.attempt == attempt


def test_throttling_is_not_counted_as_a_failure() -> None:
    """429 leaves the attempt count alone: the shared budget, not the pipeline, slows down."""
    machine = in_phase(Phase.HEALTHY)
    decision = machine.on_logs(LogsFailed.of(ThrottledError("slow", status=429)), 0.0, RNG)
    assert (decision.attempt, machine.failing_since) == (0, None)


def test_outcomes_built_from_client_errors() -> None:
    """`of()` carries the error's kind, retryability and Retry-After."""
    error = ServerError("down", status=503, retry_after_s=12.0)
    assert LogsFailed.of(error) == LogsFailed("server_error", True, 12.0)
    assert StatusFailed.of(error) == StatusFailed("server_error", True, 12.0)


def test_down_time_starts_at_the_first_failure() -> None:
    """failing_since marks the start of a run of failures, kept across waiting and pausing."""
    machine = Lifecycle(SETTINGS)
    feed(machine, TAIL_ERRORS, now=1.0)
    feed(machine, TAIL_ERRORS, now=3.0)
    feed(machine, TAIL_ERRORS, now=7.0)
    feed(machine, DEPLOYING, now=12.0)
    assert machine.failing_since == 1.0
    feed(machine, RUNNING, now=20.0)
    assert machine.failing_since is None


def test_failed_status_request_is_never_retried_faster_than_the_status_interval() -> None:
    """A status answer resets the count, so the next failure's 1 s backoff is raised to 5 s."""
    machine = in_phase(Phase.WAITING_RUNNING)
    feed(machine, DEPLOYING)
    decision = feed(machine, status_failed("server_error"))
    assert (decision.phase, decision.next_request, decision.delay_s) == (
        Phase.WAITING_RUNNING,
        "status",
        5.0,
    )
    assert decision.attempt == 1


def test_invalid_settings_are_all_named() -> None:
    """Every non-positive interval or count is reported in one ValueError."""
    with pytest.raises(ValueError, match=r"tail_error_attempts_before_status.*paused_interval_s"):
        LifecycleSettings(tail_error_attempts_before_status=0, paused_interval_s=-1.0)
