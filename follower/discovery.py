"""Which pipelines to follow when the key may see more than the ones named in the config.

With no explicit pipelines (or `discover = true`) the follower follows every pipeline the list
endpoint shows, filtered by name and project globs and by the user's intent (`running`,
`paused`), re-listed on an interval; explicitly named pipelines are always followed.

The list's pagination fields are undocumented, so `list_all` stops on whichever sign of the end it
sees first: `has_more == false`, an empty page, `total_count` distinct ids collected, or a page
that brings no id not seen before (an API that ignores `page_number` would otherwise be asked for
the same page until the cap). A page shorter than `page_size` is NOT taken as the last: the
server may cap the page size below what was asked. Reaching `max_pages` without any of these
raises `ListingTruncated`, because treating a partial listing as complete would stop following
the pipelines on the pages not read.

Pure except `list_all`, which awaits the client's `list_page` passed in (a fake in tests).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase

from follower.errors import FollowerError
from follower.model import PipelineInfo, PipelinePage

ListPage = Callable[[int, int], Awaitable[PipelinePage]]
"""`(page_number, page_size) -> page`, e.g. the bound method `PipelineApi.list_page`."""


class ListingTruncated(FollowerError):
    """The page cap was reached before the listing ended; `items` holds what was read.

    Safe to start following the new pipelines in `items`; not safe to stop following any.
    """

    def __init__(self, items: list[PipelineInfo], pages: int) -> None:
        self.items = items
        self.pages = pages
        super().__init__(
            f"the pipeline list did not end within {pages} pages ({len(items)} pipelines read)"
        )


@dataclass(frozen=True, slots=True)
class Selection:
    """Filters on listed pipelines; an empty tuple does not filter.

    `names` and `projects` are case-sensitive globs (`fnmatch`: `*`, `?`, `[abc]`); a pipeline
    without a project matches no project glob. `statuses` are the user's intents (`running`,
    `paused`), compared case-insensitively. A pipeline must pass every non-empty filter.
    """

    names: tuple[str, ...] = ()
    projects: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()

    def matches(self, info: PipelineInfo) -> bool:
        """True when `info` passes every filter."""
        if self.names and not any(fnmatchcase(info.name, glob) for glob in self.names):
            return False
        if self.projects and (
            info.project is None
            or not any(fnmatchcase(info.project, glob) for glob in self.projects)
        ):
            return False
        if self.statuses:
            wanted = {status.casefold() for status in self.statuses}
            if info.status is None or info.status.casefold() not in wanted:
                return False
        return True


async def list_all(
    list_page: ListPage, page_size: int = 100, max_pages: int = 1000
) -> list[PipelineInfo]:
    """Every pipeline the key can see, once each (the first occurrence), in listing order.

    Errors from `list_page` propagate: a failed listing must not look like an empty one.
    """
    if page_size < 1 or max_pages < 1:
        raise ValueError(f"page_size and max_pages must be positive, got {page_size}, {max_pages}")
    found: dict[str, PipelineInfo] = {}
    for page_number in range(1, max_pages + 1):
        page = await list_page(page_number, page_size)
        if not page.items:
            return list(found.values())
        before = len(found)
        for info in page.items:
            found.setdefault(info.id, info)
        if (
            page.has_more is False
            or (page.total_count is not None and len(found) >= page.total_count)
            or len(found) == before  # nothing new: the same page again
        ):
            return list(found.values())
    raise ListingTruncated(list(found.values()), max_pages)


def followed_ids(
    explicit: Iterable[str], listed: Iterable[PipelineInfo], selection: Selection
) -> list[str]:
    """The explicit ids (never filtered), then the listed ones the selection matches; no repeats.

    Apply sharding to the result, so replicas sharing one config split explicit ids too.
    """
    ids = dict.fromkeys(explicit)
    ids.update(dict.fromkeys(info.id for info in listed if selection.matches(info)))
    return list(ids)


def changes(followed: Iterable[str], listed: Iterable[str]) -> tuple[list[str], list[str]]:
    """(added, removed): ids to start following and ids to stop following, each sorted."""
    before, after = set(followed), set(listed)
    return sorted(after - before), sorted(before - after)
