"""One request budget per API key: a token bucket whose rate backs off on 429 and recovers slowly.

The Pipeline API rate-limits a key as a whole (4 to 50+ requests per second by plan, 429 above),
so every request made with one key (list, status and logs alike) takes a token from the same
bucket. The configured rate is what the operator believes the plan allows; the API has the last
word. A 429 proves the rate is too high right now, so the current rate is halved (multiplicative
decrease, floored so the follower never stalls completely), the bucket is drained so no stored
burst follows the 429, and a Retry-After pauses every request until it has passed. Successes then
raise the rate linearly in time (additive increase), back to the configured rate over about
`recovery_s`: AIMD, the scheme that lets TCP senders find a shared limit without oscillating.

Pure: no clock of its own, `now` (monotonic seconds) is an argument of every call, so the tests
drive it with plain numbers and never sleep.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Final

DEFAULT_REQUESTS_PER_S: Final = 10.0
"""The budget of a key when none is configured (and no fixed interval asks for more)."""


@dataclass(frozen=True, slots=True)
class BudgetSettings:
    """A key's request budget: `budget.*` in the configuration, per source in `[[sources]]`."""

    requests_per_s: float | None = None
    """Requests per second for everything the key sends; None: `DEFAULT_REQUESTS_PER_S`,
    raised with a fixed interval (see `resolved`)."""
    burst: int = 20

    @property
    def rate_per_s(self) -> float:
        """The rate to use: the configured one, or `DEFAULT_REQUESTS_PER_S`."""
        return DEFAULT_REQUESTS_PER_S if self.requests_per_s is None else self.requests_per_s

    def resolved(self, interval_s: float | None, pipelines: int) -> BudgetSettings:
        """These settings with the rate filled in: when none is configured, the default, raised
        with a fixed interval to what polling `pipelines` at that interval needs (plus a quarter
        for retries), so an explicit interval is kept; 429s still slow it down if the API allows
        less."""
        if self.requests_per_s is not None:
            return self
        rate = DEFAULT_REQUESTS_PER_S
        if interval_s is not None:
            rate = max(rate, 1.25 * pipelines / interval_s)
        return dataclasses.replace(self, requests_per_s=rate)


_EPSILON: Final = 1e-9
"""Slack for float rounding: `available_at` computes a time at which `take` must succeed."""


def _check_rate(rate_per_s: float, burst: int) -> None:
    if not (math.isfinite(rate_per_s) and rate_per_s > 0):
        raise ValueError(f"rate_per_s must be a positive number, got {rate_per_s!r}")
    if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
        raise ValueError(f"burst must be an integer of at least 1, got {burst!r}")


