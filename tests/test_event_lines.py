"""Event lines as shippers take them: every encoded event within `output.max_line_bytes`, valid
JSON, with a stable unique id; a poll of many lines encoded and written in bounded memory."""

from __future__ import annotations

import gc
import json
import operator
import os
import signal
import tracemalloc
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_cli import follower
from test_security import Scripted, serve, tails

from follower.core.batch import EventBatch, LogRun
from follower.core.events import (
    ApiErrorEvent,
    Event,
    GapEvent,
    LogEvent,
    PipelineAddedEvent,
    PipelineRemovedEvent,
    PipelineStatusEvent,
    PodAddedEvent,
    PodRemovedEvent,
    TailErrorEvent,
)
from follower.core.model import (
    DEFAULT_MAX_LINE_BYTES,
    PIPELINE_ID_RE,
    JsonValue,
    format_datetime,
    format_ts,
)
from follower.sinks.encoding import MIN_EVENT_BYTES, encode_line, line_limit
from follower.sinks.files import FileSink
from follower.sinks.jsonlines import JsonLinesSink
from follower.testing import FakeClock

# --- a follower run with hostile pod names and lines ---------------------------------------------

LONG_POD = "p" * 100_000
CONTROL = "\x01" * 16_384
QUOTES = '"' * 16_384


async def test_long_pod_names_and_escaped_lines_fit_the_line_limit() -> None:
    """A 100,000-character pod name and 16 KiB lines of control characters or quotes (6x and 2x
    in JSON): every event `follower run` writes fits 16 KiB, is valid JSON, says `truncated`,
    and the long pod's events keep distinct ids derived from its whole name."""
    pods = {LONG_POD: "one\ntwo\n", "ctl": CONTROL + "\n", "quo": QUOTES + "\n"}
    server = Scripted([tails(pods)])
    async with serve(server.handle) as base_url, follower(
        "run", "--base-url", base_url, "--pipeline", "pipe_x", "--interval", "0.2"
    ) as run:
        await run.wait_for('"event":"log"', count=4)
        run.process.send_signal(signal.SIGTERM)
        assert await run.exit_code() == 0
    lines = [line for line in run.stdout if line]
    assert max(len(line.encode()) + 1 for line in lines) <= DEFAULT_MAX_LINE_BYTES
    events = run.events()
    logs = {(e["pod"][:3], e["seq"]): e for e in events if e["event"] == "log"}
    assert logs.keys() == {("ppp", 1), ("ppp", 2), ("ctl", 1), ("quo", 1)}
    assert all(e["truncated"] is True for e in logs.values())
    long_ids = [logs["ppp", 1]["id"], logs["ppp", 2]["id"]]
    assert long_ids[0] != long_ids[1] and all("%#" in i for i in long_ids)
    assert [logs["ppp", 1]["message"], logs["ppp", 2]["message"]] == ["one", "two"]
    assert logs["ppp", 1]["pod"].endswith("bytes]")
    assert logs["ctl", 1]["message"].startswith("\x01" * 1000)
    assert logs["quo", 1]["message"].startswith('"' * 1000)


# --- any event, encoded --------------------------------------------------------------------------

