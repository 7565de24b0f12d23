"""Table tests of the retry policy: growth, cap, floor, jitter range and Retry-After."""

from __future__ import annotations

import random

import pytest

from follower.core.backoff import BackoffPolicy


@pytest.mark.parametrize(
    ("attempt", "bound"),
    [(1, 1.0), (2, 2.0), (3, 4.0), (6, 32.0), (7, 60.0), (100, 60.0), (10_000, 60.0), (0, 1.0)],
)
def test_bound_grows_exponentially_up_to_the_cap(attempt: int, bound: float) -> None:
    """The jitter bound doubles per attempt and stops at max_s, even for huge attempt numbers."""
    assert BackoffPolicy(initial_s=1.0, max_s=60.0).bound(attempt) == bound


def test_delay_is_drawn_between_floor_and_bound() -> None:
    """Full jitter: every delay lies in [floor, bound] and the draws are spread, not constant."""
    policy = BackoffPolicy(initial_s=1.0, max_s=60.0)
    rng = random.Random(7)
    draws = [policy.delay(5, rng, floor_s=2.0) for _ in range(500)]
    assert all(2.0 <= d <= 16.0 for d in draws)
    assert max(draws) - min(draws) > 10.0


def test_floor_above_bound_is_clamped_to_bound() -> None:
    """A floor larger than the bound cannot push a delay past the bound."""
    policy = BackoffPolicy(initial_s=1.0, max_s=60.0)
    assert policy.delay(1, random.Random(1), floor_s=30.0) == 1.0


def test_retry_after_is_a_minimum() -> None:
    """A server's Retry-After is never undercut by a shorter jittered delay."""
    policy = BackoffPolicy(initial_s=1.0, max_s=60.0)
    assert policy.delay(1, random.Random(3), retry_after_s=42.0) == 42.0


def test_same_seed_same_delays() -> None:
    """With the RNG injected, a seed reproduces the exact sequence of delays."""
    policy = BackoffPolicy()
    first = [policy.delay(a, random.Random(11)) for a in range(1, 8)]
    second = [policy.delay(a, random.Random(11)) for a in range(1, 8)]
    assert first == second
