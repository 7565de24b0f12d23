"""Table tests of the shared request budget: burst, steady rate, 429 decrease, pause, recovery."""

from __future__ import annotations

import itertools
import math

import pytest

from follower.core.budget import RequestBudget


def greedy_count(budget: RequestBudget, start: float, end: float) -> tuple[int, list[float]]:
    """Take every token as soon as it is available between `start` and `end`; return the times."""
    times: list[float] = []
    now = start
    while True:
        now = budget.available_at(now)
        if now > end + 1e-6:
            return len(times), times
        budget.take(now)
        times.append(now)


@pytest.mark.parametrize(("rate", "burst"), [(5.0, 3), (4.0, 1), (50.0, 10), (0.5, 2)])
def test_burst_then_steady_rate(rate: float, burst: int) -> None:
    """Over 10 s a greedy caller gets the whole burst at once, then exactly rate * 10 more."""
    budget = RequestBudget(rate, burst)
    count, times = greedy_count(budget, 100.0, 110.0)
    assert count == burst + math.floor(rate * 10 + 1e-9)
    assert times[:burst] == [100.0] * burst
    gaps = [b - a for a, b in itertools.pairwise(times[burst:])]
    assert all(gap == pytest.approx(1 / rate) for gap in gaps)


def test_quiet_spell_refills_up_to_the_burst_only() -> None:
    """Tokens accumulate while nobody asks, but never beyond the burst."""
    budget = RequestBudget(10.0, 4)
    greedy_count(budget, 0.0, 1.0)
    assert budget.tokens(1000.0) == 4.0
    count, _ = greedy_count(budget, 1000.0, 1000.0)
    assert count == 4


def test_take_without_a_token_is_refused() -> None:
    """Taking a token that is not there is a caller bug, reported with the time it will be."""
    budget = RequestBudget(2.0, 1)
    budget.take(0.0)
    with pytest.raises(ValueError, match=r"next one is available at t=0\.500"):
        budget.take(0.1)


def test_429_halves_the_rate_drains_and_pauses_for_retry_after() -> None:
    """A 429 with Retry-After: nothing before the pause ends, then one token per 1/(rate/2)."""
    budget = RequestBudget(10.0, 5)
    budget.take(0.0)
    budget.throttled(0.0, 3.0)
    assert budget.current_rate_per_s == 5.0
    assert budget.configured_rate_per_s == 10.0
    assert budget.paused_until() == 3.0
    assert budget.available_at(0.0) == pytest.approx(3.2)  # empty at resume: no burst after 429
    assert budget.available_at(2.9) == pytest.approx(3.2)
    assert budget.tokens(2.9) == 0.0
    with pytest.raises(ValueError):
        budget.take(3.0)
    count, times = greedy_count(budget, 0.0, 4.0)
    assert times[0] == pytest.approx(3.2)
    assert count == 5  # 3.2, 3.4, 3.6, 3.8, 4.0


def test_429_without_retry_after_only_drains() -> None:
    """Without Retry-After the next token simply follows at the halved rate."""
    budget = RequestBudget(4.0, 8)
    budget.throttled(10.0, None)
    assert budget.paused_until() == -math.inf
    assert budget.available_at(10.0) == pytest.approx(10.5)


def test_a_longer_pause_is_never_shortened() -> None:
    """A second 429 with a shorter Retry-After keeps the end of the first pause."""
    budget = RequestBudget(10.0, 1)
    budget.throttled(0.0, 30.0)
    budget.throttled(1.0, 2.0)
    assert budget.paused_until() == 30.0


@pytest.mark.parametrize(
    ("throttles", "expected_rate"),
    [(1, 10.0), (2, 5.0), (3, 2.5), (4, 1.25), (5, 1.0), (50, 1.0)],
)
def test_repeated_429s_floor_at_the_minimum(throttles: int, expected_rate: float) -> None:
    """Each 429 halves the rate, down to min_rate_fraction of the configured rate and no lower."""
    budget = RequestBudget(20.0, 5, min_rate_fraction=0.05)
    for i in range(throttles):
        budget.throttled(float(i), None)
    assert budget.current_rate_per_s == expected_rate


