"""Listing every pipeline the key can see, page by page.

The list's pagination fields are undocumented, so `list_all` stops on whichever sign of the end it
sees first: `has_more == false`, an empty page, `total_count` distinct ids collected, or a page
that brings no id not seen before (an API that ignores `page_number` would otherwise be asked for
the same page until the cap). A page shorter than `page_size` is NOT taken as the last: the
server may cap the page size below what was asked. Reaching `max_pages` or `max_items` without
any of these raises `ListingTruncated`, because treating a partial listing as complete would stop
following the pipelines on the pages not read. The maximum `page_size` is not documented: a 400
or 422 is taken as a refusal of it, and the listing is tried with a smaller one, then without.

Pure except `list_all`, which awaits the client's `list_page` passed in (a fake in tests). Which
of the listed pipelines to follow is follower/core/selection.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

from follower.core.model import PipelineInfo, PipelinePage
from follower.errors import FollowerError, UnexpectedStatusError

ListPage = Callable[[int, int | None], Awaitable[PipelinePage]]
"""`(page_number, page_size) -> page`, e.g. the bound method `PipelineApi.list_page`; a None
page size asks for the API's default."""


PAGE_SIZE: Final = 100
"""Pipelines asked for per list page (`discovery.page_size`)."""
MAX_PAGES: Final = 100
"""Pages one listing reads at most (`discovery.max_pages`)."""
MAX_PIPELINES: Final = 10_000
"""Pipelines one listing reads at most (`discovery.max_pipelines`)."""
PAGE_SIZE_REFUSED: Final = frozenset({400, 422})
"""Statuses by which the list endpoint may refuse a `page_size` (its maximum is not documented)."""

PageFound = Callable[[list[PipelineInfo]], Awaitable[None]]
"""Called with the new pipelines of each page as it is read, so they are followed at once."""


class ListingTruncated(FollowerError):
    """A cap was reached before the listing ended; `items` holds what was read.

    Safe to start following the new pipelines in `items`; not safe to stop following any.
    """

    def __init__(self, items: list[PipelineInfo], pages: int, cap: str) -> None:
        self.items = items
        self.pages = pages
        self.cap = cap
        super().__init__(
            f"the pipeline list did not end within {cap} ({pages} pages, {len(items)} "
            "pipelines read)"
        )

    def describe(self) -> str:
        """The error and the keys that raise the caps (when it ends `tail` or `pipelines`)."""
        return (
            f"{self}; raise discovery.max_pages or discovery.max_pipelines in the config file "
            "if the key really sees that many pipelines"
        )


class ListingUnsure(ListingTruncated):
    """The listing ended on a page with nothing new (empty, or only ids already read) while the
    list said there was more (`has_more`, `total_count`): the list may have shifted between
    pages, so the listing may miss pipelines. Safe to follow `items`, not to drop any."""

    def __init__(self, items: list[PipelineInfo], pages: int) -> None:
        super().__init__(items, pages, "")
        self.args = (
            f"page {pages} of the pipeline list brought nothing new while the list said there "
            f"were more ({len(items)} pipelines read): it may have changed between pages",
        )

    def describe(self) -> str:
        return f"{self}; listing again later reads it whole"


def page_sizes(page_size: int) -> list[int | None]:
    """The page sizes to try in turn when the API refuses one: the configured size, a quarter of
    it, then none (the API's default)."""
    smaller = page_size // 4
    return [page_size, *([smaller] if smaller >= 1 else []), None]


async def list_all(
    list_page: ListPage,
    page_size: int = PAGE_SIZE,
    max_pages: int = MAX_PAGES,
    *,
    max_items: int = MAX_PIPELINES,
    on_page: PageFound | None = None,
    whole: bool = False,
) -> list[PipelineInfo]:
    """Every pipeline the key can see, once each (the first occurrence), in listing order.

    At most `max_pages` requests and `max_items` pipelines: past either, `ListingTruncated`
    (an API whose `has_more` never turns false must not be listed for ever, nor followed
    100,000 times). A 400 or 422 answer is taken as a refused `page_size`: the listing starts
    again with the next of `page_sizes`. `on_page` gets each page's new pipelines as they come.
    Other errors from `list_page` propagate: a failed listing must not look like an empty one.
    With `whole` (discovery, which drops what a listing leaves out), a page with nothing new
    while the list said there was more raises `ListingUnsure` instead of ending the listing.
    """
    if page_size < 1 or max_pages < 1 or max_items < 1:
        raise ValueError(
            f"page_size, max_pages and max_items must be positive, got {page_size}, "
            f"{max_pages}, {max_items}"
        )
    sizes = page_sizes(page_size)
    found: dict[str, PipelineInfo] = {}
    page_number, requests = 1, 0
    while requests < max_pages:
        requests += 1
        try:
            page = await list_page(page_number, sizes[0])
        except UnexpectedStatusError as error:
            if error.status not in PAGE_SIZE_REFUSED or len(sizes) == 1:
                raise
            sizes.pop(0)
            page_number = 1
            continue
        fresh: dict[str, PipelineInfo] = {}
        for info in page.items:
            if info.id not in found:
                fresh.setdefault(info.id, info)
        if not fresh:  # an empty page, or the same page again: the end, or an unsure one
            if whole and (
                page.has_more is True
                or (page.total_count is not None and len(found) < page.total_count)
            ):
                raise ListingUnsure(list(found.values()), requests)
            return list(found.values())
        new = list(fresh.values())[: max_items - len(found)]
        found.update((info.id, info) for info in new)
        if on_page is not None:
            await on_page(new)
        if len(new) == len(fresh) and (
            page.has_more is False
            or (page.total_count is not None and len(found) >= page.total_count)
        ):
            return list(found.values())
        if len(found) >= max_items:
            raise ListingTruncated(list(found.values()), requests, f"{max_items} pipelines")
        page_number += 1
    raise ListingTruncated(list(found.values()), requests, f"{max_pages} pages")
