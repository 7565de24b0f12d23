"""Sinks write events somewhere; they decide nothing about what to write.

A sink is any `Sink`; it may also be `Reopenable` (SIGHUP reopens it, for an external logrotate)
or `Stallable` (a write may wait forever on a reader, which the CLI must not wait for at exit).
The CLI uses these Protocols, never a sink class, so a new sink needs no CLI code: only
`follower.engine.service.build_sink` knows which classes exist.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from follower.core.events import Event


class Sink(Protocol):
    """Where events go. `write` returns once the batch is handed to the OS (flushed).

    A poll's batch is an `EventBatch` (follower/core/batch.py): iterating it gives every event,
    a run of one pod's lines built as it is read; a sink that can write a run from its lines
    reads its `parts` instead, as the JSON Lines encoder does.
    """

    async def write(self, events: Sequence[Event]) -> None:
        """Write a batch of events, in order, and flush it."""
        ...

    async def aclose(self) -> None:
        """Flush and release whatever the sink holds."""
        ...


@runtime_checkable
class Reopenable(Protocol):
    """A sink holding files that an external rotation may rename away."""

    def reopen(self) -> None:
        """Open every output afresh by its name at the next write (SIGHUP)."""
        ...


@runtime_checkable
class Stallable(Protocol):
    """A sink whose writes can wait on a reader that stopped reading (a pipe, a terminal)."""

    @property
    def stalled(self) -> bool:
        """A write abandoned by cancellation still waits on the reader."""
        ...


def reopen(sink: Sink) -> bool:
    """Reopen `sink` if it is `Reopenable`; whether it was."""
    if isinstance(sink, Reopenable):
        sink.reopen()
        return True
    return False


def stalled(sink: Sink) -> bool:
    """Whether `sink` has a write still waiting on its reader (only a `Stallable` can)."""
    return isinstance(sink, Stallable) and sink.stalled
