"""The discovery loops: each source that discovers re-lists what its key sees, on an interval.

What to follow is decided by pure functions: follower/api/listing.py (pagination),
follower/core/selection.py (filters, changes) and follower/core/sharding.py. This module runs
the listing requests (each waits for its source's token like every other request, and pages
after the first take at most half the rate) and applies the result to the followed set through
the public methods of follower/engine/roster.py: the pipelines of each page are followed as soon
as it is read, the ones no longer listed are dropped once a listing has read to its end.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Final

import anyio
import anyio.abc

from follower.api import listing
from follower.clock import Clock
from follower.core import selection, sharding
from follower.core.model import PipelineInfo, PipelinePage
from follower.engine.keys import KeyWatch
from follower.engine.parking import Parking
from follower.engine.roster import Roster
from follower.engine.settings import DiscoverySettings
from follower.engine.sources import Source, take_token
from follower.errors import ApiError
from follower.ops.metrics import Metrics

LIST_SHARE: Final = 0.5
"""The share of a source's request rate that the pages of a listing may take, after the first."""
LISTINGS_TO_DROP: Final = 2
"""Whole listings in a row a pipeline must be missing from before it is dropped: a listing that
leaves a pipeline out once (an empty page for a moment, a list that shifted) is a hiccup of the
API, not a deletion, and dropping it would stop its polls (a deleted pipeline also answers 404,
which drops it)."""


class Discoverer:
    """Starts, restarts and stops one listing loop per discovering source."""

    def __init__(
        self,
        roster: Roster,
        *,
        parking: Parking,
        clock: Clock,
        metrics: Metrics,
        log: Any,
        keys: KeyWatch,
    ) -> None:
        self._roster = roster
        self._parking = parking
        self._clock = clock
        self._metrics = metrics
        self._log = log
        self._keys = keys
        self._paced: dict[Source, float] = {}
        """When each source's next list page may go (see `_list_page`)."""
        self._unlisted: dict[Source, dict[str, int]] = {}
        """Per source, its pipelines missing from its last whole listings, and from how many."""

    def restart(self, sources: Sequence[Source], group: anyio.abc.TaskGroup | None) -> None:
        """(Re)start each source's loop with its settings, or stop it when disabled."""
        for source in sources:
            if source.discovery_scope is not None:
                source.discovery_scope.cancel()
                source.discovery_scope = None
            if source.settings.discovery.enabled and group is not None:
                source.discovery_scope = anyio.CancelScope()
                group.start_soon(self._every, source, source.discovery_scope)

    async def _every(self, source: Source, scope: anyio.CancelScope) -> None:
        settings = source.settings.discovery
        with scope:
            while True:
                await self.discover(source, settings)
                await self._parking.sleep(settings.interval_s)

    async def discover(self, source: Source, settings: DiscoverySettings) -> None:
        """List the pipelines the source's key sees; follow the new ones (unless another source
        follows them already), drop its own that are no longer listed.

        Counts as one request in flight while it works (not while it waits for a token), like a
        poll, so the dispatcher's bound and a test's idea of "idle" both include it.
        """
        self._parking.begin()
        try:
            await self._list_and_apply(source, settings)
        finally:
            self._parking.end()

    async def _list_and_apply(self, source: Source, settings: DiscoverySettings) -> None:
        added: list[str] = []

        async def page(number: int, size: int | None) -> PipelinePage:
            return await self._list_page(source, number, size)

        async def follow_new(items: list[PipelineInfo]) -> None:
            """Follow a page's new pipelines at once: a long listing must not hold back the
            first log polls."""
            names = {item.id: item.name for item in items}
            listed = selection.followed_ids((), items, settings.selection)
            for pipeline_id in sharding.select(listed, *self._roster.shard()):
                if not self._roster.is_followed(pipeline_id):  # nor through another source
                    await self._roster.add(pipeline_id, names.get(pipeline_id), source)
                    added.append(pipeline_id)
            self._parking.wake()

        try:
            items = await listing.list_all(
                page, settings.page_size, settings.max_pages,
                max_items=settings.max_pipelines, on_page=follow_new, whole=True,
            )
            truncated = False
        except listing.ListingUnsure as unsure:
            items, truncated = unsure.items, True
            self._log.warning(
                "discovery_unsure", **self._keys.labels(source), pages=unsure.pages,
                pipelines=len(items), reason=str(unsure),
                hint="the pipelines read are followed, none is dropped until a listing is whole",
            )
        except listing.ListingTruncated as partial:
            items, truncated = partial.items, True
            self._log.warning(
                "discovery_truncated", **self._keys.labels(source), pages=partial.pages,
                pipelines=len(items), max_pages=settings.max_pages,
                max_pipelines=settings.max_pipelines,
                hint=f"the list did not end within {partial.cap}; the pipelines read are "
                "followed, none is dropped; raise discovery.max_pages or max_pipelines if "
                "the key really sees more",
            )
        except ApiError as error:
            self._log.warning("discovery_failed", **self._keys.labels(source),
                              error=error.kind, message=str(error))
            if not added:
                return
            items, truncated = [], True
        listed = selection.followed_ids(source.explicit, items, settings.selection)
        mine = sharding.select(listed, *self._roster.shard())
        _, removed = selection.changes(self._roster.owned_by(source), mine)
        gone = [] if truncated else self._missing(source, removed)
        for pipeline_id in gone:
            await self._roster.drop(pipeline_id, "not_listed")
        if added or gone:
            self._log.info("pipelines_changed", **self._keys.labels(source), added=len(added),
                           removed=len(gone))
            self._parking.wake()

    def _missing(self, source: Source, unlisted: Sequence[str]) -> list[str]:
        """Count a whole listing's absences; the pipelines missing from `LISTINGS_TO_DROP` in a
        row, to drop."""
        before = self._unlisted.get(source, {})
        counts = {pipeline_id: before.get(pipeline_id, 0) + 1 for pipeline_id in unlisted}
        gone = [p for p, count in counts.items() if count >= LISTINGS_TO_DROP]
        self._unlisted[source] = {p: c for p, c in counts.items() if c < LISTINGS_TO_DROP}
        return gone

    async def _list_page(
        self, source: Source, page_number: int, page_size: int | None
    ) -> PipelinePage:
        """A list request that waits for its source's token like every other request.

        Pages after the first go at most at `LIST_SHARE` of the source's budget rate, so a long
        (or endless) listing always leaves log polls the rest of the tokens.
        """
        budget, clock = source.budget, self._clock
        paced = -math.inf if page_number == 1 else self._paced.get(source, -math.inf)
        await take_token(budget, clock, not_before=paced, sleep=self._parking.idle_sleep)
        self._paced[source] = clock.monotonic() + 1.0 / (LIST_SHARE * budget.current_rate_per_s)
        self._metrics.sent()
        sent_at = clock.monotonic()
        try:
            page = await source.api.list_page(page_number, page_size)
        except ApiError as error:
            self._metrics.polled("list", error.kind, clock.monotonic() - sent_at)
            raise
        self._metrics.polled("list", "ok", clock.monotonic() - sent_at)
        return page
