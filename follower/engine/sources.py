"""A source: one ServiceKey on one API, with its own selection of pipelines and its own budget.

GoldRush rate-limits per key, and a key sees only its own group's pipelines. A process that
follows several groups therefore keeps one `Source` per key: each spends its own request budget,
lists its own pipelines, and pauses alone when its key is refused (401) while the others go on.
The dispatcher (dispatcher.py) asks each source when it may send next; a pipeline is polled through
the source that follows it.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

import anyio

from follower.api.client import TailSource
from follower.clock import Clock
from follower.core.budget import BudgetSettings, RequestBudget
from follower.engine.settings import DiscoverySettings

DEFAULT_SOURCE: Final = "default"
"""The name of the source made of the top-level key, pipelines and discovery settings."""


@dataclass(frozen=True, slots=True)
class SourceSettings:
    """What one source follows and how fast it may ask; a configuration reload can swap it."""

    name: str = DEFAULT_SOURCE
    pipelines: tuple[str, ...] = ()
    """Pipelines listed explicitly (before sharding)."""
    budget: BudgetSettings = field(default_factory=BudgetSettings)
    discovery: DiscoverySettings = field(default_factory=DiscoverySettings)


async def take_token(
    budget: RequestBudget,
    clock: Clock,
    *,
    not_before: float = -math.inf,
    sleep: Callable[[float], Awaitable[None]] | None = None,
) -> None:
    """Wait until `budget` has a token (and `not_before` has come), then spend it: how a request
    the dispatcher does not send (a list page, a check) keeps to its key's budget. `sleep`
    replaces `clock.sleep` (the discovery loop's sleeps count as idle for tests)."""
    wait = clock.sleep if sleep is None else sleep
    while (at := max(not_before, budget.available_at(clock.monotonic()))) > clock.monotonic():
        await wait(at - clock.monotonic())
    budget.take(clock.monotonic())


class Source:
    """A source's live state: its client, its budget, and whether its key is accepted."""

    def __init__(self, api: TailSource, settings: SourceSettings | None = None) -> None:
        self.api = api
        self.settings = settings or SourceSettings()
        self.budget = RequestBudget(self.settings.budget.rate_per_s, self.settings.budget.burst)
        self.explicit: tuple[str, ...] = ()
        """This replica's share of `settings.pipelines` (set by the roster)."""
        self.in_flight = 0
        self.key_rejected = False
        self.probe_at = 0.0
        self.probe_attempts = 0
        self.scale = 1.0
        """How much faster than planned this source's pipelines may be polled (spare budget)."""
        self.discovery_scope: anyio.CancelScope | None = None

    @property
    def name(self) -> str:
        return self.settings.name

    def reconfigure(self, settings: SourceSettings) -> None:
        """Use reloaded settings; the budget keeps what it learnt from 429s."""
        self.settings = settings
        self.budget.reconfigure(settings.budget.rate_per_s, settings.budget.burst)

    def ready_at(self, now: float) -> float | None:
        """When this source may send its next request (`now` or later).

        None while its key is refused and the one probe request is still out: nothing can go
        before that probe answers, and its answer wakes the dispatcher.
        """
        if self.key_rejected:
            if self.in_flight:
                return None
            return max(self.probe_at, self.budget.available_at(now))
        return self.budget.available_at(now)

    def reject_key(self, probe_at: float) -> bool:
        """A 401: send nothing but one probe at `probe_at`. True when the key was accepted until
        now (the caller reports it once, loudly)."""
        self.probe_attempts += 1
        self.probe_at = probe_at
        newly = not self.key_rejected
        self.key_rejected = True
        return newly

    def accept_key(self) -> bool:
        """A request succeeded: the key works. True when it was refused until now."""
        was = self.key_rejected
        self.key_rejected = False
        self.probe_attempts = 0
        return was
