"""Discovery: every pagination stop rule, duplicates, filters, and the followed-set changes."""

from __future__ import annotations

import pytest

from follower.api.listing import ListingTruncated, ListingUnsure, list_all, page_sizes
from follower.core.model import PipelineInfo, PipelinePage
from follower.core.selection import Selection, changes, followed_ids
from follower.errors import ServerError, UnexpectedStatusError


def info(
    n: int, name: str | None = None, project: str | None = "core", status: str | None = "running"
) -> PipelineInfo:
    return PipelineInfo(f"pipe_{n:03d}", name or f"pipeline-{n}", project, status)


class FakeList:
    """Serves scripted pages by number (an empty page past the end) and records each request."""

    def __init__(self, pages: list[PipelinePage]) -> None:
        self.pages = pages
        self.requests: list[tuple[int, int | None]] = []

    async def __call__(self, page_number: int, page_size: int | None) -> PipelinePage:
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


async def test_item_cap_raises_with_exactly_the_cap_read() -> None:
    """A listing that passes max_items stops mid-page with exactly max_items pipelines."""
    source = FakeList([page(range(n * 4, n * 4 + 4), True) for n in range(10)])
    with pytest.raises(ListingTruncated, match="within 6 pipelines") as caught:
        await list_all(source, page_size=4, max_items=6)
    assert [i.id for i in caught.value.items] == [info(n).id for n in range(6)]
    assert len(source.requests) == 2


async def test_a_listing_that_ends_exactly_at_the_cap_is_complete() -> None:
    """has_more false on the page that reaches max_items: complete, not truncated."""
    source = FakeList([page(range(4), True), page(range(4, 8), False)])
    assert len(await list_all(source, page_size=4, max_items=8)) == 8


async def test_pages_are_handed_over_as_they_come() -> None:
    """on_page gets each page's new pipelines, before the next page is asked for."""
    source = FakeList([page([1, 2], True), page([2, 3], True), page([3], True)])
    seen: list[tuple[list[str], int]] = []

    async def on_page(items: list[PipelineInfo]) -> None:
        seen.append(([i.id for i in items], len(source.requests)))

    await list_all(source, page_size=2, on_page=on_page)
    assert seen == [(["pipe_001", "pipe_002"], 1), (["pipe_003"], 2)]


class Refusing(FakeList):
    """Refuses any page_size above `largest` with `status` (None: accepts none at all)."""

    def __init__(self, pages: list[PipelinePage], status: int, largest: int | None) -> None:
        super().__init__(pages)
        self.status, self.largest = status, largest

    async def __call__(self, page_number: int, page_size: int | None) -> PipelinePage:
        if page_size is not None and (self.largest is None or page_size > self.largest):
            self.requests.append((page_number, page_size))
            raise UnexpectedStatusError("page_size", status=self.status)
        return await super().__call__(page_number, page_size)


@pytest.mark.parametrize(("status", "largest", "sizes"), [
    (422, 30, [100, 25]), (400, 10, [100, 25, None]), (400, None, [100, 25, None])])
async def test_a_refused_page_size_is_tried_smaller_then_left_out(
    status: int, largest: int | None, sizes: list[int | None]
) -> None:
    """400/422: a quarter of the page size, then none; the listing starts again at page 1."""
    source = Refusing([page(range(3), False)], status, largest)
    assert len(await list_all(source, page_size=100)) == 3
    assert [size for _, size in source.requests] == sizes
    assert {number for number, _ in source.requests} == {1}


async def test_other_statuses_and_a_refusal_without_page_size_propagate() -> None:
    """Any other status is an error of the listing; so is a 400 with no page size left to drop."""
    with pytest.raises(UnexpectedStatusError):
        await list_all(Refusing([], 418, None), page_size=100)

    async def always_400(page_number: int, page_size: int | None) -> PipelinePage:
        raise UnexpectedStatusError("bad request", status=400)

    with pytest.raises(UnexpectedStatusError):
        await list_all(always_400)
    assert page_sizes(1) == [1, None]


@pytest.mark.parametrize(
    "pages",
    [
        # page 2 repeats page 1 (the list shifted between the two requests) and says more
        [page(range(2), True, 5), page(range(2), True, 5)],
        # an empty page while total_count says 5
        [page(range(2), None, 5), page([], None, 5)],
        # an empty page that says has_more
        [page(range(2), True), page([], True)],
    ],
)
async def test_a_listing_for_dropping_is_unsure_when_it_ends_on_nothing_new_but_more(
    pages: list[PipelinePage],
) -> None:
    """Discovery drops what a listing leaves out, so a page with nothing new while the list says
    there is more makes the listing unsure (nothing may be dropped); other callers take it as
    the end, as before."""
    with pytest.raises(ListingUnsure) as caught:
        await list_all(FakeList(pages), page_size=2, whole=True)
    assert [i.id for i in caught.value.items] == ["pipe_000", "pipe_001"]
    assert len(await list_all(FakeList(pages), page_size=2)) == 2
