"""The stdout sink: JSON Lines bytes, timestamps, and a closed pipe."""

from __future__ import annotations

import fcntl
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import anyio.to_thread
import orjson
import pytest

from follower.core.events import (
    ApiErrorEvent,
    Event,
    GapEvent,
    LogEvent,
    PodAddedEvent,
    PodRemovedEvent,
    TailErrorEvent,
)
from follower.errors import SinkClosedError
from follower.sinks.jsonlines import JsonLinesSink, encode, never_blocks, pipe_capacity

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


def test_only_regular_files_and_dev_null_count_as_never_blocking(tmp_path: Path) -> None:
    """A pipe (a reader may stop reading) and a stream without a descriptor keep the thread."""
    read_end, write_end = os.pipe()
    try:
        with os.fdopen(write_end, "wb", closefd=False) as pipe:
            assert not never_blocks(pipe)
    finally:
        os.close(read_end)
        os.close(write_end)
    assert not never_blocks(io.BytesIO())
    with (tmp_path / "events.jsonl").open("wb") as regular, open(os.devnull, "wb") as null:
        assert never_blocks(regular)
        assert never_blocks(null)


async def test_regular_file_is_written_without_a_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A regular file cannot stall on a reader: the batch is written from the event loop."""

    async def no_thread(*args: object, **kwargs: object) -> None:
        raise AssertionError("a regular file must not be written through a worker thread")

    monkeypatch.setattr(anyio.to_thread, "run_sync", no_thread)
    path = tmp_path / "events.jsonl"
    with path.open("wb") as stream:
        await JsonLinesSink(stream).write(EVERY_KIND[:2])
    assert path.read_bytes() == encode(EVERY_KIND[:2])


@pytest.fixture
def hops(monkeypatch: pytest.MonkeyPatch) -> list[tuple[object, ...]]:
    """The calls of `anyio.to_thread.run_sync` during the test (each still runs)."""
    calls: list[tuple[object, ...]] = []
    run_sync = anyio.to_thread.run_sync

    async def counting(*args: object, **kwargs: object) -> object:
        calls.append(args)
        return await run_sync(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(anyio.to_thread, "run_sync", counting)
    return calls


@pytest.fixture
def pipe() -> Iterator[tuple[int, BinaryIO]]:
    """A pipe's read end and a binary stream on its write end."""
    read_end, write_end = os.pipe()
    try:
        with os.fdopen(write_end, "wb", closefd=False) as stream:
            yield read_end, stream
    finally:
        os.close(read_end)
        os.close(write_end)


@pytest.mark.skipif(
    not hasattr(fcntl, "F_GETPIPE_SZ"), reason="the platform cannot tell a pipe's room"
)
async def test_a_pipe_with_room_is_written_without_a_thread(
    pipe: tuple[int, BinaryIO], hops: list[tuple[object, ...]]
) -> None:
    """A pipe whose reader keeps up has room for the poll: no hop to a thread and back."""
    read_end, stream = pipe
    await JsonLinesSink(stream).write(EVERY_KIND[:1])
    assert os.read(read_end, 65536) == encode(EVERY_KIND[:1])
    assert hops == []


async def test_a_pipe_without_room_is_written_through_a_thread(
    pipe: tuple[int, BinaryIO], hops: list[tuple[object, ...]]
) -> None:
    """A pipe filling up may block until its reader reads: the write goes through a worker
    thread, and the event loop keeps running."""
    read_end, stream = pipe
    capacity = pipe_capacity(stream) or 65536
    stream.write(b"x" * (capacity - 1024))  # the reader is behind: the pipe is nearly full
    stream.flush()
    sink = JsonLinesSink(stream)
    async with anyio.create_task_group() as group:
        group.start_soon(sink.write, EVERY_KIND[:1])
        await anyio.wait_all_tasks_blocked()
        assert len(hops) == 1  # the write waits in its thread, not on the event loop
        received = b""
        expected = capacity - 1024 + len(encode(EVERY_KIND[:1]))
        while len(received) < expected:
            received += await anyio.to_thread.run_sync(os.read, read_end, 65536)
    assert received.endswith(encode(EVERY_KIND[:1]))
