"""The stdout sink: JSON Lines bytes, timestamps, and a closed pipe."""

from __future__ import annotations

import io

import orjson
import pytest

from follower.model import (
    ApiErrorEvent,
    Event,
    GapEvent,
    LogEvent,
    PodAddedEvent,
    PodRemovedEvent,
    TailErrorEvent,
)
from follower.sinks.jsonlines import JsonLinesSink, SinkClosedError, encode

P = "pipe_3e8678c5fc9e48a7bf9879ca729"
POD = "pipeline-covalent-postgres-pipe-3e8678c5fc9e48a7bf9879ca7mlm2"
EVERY_KIND: list[Event] = [
    PodAddedEvent(1.8e9, P, POD),
    LogEvent(1.8e9, P, POD, 1, 'INFO caf\u00e9 "quoted" \\ tab\t'),
    GapEvent(1.8e9, P, POD, 1, "no_overlap"),
    TailErrorEvent(1.8e9, P, POD, "pods \"x\" not found", 2.5),
    PodRemovedEvent(1.8e9, P, POD, 1),
    ApiErrorEvent(1.8e9, P, "server_error", 503, "unavailable", None),
]


def test_encode_is_one_json_object_per_line() -> None:
    """Every event becomes exactly one line that parses back to its wire dict."""
    lines = encode(EVERY_KIND).split(b"\n")
    assert lines[-1] == b""
    assert [orjson.loads(line) for line in lines[:-1]] == [e.to_wire() for e in EVERY_KIND]


def test_wire_timestamps_are_rfc3339_utc_milliseconds() -> None:
    """ts is RFC 3339 in UTC with milliseconds and a Z."""
    assert LogEvent(1_800_000_000.1234, P, POD, 1, "x").to_wire()["ts"] == (
        "2027-01-15T08:00:00.123Z"
    )


async def test_json_sink_writes_and_flushes_each_batch() -> None:
    """A batch lands in the stream whole, UTF-8, before write() returns."""
    stream = io.BytesIO()
    await JsonLinesSink(stream).write(EVERY_KIND[:2])
    assert stream.getvalue().decode("utf-8").count("\n") == 2
    assert "caf\u00e9" in stream.getvalue().decode("utf-8")


class ClosedPipe(io.BytesIO):
    def write(self, data: object) -> int:
        raise BrokenPipeError(32, "Broken pipe")


async def test_broken_pipe_is_a_sink_closed_error() -> None:
    """A reader that went away surfaces as SinkClosedError, not an OSError traceback."""
    with pytest.raises(SinkClosedError, match="broken pipe"):
        await JsonLinesSink(ClosedPipe()).write(EVERY_KIND[:1])
