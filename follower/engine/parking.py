"""How the dispatcher waits (until a moment, or until something changes) and what is in flight.

The dispatcher parks when it can start nothing: until the next due time or token, or until a
request finishes or the followed set changes. A wake-up that comes while it is not parked is kept,
so no change is ever missed. `parked`, `sleepers` and `change` let a test that drives a fake clock
know when the follower is idle (parked, and every request asleep on the clock) without sleeping.
"""

from __future__ import annotations

import anyio

from follower.clock import Clock


class Parking:
    """The dispatcher's waiting place, the work in flight, and the runner's tasks asleep on the
    clock: together, what tells that the runner is idle."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._scope: anyio.CancelScope | None = None
        self._woken: anyio.Event | None = None
        self._pending = False
        self._changed: anyio.Event | None = None
        self.parked = False
        """True while the dispatcher waits with nothing it could start (tests wait for this)."""
        self.sleepers = 0
        """Tasks of the runner asleep on the clock (tests tell them from the simulator's)."""
        self.in_flight = 0
        """Requests (and listings) at work: sent and not yet answered and applied."""

    async def park(self, until: float | None) -> None:
        """Wait until `until` (monotonic; None: no deadline) or until `wake()`.

        `parked` turns true only once the wait is registered (the clock sleep included), so a
        test that sees it true and every in-flight request asleep knows the runner is idle.
        Without a deadline (the common wait of a saturated follower: every worker busy) it
        waits on an event, which a wake sets more cheaply than it would cancel a scope.
        """
        if self._pending:  # something changed since the dispatcher last looked
            self._pending = False
            return
        self.parked = True
        try:
            if until is None:
                self._woken = woken = anyio.Event()
                self.signal()
                await woken.wait()
            else:
                with anyio.CancelScope() as scope:
                    self._scope = scope
                    await self.sleep(until - self._clock.monotonic())
        finally:
            self._scope = self._woken = None
            self.parked = False

    def wake(self) -> None:
        """Wake the dispatcher: something it waits for may have changed."""
        self.parked = False
        if self._scope is not None:
            self._scope.cancel()
        elif self._woken is not None:
            self._woken.set()
        else:
            self._pending = True
        self.signal()

    def begin(self) -> None:
        """Work started outside the dispatcher (a listing): counted in flight."""
        self.in_flight += 1
        self.signal()

    def end(self) -> None:
        """Work in flight finished: the dispatcher may start something else."""
        self.in_flight -= 1
        self.wake()

    async def idle_sleep(self, seconds: float) -> None:
        """Sleep on the clock in the middle of work (a listing waiting for a token), not counted
        in flight meanwhile: waiting for a token is not work in flight."""
        self.in_flight -= 1
        try:
            await self.sleep(seconds)
        finally:
            self.in_flight += 1
            self.signal()

    def signal(self) -> None:
        """Tell a watching test that `parked`, the work in flight or `sleepers` changed."""
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    @property
    def change(self) -> anyio.Event:
        """Set at the next `signal()` (made only when asked for: nobody watches in production)."""
        if self._changed is None:
            self._changed = anyio.Event()
        return self._changed

    async def sleep(self, seconds: float) -> None:
        """Sleep on the clock, counted in `sleepers`."""
        self.sleepers += 1
        self.signal()
        try:
            await self._clock.sleep(seconds)
        finally:
            self.sleepers -= 1
            self.signal()
