"""The encoder's fast path for plain log events writes exactly the bytes of the general path.

`follower.sinks.encoding` writes a plain log event from a template whose head is encoded once per
run of one pod's lines; everything else goes through `to_wire()` and `fit`. These properties hold
the two together: for any events (hostile pipeline ids and pod names, odd unicode, lone
surrogates, epochs or none, partial, truncated, enriched, lines at and over the limit, huge
`seq`), the pieces written are those of the encoder as it was before the fast path, and a failure
(a lone surrogate orjson refuses) happens at the same event.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator, Sequence

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from follower.core.batch import EventBatch, Part
from follower.core.enrich import EnrichSettings
from follower.core.events import Event, GapEvent, LogEvent, PodAddedEvent
from follower.core.tracker import LineSettings
from follower.sinks.encoding import PIECE_BYTES, PIECE_EVENTS, encode_line, line_limit, pieces
from follower.sinks.fitting import fit

# --- the encoder as it was: orjson over to_wire(), fit() when over the limit -------------------


def reference_line(event: Event, limit: int) -> bytes:
    """One event as the general path encodes it."""
    line = orjson.dumps(event.to_wire(), option=orjson.OPT_APPEND_NEWLINE)
    return line if len(line) <= limit else fit(event.to_wire(), limit)


def reference_pieces(events: Sequence[Event], max_line_bytes: int) -> Iterator[bytes]:
    """`pieces` before the template: the same piece boundaries, every line from `to_wire()`."""
    limit = line_limit(max_line_bytes)
    lines: list[bytes] = []
    size = 0
    for event in events:
        line = reference_line(event, limit)
        lines.append(line)
        size += len(line)
        if len(lines) >= PIECE_EVENTS or size >= PIECE_BYTES:
            yield b"".join(lines)
            lines, size = [], 0
    if lines:
        yield b"".join(lines)


def outcome(produce: Iterator[bytes]) -> tuple[list[bytes], str | None]:
    """What a generator of pieces yields before it stops, and the error it stops with."""
    done: list[bytes] = []
    try:
        for piece in produce:
            done.append(piece)
    except orjson.JSONEncodeError as exc:
        return done, type(exc).__name__
    return done, None


# --- events ------------------------------------------------------------------------------------

ODD = st.sampled_from(
    ['"', "\\", "/", "%", "%2F", "\x00", "\x01", "\x1f", "\x7f", "\n", "\r", "\t", "\u2028",
     "\u2029", "\u00e9", "\ufeff", "\U0001f600", "\ud800", "\udfff", "x", " ", "\u2026"]
)
NAME = st.one_of(
    st.text(st.characters(exclude_categories=("Cs",)), max_size=40),
    st.lists(ODD, max_size=12).map("".join),  # lone surrogates among them
    st.builds(operator.mul, st.sampled_from(["p", '"', "\\", "\x01", "/"]), st.integers(0, 300)),
)
PID = st.one_of(  # short: `fit` never cuts a pipeline id (the model allows only safe ones)
    st.text(st.characters(exclude_categories=("Cs",)), max_size=20),
    st.lists(ODD, max_size=12).map("".join),
)
MESSAGE = st.one_of(
    st.text(st.characters(categories=["Cs", "Cc", "Ll", "Lo", "So", "Zs"]), max_size=50),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=200),
    st.lists(ODD, max_size=30).map("".join),
    st.dictionaries(st.sampled_from(["level", "msg", "ts"]), st.text(max_size=10), max_size=3)
    .map(lambda fields: orjson.dumps(fields, option=orjson.OPT_NON_STR_KEYS).decode()),
    st.builds(operator.mul, st.sampled_from(["x", '"', "\\", "\x01", "\u00e9", "\U0001f600"]),
              st.integers(0, 20_000)),
)
TS = st.one_of(st.floats(0, 4e9), st.integers(0, 4_000_000_000), st.just(1_790_000_000.1234))
SEQ = st.integers(-(2**63), 2**64 - 1)  # orjson's range: a line count never leaves it
EPOCH = st.none() | st.just("kq3vx7amdf") | NAME
LIMIT = st.one_of(st.integers(64, 2_000), st.integers(2_000, 40_000), st.just(16 * 1024))


OPTIONAL = ("truncated", "partial", "level", "line_ts", "fields")


@st.composite
def log_events(draw: st.DrawFn) -> LogEvent:
    """A log event with any of its optional fields set (the template must stand aside for each
    of them, and only take the event with none)."""
    given = draw(st.sets(st.sampled_from(OPTIONAL)))
    return LogEvent(
        draw(TS), draw(PID), draw(NAME), draw(SEQ), draw(MESSAGE),
        truncated="truncated" in given,
        level=draw(st.sampled_from(["info", "error"])) if "level" in given else None,
        line_ts=draw(NAME) if "line_ts" in given else None,
        fields=draw(st.dictionaries(NAME, NAME, max_size=3)) if "fields" in given else None,
        epoch=draw(EPOCH),
        partial="partial" in given,
        digest=draw(st.integers(0, 2**64 - 1)),
    )


EVERYTHING = EnrichSettings(parse_json=True, level=True, line_ts=True)


@st.composite
def runs(draw: st.DrawFn) -> EventBatch:
    """A pod's new lines as the tracker builds them: one `LogRun` when every line is short and
    nothing is enriched, else one event per line sharing one `ts`, pipeline, pod and epoch
    object."""
    settings_ = LineSettings(
        max_bytes=draw(st.integers(64, 20_000)),
        enrich=draw(st.sampled_from([EnrichSettings(), EVERYTHING])),
    )
    lines = draw(st.lists(MESSAGE, max_size=8))
    return settings_.events(
        draw(TS), draw(PID), draw(NAME), draw(st.integers(0, 2**63)), lines, epoch=draw(EPOCH)
    )


@st.composite
def near_the_limit(draw: st.DrawFn, limit: int) -> LogEvent:
    """A plain log event whose line is a few bytes either side of `limit`."""
    pod = draw(st.sampled_from(["p", "pod-a"]))
    base = len(orjson.dumps(LogEvent(1.8e9, "pipe_a", pod, 7, "", epoch="e").to_wire())) + 1
    size = max(0, limit - base + draw(st.integers(-8, 8)))
    char = draw(st.sampled_from(["x", "\u00e9", '"']))
    return LogEvent(1.8e9, "pipe_a", pod, 7, char * (size // len(orjson.dumps(char)[1:-1])),
                    epoch="e")


OTHERS = st.one_of(
    st.builds(GapEvent, TS, PID, NAME, SEQ, st.just("no_overlap"), EPOCH),
    st.builds(PodAddedEvent, TS, PID, NAME),
)


@st.composite
def polls(draw: st.DrawFn) -> tuple[EventBatch, int]:
    """A poll's events as the tracker hands them over: runs, lone log events and other kinds
    mixed, and a line limit."""
    limit = draw(LIMIT)
    drawn = draw(st.lists(
        st.one_of(runs(), st.lists(log_events(), max_size=3), st.lists(OTHERS, max_size=2),
                  st.lists(near_the_limit(line_limit(limit)), max_size=2)),
        max_size=6,
    ))
    parts: list[Part] = []
    for part in drawn:
        parts.extend(part.parts if isinstance(part, EventBatch) else part)
    return EventBatch(parts), limit


# --- the properties ----------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(polls())
def test_pieces_are_the_general_paths_bytes(poll: tuple[EventBatch, int]) -> None:
    """Any poll's pieces are byte for byte those of `orjson.dumps(to_wire())` over its events
    one by one (and `fit` over the limit), with the same boundaries. A poll orjson cannot encode
    fails with the same error, having yielded no piece the general path would not have: a run
    is encoded at once, so a piece ending inside it is not yielded before its failing line."""
    batch, limit = poll
    written, error = outcome(pieces(batch, limit))
    expected, expected_error = outcome(reference_pieces(batch, limit))
    assert error == expected_error
    assert written == (expected if error is None else expected[:len(written)])


@settings(max_examples=400, deadline=None)
@given(st.one_of(log_events(), runs().filter(bool).map(operator.itemgetter(0))), LIMIT)
def test_one_event_is_the_general_paths_line(event: Event, max_line_bytes: int) -> None:
    """`encode_line` (the files sink's, one event at a time) gives the general path's line, or
    the same error."""
    limit = line_limit(max_line_bytes)
    try:
        expected = reference_line(event, limit)
    except orjson.JSONEncodeError:
        with pytest.raises(orjson.JSONEncodeError):
            encode_line(event, max_line_bytes)
        return
    assert encode_line(event, max_line_bytes) == expected


@settings(max_examples=200, deadline=None)
@given(st.data(), LIMIT)
def test_lines_at_the_limit_are_kept_or_fitted_as_before(data: st.DataObject, limit: int) -> None:
    """Plain lines a byte under, at and over the whole-event limit: kept whole while they fit,
    fitted (`truncated`, within the limit) past it, as the general path does."""
    events: list[Event] = data.draw(st.lists(near_the_limit(line_limit(limit)), min_size=1))
    written = b"".join(pieces(events, limit))
    assert written == b"".join(reference_pieces(events, limit))
    assert all(len(line) + 1 <= line_limit(limit) for line in written.splitlines())


def test_a_run_with_equal_but_distinct_values_still_gets_its_own_head() -> None:
    """The run is recognised by identity: events equal in value but built apart, or differing
    only in epoch or `ts`, are each encoded with their own fields."""
    pod_a, pod_b = "pod-" + str(1), "pod-" + str(1)  # equal, distinct objects
    events: list[Event] = [
        LogEvent(1.0, "pipe_a", pod_a, 1, "a", epoch="e1"),
        LogEvent(1.0, "pipe_a", pod_b, 2, "b", epoch="e1"),
        LogEvent(1.0, "pipe_a", pod_b, 3, "c", epoch="e2"),
        LogEvent(2.0, "pipe_a", pod_b, 4, "d", epoch="e2"),
        LogEvent(2.0, "pipe_a", pod_b, 5, "e", epoch=None),
        LogEvent(2.0, "pipe_b", pod_b, 6, "f", epoch=None),
    ]
    assert b"".join(pieces(events, 16_384)) == b"".join(reference_pieces(events, 16_384))


def test_log_events_compare_hash_and_print_as_values() -> None:
    """A log event is a value: equal fields are equal events with one hash (`fields` left out of
    it, as a dict is not hashable), and its repr names every field."""
    one = LogEvent(1.0, "pipe_a", "p", 1, "m", epoch="e", fields={"k": 1})
    same = LogEvent(1.0, "pipe_a", "p", 1, "m", epoch="e", fields={"k": 1})
    assert one == same and hash(one) == hash(same) and len({one, same}) == 1
    assert one != LogEvent(1.0, "pipe_a", "p", 2, "m", epoch="e", fields={"k": 1})
    assert repr(one).startswith("LogEvent(ts=1.0, pipeline_id='pipe_a', pod='p', seq=1,")