TEXT = st.one_of(
    st.text(st.characters(exclude_categories=("Cs",)), max_size=200),
    st.builds(
        operator.mul,
        st.sampled_from(["x", '"', "\\", "\x01", "\u00e9", "\U0001f600", "/", "%", "\u2028"]),
        st.integers(0, 40_000),
    ),
)
SHORT = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)
JSON: st.SearchStrategy[JsonValue] = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | TEXT,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(SHORT, inner, max_size=5),
    max_leaves=20,
)
FIELDS = st.none() | st.dictionaries(TEXT, JSON, max_size=5) | st.builds(
    lambda n: {f"k{i}": i for i in range(n)}, st.integers(0, 5_000)  # many small values
)
TS = st.floats(0, 4e9)
PID = st.from_regex(PIPELINE_ID_RE, fullmatch=True)
SEQ = st.integers(0, 2**63 - 1)
DELAY = st.none() | st.floats(0, 1e6)
EVENTS: st.SearchStrategy[Event] = st.one_of(
    st.builds(LogEvent, TS, PID, TEXT, SEQ, TEXT, st.booleans(),
              st.none() | st.sampled_from(["info", "error"]), st.none() | TEXT, FIELDS),
    st.builds(GapEvent, TS, PID, TEXT, SEQ, st.sampled_from(["no_overlap", "window_full"])),
    st.builds(TailErrorEvent, TS, PID, TEXT, TEXT, st.floats(0, 1e6)),
    st.builds(PodAddedEvent, TS, PID, TEXT),
    st.builds(PodRemovedEvent, TS, PID, TEXT, SEQ),
    st.builds(ApiErrorEvent, TS, PID, TEXT, st.none() | st.integers(100, 599), TEXT, DELAY),
    st.builds(PipelineStatusEvent, TS, PID, TEXT, st.none() | SEQ, st.none() | SEQ),
    st.builds(PipelineAddedEvent, TS, PID, st.none() | TEXT),
    st.builds(PipelineRemovedEvent, TS, PID, TEXT),
)


@settings(max_examples=300, deadline=None)
@given(EVENTS, st.integers(64, 40_000))
def test_any_event_encodes_within_the_line_limit_as_valid_json(
    event: Event, max_line_bytes: int
) -> None:
    """Whatever its fields, an encoded event is one valid JSON line of at most the limit (the
    setting, and never below MIN_EVENT_BYTES); one that fits is encoded as it is; one that does
    not says `truncated` and keeps every other field's identity."""
    line = encode_line(event, max_line_bytes)
    limit = line_limit(max_line_bytes)
    assert limit == max(max_line_bytes, MIN_EVENT_BYTES)
    assert len(line) <= limit and line.endswith(b"\n") and line.count(b"\n") == 1
    wire: dict[str, Any] = orjson.loads(line)
    plain = orjson.dumps(event.to_wire(), option=orjson.OPT_APPEND_NEWLINE)
    if len(plain) <= limit:
        assert line == plain
        return
    assert wire["truncated"] is True
    for key in ("ts", "event", "pipeline_id", "schema"):
        assert wire[key] == event.to_wire()[key]
    assert wire["id"] == event.id or "%#" in wire["id"]
    assert encode_line(event, max_line_bytes) == line  # stable


def test_a_cut_pod_name_keeps_ids_unique_and_derived_from_the_whole_name() -> None:
    """Two pods whose long names differ only at the end get different ids for the same seq;
    the same event always gets the same id."""
    a, b = ("x" * 50_000 + end for end in "ab")
    ids = [orjson.loads(encode_line(LogEvent(1.8e9, "pipe_a", pod, 7, "m")))["id"]
           for pod in (a, b, a)]
    assert ids[0] != ids[1] and ids[0] == ids[2]
    assert ids[0].startswith("pipe_a/xxxx") and ids[0].endswith("/7")


def test_a_line_cut_by_the_tracker_then_for_its_escapes_counts_every_byte_left_out() -> None:
    """A message already cut to the limit (with its marker) and cut again because its escapes
    make the event too long: one marker, counting both cuts."""
    original = "\x01" * 100_000
    first = "\x01" * 16_000 + "\u2026[cut 84000 bytes]"
    line = encode_line(LogEvent(1.8e9, "pipe_a", "p", 1, first, truncated=True))
    message = orjson.loads(line)["message"]
    head = message[: message.index("\u2026")]
    assert message == head + f"\u2026[cut {len(original) - len(head)} bytes]"


# --- a poll of many lines: bounded memory --------------------------------------------------------


