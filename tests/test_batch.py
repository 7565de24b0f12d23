"""A poll's `EventBatch`: a `LogRun` stands for exactly the log events built one by one.

The tracker hands out runs instead of an event per line (follower/core/batch.py); every reader
that iterates, indexes, compares or counts a batch must see what it saw when the batch was a
list of events, and the encoder must write a run's lines as it wrote those events
(tests/test_log_lines.py holds the bytes to the general path's).
"""

from __future__ import annotations

from collections import Counter

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from follower.core.batch import EventBatch, LogRun, count_kinds, pipeline_ids
from follower.core.enrich import EnrichSettings
from follower.core.events import Event, GapEvent, LogEvent, PodAddedEvent
from follower.core.tracker import LineSettings
from follower.sinks.encoding import PIECE_EVENTS, encode, line_limit, pieces

LINES = st.lists(st.text(max_size=40) | st.text(min_size=30, max_size=120), max_size=30)


@settings(max_examples=300, deadline=None)
@given(
    LINES,
    st.integers(64, 400),
    st.booleans(),
    st.integers(1, 2**40),
    st.none() | st.just("kq3vx7amdf"),
)
def test_a_batch_is_the_events_built_one_by_one(
    lines: list[str], max_bytes: int, enriched: bool, first_seq: int, epoch: str | None
) -> None:
    """Whatever the lines and settings, the batch's events, their number and their kinds'
    count are those of `LineSettings.event` line by line (cut lines, enrichment included)."""
    line_settings = LineSettings(
        max_bytes=max_bytes, enrich=EnrichSettings(parse_json=True, level=True, line_ts=True)
        if enriched else EnrichSettings(),
    )
    batch = line_settings.events(1.8e9, "pipe_a", "pod-a", first_seq, lines, epoch=epoch)
    one_by_one = [
        line_settings.event(1.8e9, "pipe_a", "pod-a", seq, line, epoch=epoch)
        for seq, line in enumerate(lines, start=first_seq)
    ]
    assert list(batch) == one_by_one
    assert len(batch) == len(one_by_one)
    assert count_kinds(batch) == Counter(event.kind for event in one_by_one)
    assert encode(batch, max_bytes) == encode(one_by_one, max_bytes)


def test_short_plain_lines_are_one_run_and_a_long_line_is_not_hidden_in_one() -> None:
    """The hot path: plain lines that fit even as 4-byte characters are one `LogRun`; with a
    longer line among them each line is its own event, so the long one is cut and says so."""
    line_settings = LineSettings(max_bytes=100)
    short = line_settings.events(1.0, "pipe_a", "p", 1, ["a", "b" * 25], epoch="e")
    assert [type(part) for part in short.parts] == [LogRun]
    mixed = line_settings.events(1.0, "pipe_a", "p", 1, ["a", "b" * 26, "c" * 500], epoch="e")
    assert [type(part) for part in mixed.parts] == [LogEvent, LogEvent, LogEvent]
    assert [event.truncated for event in mixed] == [False, False, True]  # type: ignore[union-attr]
    assert line_settings.events(1.0, "pipe_a", "p", 1, [], epoch="e") == []


def test_a_batch_reads_as_the_list_it_stands_for() -> None:
    """Equality with lists (both ways), indexing, slicing, `+` on either side, truth, no hash."""
    gap = GapEvent(1.0, "pipe_a", "p", 0, "no_overlap", "e")
    added = PodAddedEvent(1.0, "pipe_a", "p")
    run = LogRun(1.0, "pipe_a", "p", 5, ["x", "y"], "e")
    batch = EventBatch([gap, run])
    events: list[Event] = [
        gap, LogEvent(1.0, "pipe_a", "p", 5, "x", epoch="e"),
        LogEvent(1.0, "pipe_a", "p", 6, "y", epoch="e"),
    ]
    assert batch == events and events == batch and batch == EventBatch(events)
    assert batch != tuple(events)
    assert batch != events[:2] and batch != "not events"
    assert batch[1] == events[1] and batch[-1] == events[-1] and batch[1:] == events[1:]
    # `+` itself is tested here (the poller adds lists to a batch)
    assert batch + [added] == [*events, added]  # noqa: RUF005
    assert [added] + batch == [added, *events]  # noqa: RUF005
    assert batch + [] is batch  # noqa: RUF005
    assert bool(batch) and not EventBatch() and len(EventBatch([run, run])) == 4
    more = EventBatch([*batch.parts, added])
    assert count_kinds(more) == Counter({"log": 2, "gap": 1, "pod_added": 1})
    assert list(pipeline_ids(more)) == [event.pipeline_id for event in more] == ["pipe_a"] * 4
    assert list(pipeline_ids(EventBatch([LogRun(1.0, "pipe_b", "p", 1, ["x"], None), gap]))) == [
        "pipe_b", "pipe_a"]
    with pytest.raises(TypeError):
        hash(batch)
    assert repr(batch).startswith("EventBatch([GapEvent(")


def test_a_run_longer_than_a_piece_is_cut_at_the_same_lines() -> None:
    """A run of more lines than a piece holds is written in the same pieces as its events one
    by one: a piece ends inside the run at the same line."""
    lines = [f"line {n}" for n in range(2 * PIECE_EVENTS + 7)]
    batch = EventBatch([PodAddedEvent(1.0, "pipe_a", "p"),
                        LogRun(1.0, "pipe_a", "p", 1, lines, "e")])
    got = list(pieces(batch, 16_384))
    assert got == list(pieces(list(batch), 16_384))
    assert [piece.count(b"\n") for piece in got] == [PIECE_EVENTS, PIECE_EVENTS, 8]


def test_a_run_of_long_lines_is_cut_at_the_same_lines_as_its_events() -> None:
    """A run whose text is too long to encode at once (lines of control characters, 6 bytes
    each in JSON) is encoded in slices, and still written in the same pieces as its events."""
    lines = ["\x01" * 10_000, "short", "\x01" * 9_999] * 20
    batch = EventBatch([LogRun(1.0, "pipe_a", "p", 1, lines, "e")])
    got = list(pieces(batch, 65_536))
    assert got == list(pieces(list(batch), 65_536))
    assert len(got) > 1 and sum(piece.count(b"\n") for piece in got) == len(lines)


def test_a_run_whose_lines_exceed_the_limit_is_fitted_line_by_line() -> None:
    """A pod name so long that even a short line's event is over the limit: each of the run's
    lines is fitted (id hashed, name cut, `truncated`), as its event alone would be."""
    pod = "p" * 3000
    count = PIECE_EVENTS + 3  # the run's second slice is fitted from its own first seq
    batch = EventBatch([LogRun(1.0, "pipe_a", pod, 1, ["a", "b"] * count, "e")])
    written = encode(batch, 1024)
    assert written == encode(list(batch), 1024)
    lines = written.splitlines()
    assert len(lines) == 2 * count
    assert all(len(line) + 1 <= line_limit(1024) for line in lines)
    assert all(orjson.loads(line)["truncated"] is True for line in lines)
    assert [orjson.loads(line)["seq"] for line in lines] == list(range(1, 2 * count + 1))