def test_429s_for_requests_sent_before_the_last_decrease_count_once() -> None:
    """Concurrent requests throttled together halve the rate once, not once per request."""
    budget = RequestBudget(16.0, 8)
    for _ in range(4):
        budget.throttled(5.0, None, sent_at=4.9)
    assert budget.current_rate_per_s == 8.0
    budget.throttled(6.0, None, sent_at=5.5)  # sent after the decrease: a new overload
    assert budget.current_rate_per_s == 4.0


@pytest.mark.parametrize(
    ("seconds_after", "expected_rate"),
    [(0.0, 5.0), (3.0, 6.0), (7.5, 7.5), (15.0, 10.0), (300.0, 10.0)],
)
def test_recovery_is_linear_in_time_and_bounded(seconds_after: float, expected_rate: float) -> None:
    """After a 429, successes raise the rate by configured/recovery_s per second, capped."""
    budget = RequestBudget(10.0, 5, recovery_s=30.0)
    budget.throttled(100.0, None)
    budget.succeeded(100.0 + seconds_after)
    assert budget.current_rate_per_s == pytest.approx(expected_rate)


def test_recovery_is_gradual_over_many_successes() -> None:
    """Successes every second climb step by step, never jump, and stop at the configured rate."""
    budget = RequestBudget(20.0, 5, min_rate_fraction=0.05, recovery_s=30.0)
    for i in range(10):
        budget.throttled(float(i), None)
    assert budget.current_rate_per_s == 1.0
    rates = []
    for second in range(1, 61):
        budget.succeeded(9.0 + second)
        rates.append(budget.current_rate_per_s)
    steps = [b - a for a, b in itertools.pairwise(rates)]
    assert all(0 <= step <= 20.0 / 30.0 + 1e-9 for step in steps)
    assert rates[0] == pytest.approx(1.0 + 20.0 / 30.0)
    assert max(rates) == 20.0
    assert rates.index(20.0) == 28  # (20 - 1) / (20 / 30) = 28.5 s after the last 429


def test_success_during_a_pause_does_not_start_recovery_early() -> None:
    """Recovery is counted from the end of the Retry-After pause, not from the 429."""
    budget = RequestBudget(10.0, 5, recovery_s=30.0)
    budget.throttled(0.0, 60.0)
    budget.succeeded(30.0)  # an answer to a request sent before the 429
    assert budget.current_rate_per_s == 5.0
    budget.succeeded(63.0)
    assert budget.current_rate_per_s == pytest.approx(6.0)


def test_success_at_full_rate_changes_nothing() -> None:
    """Without a 429 the rate stays where it was configured."""
    budget = RequestBudget(10.0, 5)
    budget.succeeded(5.0)
    assert budget.current_rate_per_s == 10.0


def test_reconfigure_keeps_the_throttled_fraction_and_the_pause() -> None:
    """A hot reload scales a throttled rate to the new limit and keeps a Retry-After pause."""
    budget = RequestBudget(10.0, 8)
    budget.throttled(0.0, 20.0)
    budget.reconfigure(40.0, 2)
    assert budget.configured_rate_per_s == 40.0
    assert budget.current_rate_per_s == 20.0
    assert budget.burst == 2
    assert budget.paused_until() == 20.0
    budget.succeeded(20.0 + 15.0)
    assert budget.current_rate_per_s == 40.0


def test_reconfigure_cuts_stored_tokens_to_the_new_burst() -> None:
    """A smaller burst applies at once, so no stored burst exceeds the new limit."""
    budget = RequestBudget(10.0, 8)
    assert budget.tokens(0.0) == 8.0
    budget.reconfigure(10.0, 3)
    count, _ = greedy_count(budget, 0.0, 0.0)
    assert count == 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate_per_s": 0.0, "burst": 1}, "rate_per_s"),
        ({"rate_per_s": math.inf, "burst": 1}, "rate_per_s"),
        ({"rate_per_s": 1.0, "burst": 0}, "burst"),
        ({"rate_per_s": 1.0, "burst": 1, "min_rate_fraction": 0.0}, "min_rate_fraction"),
        ({"rate_per_s": 1.0, "burst": 1, "recovery_s": -1.0}, "recovery_s"),
    ],
)
def test_invalid_settings_are_named(kwargs: dict[str, float], message: str) -> None:
    """Each bad argument is rejected with its own name in the message."""
    with pytest.raises(ValueError, match=message):
        RequestBudget(**kwargs)  # type: ignore[arg-type]