def traced_peak_of_writing(count: int, sink_of: Any, *, as_run: bool, line: str = "x") -> int:
    """Peak traced memory (bytes) of writing `count` log lines `line` as one poll: as many
    events, or (`as_run`) one `LogRun` of a batch, as the tracker hands them over."""
    events: Sequence[Event] = (
        EventBatch([LogRun(1.8e9, "pipe_a", "p", 1, [line] * count, None)]) if as_run
        else [LogEvent(1.8e9, "pipe_a", "p", seq, line) for seq in range(1, count + 1)]
    )
    sink = sink_of()
    gc.collect()
    tracemalloc.start()
    try:
        anyio.run(sink.write, events)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        anyio.run(sink.aclose)


@pytest.mark.parametrize("as_run", [False, True], ids=["events", "run"])
def test_one_poll_of_many_lines_is_written_in_bounded_memory(tmp_path: Path, as_run: bool) -> None:
    """Encoding and writing a 20,000-line poll takes no more memory than a 2,000-line one (a few
    MB): the encodings are written piece by piece, never all held (they were 4 KiB each), also
    when the lines come as one run."""
    devnull = open(os.devnull, "wb")  # noqa: SIM115 - closed below, shared by the runs
    try:
        for sink_of in (lambda: JsonLinesSink(devnull),
                        lambda: FileSink(tmp_path, clock=FakeClock(), fsync="never")):
            small, large = (
                traced_peak_of_writing(n, sink_of, as_run=as_run) for n in (2_000, 20_000)
            )
            assert large < 8 * 1024 * 1024, (small, large)
            assert large < 2 * small + 1024 * 1024, (small, large)
    finally:
        devnull.close()


def test_a_run_of_long_lines_is_encoded_a_piece_of_bytes_at_a_time() -> None:
    """1,000 lines of 16,000 `"` (32 KB each once escaped) take no more memory to write as one
    run than as events: a run is encoded in slices of about a piece's bytes, not only of
    `PIECE_EVENTS` lines (256 such lines, 8 MB, at once took 76 MB at the peak)."""
    with open(os.devnull, "wb") as devnull:
        events, run = (
            traced_peak_of_writing(1_000, lambda: JsonLinesSink(devnull), as_run=as_run,
                                   line='"' * 16_000)
            for as_run in (False, True)
        )
    assert run < 1.2 * events + 1024 * 1024, (events, run)


def test_the_json_of_a_fitted_event_is_what_a_json_parser_reads() -> None:
    """A fitted line parses with the standard library too (no orjson-only form)."""
    event = PodAddedEvent(1.8e9, "pipe_a", '"\\\x00' * 20_000)
    assert json.loads(encode_line(event))["truncated"] is True


# --- timestamps ----------------------------------------------------------------------------------


def _datetime_ts(epoch_s: float) -> str:
    """The `ts` text as formatted from a whole datetime (the formatting before the per-second
    cache), or the name of the error it raises."""
    try:
        return format_datetime(datetime.fromtimestamp(epoch_s, tz=UTC))
    except (ValueError, OverflowError, OSError) as exc:
        return type(exc).__name__


@settings(max_examples=2000, deadline=None)
@given(st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-1e11, 3e11),
    st.integers(-(10**6), 10**6).map(lambda n: n / 1000 + 0.0005),  # half a millisecond
    st.integers(-(10**6), 10**6).map(lambda n: n / 1e6 + 5e-7),  # half a microsecond
    st.sampled_from([0.9999995, 1764669600.9999995, 253402300799.9999995, -62135596800.5]),
))
def test_ts_is_the_text_of_the_rounded_datetime(epoch_s: float) -> None:
    """`format_ts` formats each second once and adds the milliseconds itself: the text, or the
    error, is the whole datetime's, rounding (half to even, carried into the next second, before
    1970 too) and the ends of the calendar included."""
    format_ts.cache_clear()
    try:
        text = format_ts(epoch_s)
    except (ValueError, OverflowError, OSError) as exc:
        text = type(exc).__name__
    assert text == _datetime_ts(epoch_s)
