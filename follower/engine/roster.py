"""The followed pipelines: which are followed, through which source, and their state.

The roster builds a pipeline's tracker, plan and lifecycle when it is followed (from its saved
state after a restart), announces `pipeline_added` / `pipeline_removed`, and writes the partial
snapshots of open lines that fall due. The discovery loops (follower/engine/discovery_loop.py)
change it through `add`, `drop`, `owned_by` and `is_followed`; the dispatcher reads it and hears
of every pipeline followed or dropped (`watch`).

A dropped pipeline's state is kept (the last `DROPPED_KEPT`): one that comes back (listed again,
configured again) goes on where it stopped, in the same epochs, instead of writing its tail
again under new ids. Its pods are then recorded in the journal (follower/engine/journal.py), as
no checkpoint holds them any more.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Awaitable, Callable, ItemsView, Iterator, Mapping
from typing import Any, Final, Protocol

import anyio

from follower.clock import Clock
from follower.core import sharding
from follower.core.events import Event, PipelineAddedEvent, PipelineRemovedEvent
from follower.core.lifecycle import Lifecycle
from follower.core.schedule import PipelinePlan
from follower.core.tail_errors import TailErrorMatcher
from follower.core.tracker import PipelineTracker
from follower.engine.checkpoint import Saved
from follower.engine.journal import Journal
from follower.engine.poller import Followed
from follower.engine.settings import RunSettings
from follower.engine.sources import Source

__all__ = ["DROPPED_KEPT", "Roster", "RosterWatcher"]

DROPPED_KEPT: Final = 1_000
"""Dropped pipelines whose state is kept for their return (about 4 KiB each with two pods)."""


class RosterWatcher(Protocol):
    """Hears of every pipeline followed or dropped, as it happens."""

    def followed(self, followed: Followed) -> None: ...

    def dropped(self, followed: Followed) -> None: ...


class Roster:
    """The followed pipelines, keyed by id, in the order they were followed."""

    def __init__(
        self,
        *,
        clock: Clock,
        settings: RunSettings,
        matcher: TailErrorMatcher,
        commit: anyio.Lock,
        write: Callable[[list[Event]], Awaitable[None]],
        log: Any,
        restored: Mapping[str, Saved] | None = None,
        reset_state: bool = False,
        journal: Journal | None = None,
    ) -> None:
        """`write` writes events to the sink; `commit` is held while it does, so a checkpoint
        never covers an unwritten event."""
        self._clock = clock
        self._settings = settings
        self._lifecycle = settings.lifecycle_settings()
        self._matcher = matcher
        self._commit = commit
        self._write = write
        self._log = log
        self._restored = dict(restored or {})
        self._dropped: OrderedDict[str, Saved] = OrderedDict()
        self._journal = journal
        self._reset_state = reset_state
        self._followed: dict[str, Followed] = {}
        self._watchers: list[RosterWatcher] = []

    # --- reading -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._followed)

    def __iter__(self) -> Iterator[Followed]:
        return iter(self._followed.values())

    def items(self) -> ItemsView[str, Followed]:
        """(id, state) of every followed pipeline (a live view: do not hold it across awaits)."""
        return self._followed.items()

    def ids(self) -> tuple[str, ...]:
        """The pipelines followed right now."""
        return tuple(self._followed)

    def get(self, pipeline_id: str) -> Followed | None:
        """The pipeline's state, or None when it is not followed."""
        return self._followed.get(pipeline_id)

    def is_followed(self, pipeline_id: str) -> bool:
        """Followed through any source."""
        return pipeline_id in self._followed

    def owned_by(self, source: Source) -> list[str]:
        """The pipelines followed through `source`."""
        return [p for p, f in self._followed.items() if f.source is source]

    def shard(self) -> tuple[int, int]:
        """This replica's shard index and the number of shards."""
        return self._settings.shard.index, self._settings.shard.count

    def snapshot(self) -> dict[str, Saved]:
        """Every followed pipeline's pods as of the last written events, and what its plan
        learnt (take it under the commit lock)."""
        return {
            pid: Saved(f.tracker.snapshot(), f.plan.learned(), f.tracker.window)
            for pid, f in self._followed.items()
        }

    # --- changing ------------------------------------------------------------------------------

    def watch(self, watcher: RosterWatcher) -> None:
        """Tell `watcher` of every pipeline followed or dropped from now on."""
        self._watchers.append(watcher)

    def select(self, source: Source) -> None:
        """Set this replica's share of the source's explicit pipelines."""
        settings = self._settings
        source.explicit = tuple(
            sharding.select(source.settings.pipelines, settings.shard.index, settings.shard.count)
        )

    def follow(self, pipeline_id: str, source: Source) -> None:
        """Follow a pipeline silently (at start: the configured ones)."""
        saved = self._restored.pop(pipeline_id, None) or self._returned(pipeline_id)
        since, lines = self._settings.since, self._settings.lines
        if saved is not None:
            tracker = PipelineTracker.restored(
                pipeline_id, since, self._matcher, saved.pods, lines, window=saved.window
            )
        else:
            tracker = PipelineTracker(
                pipeline_id, since, self._matcher, reset_state=self._reset_state, lines=lines
            )
        added = self._clock.monotonic()  # bounds the wait for a first look
        if saved is not None and saved.plan is not None:
            plan = PipelinePlan.from_learned(saved.plan, added)
        else:
            plan = PipelinePlan(waiting_since=added)
        followed = Followed(tracker, plan, Lifecycle(self._lifecycle), source)
        self._followed[pipeline_id] = followed
        for watcher in self._watchers:
            watcher.followed(followed)

    def _returned(self, pipeline_id: str) -> Saved | None:
        """The state the pipeline had when it was dropped, recorded in the journal first (no
        checkpoint holds it any more); None when there is none, or it cannot be recorded (then
        the pipeline starts afresh, in new epochs: lines may repeat, ids never name two)."""
        saved = self._dropped.pop(pipeline_id, None)
        if saved is None or self._journal is None:
            return saved
        records = []
        for pod, state in saved.pods.items():
            record = state.copy()
            record.replay_from = state.seq + 1
            records.append((pod, record))
        try:
            self._journal.append(pipeline_id, records)
        except OSError as exc:
            self._log.error("journal_failed", pipeline_id=pipeline_id,
                            error=exc.strerror or str(exc))
            return None
        return saved

    async def add(self, pipeline_id: str, name: str | None, source: Source) -> None:
        """Follow a pipeline through `source`, announced by `pipeline_added`."""
        async with self._commit:
            self.follow(pipeline_id, source)
            await self._write([PipelineAddedEvent(self._clock.wall(), pipeline_id, name)])

    async def drop(self, pipeline_id: str, reason: str) -> None:
        """Stop following a pipeline and free its state, announced by `pipeline_removed`."""
        async with self._commit:
            followed = self._followed.pop(pipeline_id, None)
            if followed is None:
                return
            self._dropped[pipeline_id] = Saved(
                followed.tracker.snapshot(), followed.plan.learned(), followed.tracker.window
            )
            while len(self._dropped) > DROPPED_KEPT:
                self._dropped.popitem(last=False)
            for watcher in self._watchers:
                watcher.dropped(followed)
            event = PipelineRemovedEvent(self._clock.wall(), pipeline_id, reason)
            await self._write([event])
        if reason == "not_found":
            self._log.error(
                "pipeline_not_found",
                pipeline_id=pipeline_id,
                hint="the API answered 404: check the pipeline id and the base URL; "
                "this pipeline is no longer polled",
            )

    def reconfigure(self, settings: RunSettings, matcher: TailErrorMatcher) -> None:
        """New settings for the pipelines followed from now on and those followed already."""
        self._settings = settings
        self._lifecycle = settings.lifecycle_settings()
        self._matcher = matcher
        for followed in self._followed.values():
            followed.tracker.matcher = matcher
            followed.tracker.lines = settings.lines
            followed.life.settings = self._lifecycle

    def unwanted(self) -> list[str]:
        """Pipelines no source lists any more (nor discovers)."""
        return [
            p for p, f in self._followed.items()
            if not f.source.settings.discovery.enabled and p not in f.source.explicit
        ]

    async def flush_partials(self, *, everything: bool = False) -> float:
        """Write the partial snapshots of open lines that are due (every one, at shutdown);
        returns when the next falls due (wall clock; inf: none)."""
        wall = self._clock.wall()
        due = math.inf
        async with self._commit:
            for followed in list(self._followed.values()):
                tracker = followed.tracker
                if everything or tracker.partial_due <= wall:
                    before = tracker.memento()
                    events = tracker.flush_partials(wall, everything=everything)
                    try:
                        await self._write(events)
                    except BaseException:
                        tracker.restore(before)  # not written: a checkpoint must not say it was
                        raise
                due = min(due, tracker.partial_due)
        return due
