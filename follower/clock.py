"""The one place that reads time or sleeps.

Everything else receives a `Clock`, so the pure core takes `now` as an argument and tests drive
time with `follower.testing.FakeClock` instead of sleeping.
"""

from __future__ import annotations

import time
from typing import Protocol

import anyio


class Clock(Protocol):
    """Monotonic time for intervals, wall time for event timestamps, and sleeping."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards; only differences mean anything."""
        ...

    def wall(self) -> float:
        """Seconds since the Unix epoch (UTC), for timestamps that people and shippers read."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Suspend the caller for `seconds` of this clock's time (cancellable)."""
        ...


class SystemClock:
    """The real clock of the process."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(max(0.0, seconds))
