"""Discovery: every pagination stop rule, duplicates, filters, and the followed-set changes."""

from __future__ import annotations

import pytest

from follower.discovery import ListingTruncated, Selection, changes, followed_ids, list_all
from follower.errors import ServerError
from follower.model import PipelineInfo, PipelinePage


def info(
    n: int, name: str | None = None, project: str | None = "core", status: str | None = "running"
) -> PipelineInfo:
    return PipelineInfo(f"pipe_{n:03d}", name or f"pipeline-{n}", project, status)


class FakeList:
    """Serves scripted pages by number (an empty page past the end) and records each request."""

    def __init__(self, pages: list[PipelinePage]) -> None:
        self.pages = pages
        self.requests: list[tuple[int, int]] = []

    async def __call__(self, page_number: int, page_size: int) -> PipelinePage:
        self.requests.append((page_number, page_size))
        if page_number > len(self.pages):
            return PipelinePage((), None, None)
        return self.pages[page_number - 1]


def page(
    numbers: range | list[int], has_more: bool | None = None, total: int | None = None
) -> PipelinePage:
    return PipelinePage(tuple(info(n) for n in numbers), has_more, total)


@pytest.mark.parametrize(
    ("pages", "requested", "found"),
    [
        # has_more == false ends it, even though more pages would answer
        ([page(range(3), True), page(range(3, 6), False), page(range(6, 9))], 2, 6),
        # an empty page ends it (no pagination fields at all)
        ([page(range(3)), page(range(3, 6))], 3, 6),
        # total_count reached ends it before the empty page
        ([page(range(3), None, 5), page(range(3, 5), None, 5)], 2, 5),
        # whichever comes first: has_more false on page 1 despite total_count 10
        ([page(range(3), False, 10), page(range(3, 6))], 1, 3),
        # a short page is not the last: the server may cap page_size
        ([page(range(2), True), page(range(2, 4), True), page(range(4, 5), False)], 3, 5),
        # the very first page is empty
        ([], 1, 0),
    ],
)
async def test_stop_rules(pages: list[PipelinePage], requested: int, found: int) -> None:
    """Listing stops on has_more false, an empty page or total_count, whichever comes first."""
    source = FakeList(pages)
    listed = await list_all(source, page_size=3)
    assert [i.id for i in listed] == [f"pipe_{n:03d}" for n in range(found)]
    assert source.requests == [(n, 3) for n in range(1, requested + 1)]


async def test_repeated_page_is_deduplicated_and_ends_the_listing() -> None:
    """Overlapping pages count each id once; a page with nothing new is taken as the end."""
    source = FakeList(
        [page(range(3), True), page(range(2, 5), True), page(range(2, 5), True), page(range(9))]
    )
    listed = await list_all(source, page_size=3)
    assert [i.id for i in listed] == [f"pipe_{n:03d}" for n in range(5)]
    assert len(source.requests) == 3


async def test_api_that_ignores_page_number_is_asked_twice_not_max_pages_times() -> None:
    """An API that serves page 1 for every page number costs two requests, not a thousand."""
    first = page(range(3), True)
    source = FakeList([first] * 1000)
    assert len(await list_all(source)) == 3
    assert len(source.requests) == 2


async def test_first_occurrence_wins() -> None:
    """A pipeline listed twice keeps the fields of its first listing."""
    source = FakeList(
        [
            PipelinePage((info(1, "old"), info(2)), True, None),
            PipelinePage((info(1, "new"), info(3)), False, None),
        ]
    )
    assert [i.name for i in await list_all(source)] == ["old", "pipeline-2", "pipeline-3"]


async def test_page_cap_raises_with_what_was_read() -> None:
    """A listing that does not end within max_pages is reported, never taken as complete."""
    source = FakeList([page(range(n * 2, n * 2 + 2), True) for n in range(10)])
    with pytest.raises(ListingTruncated, match="within 4 pages") as caught:
        await list_all(source, page_size=2, max_pages=4)
    assert len(caught.value.items) == 8
    assert len(source.requests) == 4


async def test_errors_propagate() -> None:
    """A failed page fails the listing: an error must never look like "no pipelines"."""

    async def failing(page_number: int, page_size: int) -> PipelinePage:
        raise ServerError("boom", status=502)

    with pytest.raises(ServerError):
        await list_all(failing)


async def test_invalid_arguments() -> None:
    """Zero or negative page sizes and caps are refused before any request."""
    source = FakeList([])
    with pytest.raises(ValueError, match="page_size, max_pages and max_items"):
        await list_all(source, page_size=0)
    assert source.requests == []


@pytest.mark.parametrize(
    ("selection", "pipeline", "matches"),
    [
        (Selection(), info(1, project=None, status=None), True),
        (Selection(names=("eth-*",)), info(1, "eth-blocks"), True),
        (Selection(names=("eth-*",)), info(1, "ETH-blocks"), False),  # case-sensitive
        (Selection(names=("eth-*", "base-?")), info(1, "base-1"), True),
        (Selection(names=("eth-[ab]*",)), info(1, "eth-c"), False),
        (Selection(projects=("core",)), info(1, project="core"), True),
        (Selection(projects=("c*",)), info(1, project=None), False),
        (Selection(projects=("*",)), info(1, project=None), False),
        (Selection(statuses=("running",)), info(1, status="RUNNING"), True),
        (Selection(statuses=("running",)), info(1, status="paused"), False),
        (Selection(statuses=("running", "paused")), info(1, status="paused"), True),
        (Selection(statuses=("running",)), info(1, status=None), False),
        (Selection(("eth-*",), ("core",), ("running",)), info(1, "eth-x"), True),
        (Selection(("eth-*",), ("other",), ("running",)), info(1, "eth-x"), False),
    ],
)
def test_selection(selection: Selection, pipeline: PipelineInfo, matches: bool) -> None:
    """A pipeline must pass every non-empty filter; empty filters let everything through."""
    assert selection.matches(pipeline) is matches


def test_explicit_and_discovered_are_combined() -> None:
    """Explicit ids come first and unfiltered; discovered ones follow if selected; no repeats."""
    listed = [info(1, "eth-a"), info(2, "sol-b"), info(3, "eth-c")]
    ids = followed_ids(["pipe_009", "pipe_003"], listed, Selection(names=("eth-*",)))
    assert ids == ["pipe_009", "pipe_003", "pipe_001"]


@pytest.mark.parametrize(
    ("followed", "listed", "added", "removed"),
    [
        ([], [], [], []),
        ([], ["pipe_b", "pipe_a"], ["pipe_a", "pipe_b"], []),
        (["pipe_b", "pipe_a"], [], [], ["pipe_a", "pipe_b"]),
        (["pipe_a", "pipe_c"], ["pipe_c", "pipe_b", "pipe_b"], ["pipe_b"], ["pipe_a"]),
        (["pipe_a"], ["pipe_a"], [], []),
    ],
)
def test_changes(
    followed: list[str], listed: list[str], added: list[str], removed: list[str]
) -> None:
    """changes() says which ids to start and stop following, sorted for stable logs."""
    assert changes(followed, listed) == (added, removed)
