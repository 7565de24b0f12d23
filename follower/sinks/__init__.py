"""Sinks write events somewhere; they decide nothing about what to write."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from follower.core.events import Event


class Sink(Protocol):
    """Where events go. `write` returns once the batch is handed to the OS (flushed)."""

    async def write(self, events: Sequence[Event]) -> None:
        """Write a batch of events, in order, and flush it."""
        ...

    async def aclose(self) -> None:
        """Flush and release whatever the sink holds."""
        ...
