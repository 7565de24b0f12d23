"""The poll loop's settings: one frozen value the service assembles from a Config's sections.

Kept apart from the runner so the knobs (and how fixed-interval mode overrides the adaptive
schedule) read in one place, and a reload can swap them whole. The sections it holds are the
configuration's own (`ScheduleSettings`, `BackoffPolicy`, `ShardSettings`, ...); the defaults of
its top-level knobs are the follower's, which `follower.config.Config` refers to.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

from follower.api import listing
from follower.api.settings import HttpSettings
from follower.core.backoff import BackoffPolicy
from follower.core.lifecycle import LifecycleSettings
from follower.core.schedule import ScheduleSettings
from follower.core.selection import Selection
from follower.core.sharding import ShardSettings
from follower.core.tracker import LineSettings, Since
from follower.engine.checkpoint import JournalMark, Saved

Checkpointer = Callable[[dict[str, Saved], JournalMark | None], Awaitable[bool]]
"""Saves a snapshot of every followed pipeline, which holds the journal's records up to the mark
(see follower.engine.checkpoint and follower.engine.journal); False: failed."""

_HTTP: Final = HttpSettings()


@dataclass(frozen=True, slots=True)
class DiscoverySettings:
    """Following every pipeline the key can see (filtered), re-listed on an interval:
    `discovery.*` in the configuration (a source's own `enabled` and `selection`)."""

    enabled: bool = False
    interval_s: float = 300.0
    selection: Selection = field(default_factory=Selection)
    page_size: int = listing.PAGE_SIZE
    max_pages: int = listing.MAX_PAGES
    max_pipelines: int = listing.MAX_PIPELINES


@dataclass(frozen=True, slots=True)
class RunSettings:
    """The loop's knobs, assembled from a `Config`'s sections by the service (or set directly
    by tests)."""

    interval_s: float | None = None
    """Fixed interval between polls of one pipeline; None (the default, as for `follower run`
    without --interval): adaptive planning."""
    since: Since = "start"
    max_in_flight: int = _HTTP.max_in_flight
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    shutdown_timeout_s: float = 5.0
    checkpoint_interval_s: float = 5.0
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    lifecycle: LifecycleSettings | None = None
    shard: ShardSettings = field(default_factory=ShardSettings)
    budget_report_s: float = 60.0
    lines: LineSettings = field(default_factory=LineSettings)

    def schedule_settings(self) -> ScheduleSettings:
        if self.interval_s is None:
            return self.schedule
        return ScheduleSettings(
            floor_s=min(self.schedule.floor_s, self.interval_s),
            ceiling_s=max(self.schedule.ceiling_s, self.interval_s),
            fixed_interval_s=self.interval_s,
        )

    def lifecycle_settings(self) -> LifecycleSettings:
        if self.lifecycle is not None:
            return self.lifecycle
        floor = self.interval_s if self.interval_s is not None else self.schedule.floor_s
        return LifecycleSettings(backoff=self.backoff, backoff_floor_s=floor)
