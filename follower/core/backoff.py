"""Retry delays: exponential growth, full jitter, a cap.

Full jitter (a uniform draw between zero and the exponential bound) spreads the retries of many
pipelines that failed together, so they do not return in lockstep. The RNG is injected so tests pin
every draw.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """Delay before retry number `attempt` (1 = first retry) is drawn from [floor, bound].

    bound = min(max_s, initial_s * multiplier ** (attempt - 1)); the floor keeps a retry from
    arriving sooner than a regular poll would.
    """

    initial_s: float = 1.0
    max_s: float = 60.0
    multiplier: float = 2.0

    def bound(self, attempt: int) -> float:
        """The largest delay retry `attempt` may wait."""
        exponent = min(max(attempt - 1, 0), 64)  # 2**64 already exceeds any cap; avoid overflow
        return min(self.max_s, self.initial_s * self.multiplier**exponent)

    def delay(
        self,
        attempt: int,
        rng: random.Random,
        *,
        floor_s: float = 0.0,
        retry_after_s: float | None = None,
    ) -> float:
        """The delay before retry `attempt`; a server's Retry-After is honoured as a minimum."""
        bound = self.bound(attempt)
        floor = min(floor_s, bound)
        drawn = rng.uniform(floor, bound) if bound > floor else bound
        if retry_after_s is not None:
            return max(drawn, retry_after_s)
        return drawn
