"""Saving the followed pipelines' state: at an interval, and once more when the run ends.

The snapshot is taken under the commit lock, between two polls' writes, so a checkpoint never
covers an event that was not written; the file itself is follower/engine/checkpoint.py's.
"""

from __future__ import annotations

from typing import Any

import anyio
import structlog

from follower.clock import Clock
from follower.engine.journal import Journal
from follower.engine.parking import Parking
from follower.engine.roster import Roster
from follower.engine.settings import Checkpointer

__all__ = ["StateSaver"]


class StateSaver:
    """Takes snapshots of the roster and hands them to the checkpointer."""

    def __init__(
        self,
        roster: Roster,
        *,
        commit: anyio.Lock,
        clock: Clock,
        parking: Parking,
        checkpointer: Checkpointer | None,
        journal: Journal | None = None,
        log: Any = None,
    ) -> None:
        self._roster = roster
        self._commit = commit
        self._clock = clock
        self._parking = parking
        self._checkpointer = checkpointer
        self._journal = journal
        self._log = log or structlog.get_logger("follower")
        self._saved_at: float | None = None

    @property
    def enabled(self) -> bool:
        """False without a checkpointer (no state file)."""
        return self._checkpointer is not None

    async def save(self) -> bool:
        """Save a snapshot taken between two commits (no-op without a checkpointer); False when
        it could not be saved."""
        if self._checkpointer is None:
            return True
        journal = self._journal
        async with self._commit:
            state = self._roster.snapshot()
            mark = None if journal is None else journal.mark()
        if not await self._checkpointer(state, mark):
            return False
        self._saved_at = self._clock.monotonic()
        if journal is not None and mark is not None:
            async with self._commit:  # no record is appended while the file is rewritten
                try:
                    journal.compact(mark)
                except OSError as exc:  # the records stay: the next checkpoint drops them
                    self._log.warning("journal_compaction_failed", error=exc.strerror or str(exc))
        return True

    async def every(self, interval_s: float) -> None:
        """Save every `interval_s` seconds, until cancelled."""
        while True:
            await self._parking.sleep(interval_s)
            await self.save()

    def age(self) -> float:
        """Seconds since the last saved checkpoint (NaN before the first)."""
        if self._saved_at is None:
            return float("nan")
        return self._clock.monotonic() - self._saved_at
