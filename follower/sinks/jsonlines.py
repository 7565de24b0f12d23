"""JSON Lines: one compact JSON object per event, UTF-8, newline-terminated.

The form every log shipper reads without configuration. A batch is encoded whole and written with
one `write` and one `flush`, so a shipper never sees half an event from us.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import BinaryIO

import anyio
import anyio.to_thread
import orjson

from follower.model import Event


class SinkClosedError(Exception):
    """The reader went away (EPIPE): nothing more can be delivered."""


def encode(events: Sequence[Event]) -> bytes:
    """The JSON Lines bytes of `events`."""
    return b"".join(orjson.dumps(event.to_wire()) + b"\n" for event in events)


class JsonLinesSink:
    """Writes events to a binary stream, such as stdout's buffer or an open file.

    The blocking write runs in a worker thread: a reader that stops reading (a full pipe) then
    stalls only the pollers waiting to write, which is the backpressure we want, while the event
    loop keeps answering signals and the ops server. A lock keeps batches whole and in order.
    """

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._lock = anyio.Lock()

    def _write_blocking(self, data: bytes) -> None:
        self._stream.write(data)
        self._stream.flush()

    async def write(self, events: Sequence[Event]) -> None:
        data = encode(events)
        async with self._lock:
            try:
                await anyio.to_thread.run_sync(self._write_blocking, data)
            except BrokenPipeError as exc:
                raise SinkClosedError("the output was closed by its reader (broken pipe)") from exc

    async def aclose(self) -> None:
        with contextlib.suppress(BrokenPipeError):  # the reader is gone; nothing left to save
            self._stream.flush()