class RequestBudget:
    """A token bucket shared by every request of one API key, with AIMD on the rate.

    `available_at(now)` says when the next request may start; the caller waits until then and
    calls `take(now)`. After each answer it calls `throttled()` (429) or `succeeded()` (anything
    the server did not reject for rate: a 5xx or 404 still means the request was admitted).
    """

    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        *,
        min_rate_fraction: float = 0.05,
        recovery_s: float = 30.0,
    ) -> None:
        _check_rate(rate_per_s, burst)
        if not 0 < min_rate_fraction <= 1:
            raise ValueError(f"min_rate_fraction must be in (0, 1], got {min_rate_fraction!r}")
        if not (math.isfinite(recovery_s) and recovery_s > 0):
            raise ValueError(f"recovery_s must be a positive number, got {recovery_s!r}")
        self._configured = float(rate_per_s)
        self._burst = burst
        self._min_fraction = min_rate_fraction
        self._recovery_s = recovery_s
        self._rate = float(rate_per_s)
        # Tokens held at time `_stamp`; a fresh budget holds a full burst from whenever it is
        # first asked (None), so a follower that starts late does not start with less.
        self._tokens = float(burst)
        self._stamp: float | None = None
        self._paused_until = -math.inf
        self._recovering_since: float | None = None  # None while at the configured rate
        self._last_decrease = -math.inf

    @property
    def configured_rate_per_s(self) -> float:
        """The rate the operator configured: the ceiling that recovery climbs back to."""
        return self._configured

    @property
    def current_rate_per_s(self) -> float:
        """The rate tokens are refilled at now, lowered by 429s and recovering after them."""
        return self._rate

    @property
    def burst(self) -> int:
        """The most tokens the bucket holds: requests that may start at once after a quiet spell."""
        return self._burst

    def paused_until(self) -> float:
        """The end of the current Retry-After pause (-inf when none was asked for)."""
        return self._paused_until

    def tokens(self, now: float) -> float:
        """Tokens available at `now` (fractional; a request needs one), for diagnostics."""
        if now < self._paused_until:
            return 0.0
        return self._tokens_at(now)

    def available_at(self, now: float) -> float:
        """The earliest time >= `now` at which one token can be taken (after any pause)."""
        start = max(now, self._paused_until)
        tokens = self._tokens_at(start)
        if tokens >= 1.0 - _EPSILON:
            return start
        return start + (1.0 - tokens) / self._rate

    def take(self, now: float) -> None:
        """Spend one token at `now`; ValueError if none is available (check `available_at`)."""
        ready = self.available_at(now)
        if ready > now + _EPSILON:
            raise ValueError(
                f"no request token at t={now:.3f}: the next one is available at t={ready:.3f}"
            )
        self._settle(now)
        self._tokens = max(0.0, self._tokens - 1.0)

    def throttled(
        self, now: float, retry_after_s: float | None, *, sent_at: float | None = None
    ) -> None:
        """A 429: halve the rate (down to the floor), drain the bucket, honour Retry-After.

        Several requests in flight together usually get their 429s together; they are one
        overload, not several. Pass `sent_at` (when the throttled request started): a 429 for a
        request sent before the last decrease does not halve the rate again, though it still
        drains the bucket and extends the pause.
        """
        self._settle(now)
        if sent_at is None or sent_at >= self._last_decrease:
            floor = self._min_fraction * self._configured
            self._rate = max(floor, self._rate * 0.5)
            self._last_decrease = now
        if retry_after_s is not None and retry_after_s > 0:
            self._paused_until = max(self._paused_until, now + retry_after_s)
        resume = max(now, self._paused_until)
        # Empty at the moment requests may resume: the first one follows 1/rate later, so a
        # Retry-After is never answered by a burst.
        self._tokens = 0.0
        self._stamp = resume
        self._recovering_since = resume

    def succeeded(self, now: float) -> None:
        """A request was admitted: raise the rate by configured/recovery_s per second since the
        last change, never above the configured rate.

        The climb is linear in time, not per success, so its pace does not depend on how many
        pipelines happen to be polled; it is only applied when an admitted request confirms it.
        """
        if self._recovering_since is None:
            return
        self._settle(now)
        elapsed = max(0.0, now - self._recovering_since)
        self._rate = min(
            self._configured, self._rate + self._configured * elapsed / self._recovery_s
        )
        if self._rate >= self._configured:
            self._recovering_since = None
        else:  # a success that arrives during a Retry-After pause does not move its end
            self._recovering_since = max(now, self._recovering_since)

    def reconfigure(self, rate_per_s: float, burst: int) -> None:
        """Hot reload: new limits, same throttling state.

        A rate lowered by 429s stays lowered by the same factor relative to the new configured
        rate (the API's verdict on the old rate says nothing better about the new one), a pause
        is kept, and stored tokens are cut to the new burst.
        """
        _check_rate(rate_per_s, burst)
        fraction = self._rate / self._configured
        self._configured = float(rate_per_s)
        self._rate = max(self._min_fraction * self._configured, fraction * self._configured)
        self._burst = burst
        self._tokens = min(self._tokens, float(burst))
        if self._rate >= self._configured:
            self._recovering_since = None

    # --- internals ---------------------------------------------------------------------------

    def _tokens_at(self, when: float) -> float:
        """Tokens at `when` if nothing is taken before: refilled at the current rate since
        `_stamp`, capped at the burst."""
        if self._stamp is None or when <= self._stamp:
            return self._tokens
        return min(float(self._burst), self._tokens + self._rate * (when - self._stamp))

    def _settle(self, now: float) -> None:
        """Bring the stored tokens up to `now` at the current rate (before the rate changes)."""
        self._tokens = self._tokens_at(now)
        if self._stamp is None or now > self._stamp:
            self._stamp = now
