"""Fakes shared by the tests (and by users who test code built on the follower).

`FakeClock` is time that moves only when told to: `advance()` wakes the sleepers whose deadline has
passed, and `wait_for_sleepers(n)` lets a test wait until the system under test is idle again,
so timing tests run instantly and never sleep "to let things settle".
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

import anyio

from follower.core.events import Event

if TYPE_CHECKING:
    from follower.engine.runner import Runner


class FakeClock:
    """A `Clock` driven by the test (trio's MockClock is the model)."""

    def __init__(self, start: float = 1000.0, wall_offset: float = 1_790_000_000.0) -> None:
        self._now = start
        self._wall_offset = wall_offset
        self._sleepers: list[tuple[float, int, anyio.Event]] = []
        self._order = itertools.count()
        self._changed = anyio.Event()

    def monotonic(self) -> float:
        return self._now

    def wall(self) -> float:
        return self._wall_offset + self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await anyio.lowlevel.checkpoint()
            return
        entry = (self._now + seconds, next(self._order), anyio.Event())
        heapq.heappush(self._sleepers, entry)
        self._notify()
        try:
            await entry[2].wait()
        finally:
            if entry in self._sleepers:  # cancelled before it was woken
                self._sleepers.remove(entry)
                heapq.heapify(self._sleepers)
                self._notify()

    @property
    def sleepers(self) -> int:
        """How many tasks are asleep on this clock right now."""
        return len(self._sleepers)

    def next_deadline(self) -> float | None:
        """When the earliest sleeper wakes, or None when nobody sleeps."""
        return self._sleepers[0][0] if self._sleepers else None

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper whose deadline is now due."""
        if seconds < 0:
            raise ValueError("time cannot go backwards")
        self.advance_to(self._now + seconds)

    def advance_to(self, moment: float) -> None:
        """Set the time to `moment` exactly (never backwards) and wake whoever is due.

        Exact, unlike `advance(deadline - now)`, whose float sum can stop one ulp short of a
        sleeper's deadline and leave it asleep.
        """
        self._now = max(self._now, moment)
        while self._sleepers and self._sleepers[0][0] <= self._now:
            heapq.heappop(self._sleepers)[2].set()
        self._notify()

    @property
    def change(self) -> anyio.Event:
        """An event set at the next change in who sleeps on this clock.

        Take it before checking a condition and wait on it after, so no change is missed between.
        """
        return self._changed

    async def wait_for_sleepers(self, count: int) -> None:
        """Return once at least `count` tasks sleep on this clock (the system is idle)."""
        while len(self._sleepers) < count:
            changed = self._changed
            await changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()


class MemorySink:
    """A `Sink` that keeps every event in a list, in write order."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.closed = False

    async def write(self, events: Sequence[Event]) -> None:
        self.events.extend(events)

    async def aclose(self) -> None:
        self.closed = True

    def of_kind(self, kind: str) -> list[Event]:
        """The events of one kind (`log`, `gap`, ...), in order."""
        return [event for event in self.events if event.kind == kind]


async def first_of(*waiters: Callable[[], Awaitable[object]]) -> None:
    """Return as soon as any of the awaitable factories completes; cancel the others."""
    async with anyio.create_task_group() as group:

        async def run(waiter: Callable[[], Awaitable[object]]) -> None:
            await waiter()
            group.cancel_scope.cancel()

        for waiter in waiters:
            group.start_soon(run, waiter)


async def settle(runner: Runner, clock: FakeClock) -> None:
    """Wait until `runner` is idle: its dispatcher parked, and what is in flight asleep on `clock`.

    Requests in flight that are not asleep on the clock are doing real I/O (a loopback server),
    so the runner is busy; those asleep on it (a slow simulated answer) wait for time to pass.
    """
    while True:
        changes = (clock.change, runner.change)  # taken first: no change is missed
        if runner.parked and runner.in_flight <= clock.sleepers - runner.clock_sleepers:
            return
        await first_of(*(change.wait for change in changes))


async def advance_to(runner: Runner, clock: FakeClock, until: float) -> None:
    """Let fake time run to `until` event by event, settling the runner before each step."""
    while True:
        await settle(runner, clock)
        deadline = clock.next_deadline()
        if deadline is None or deadline > until:
            clock.advance_to(until)
            return
        clock.advance_to(deadline)
