"""JSON Lines: one compact JSON object per event, UTF-8, newline-terminated.

The form every log shipper reads without configuration. A batch is encoded whole and written with
one `write` and one `flush`, so a shipper never sees half an event from us.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
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
    dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE  # no copy to add each "\n"
    return b"".join([dumps(event.to_wire(), option=newline) for event in events])


def never_blocks(stream: BinaryIO) -> bool:
    """Whether writes to `stream` cannot wait on a reader: a regular file or /dev/null.

    Pipes, sockets and terminals (a paused terminal blocks too) can stall for as long as their
    reader likes; so can anything whose file descriptor we cannot see, such as a test's BytesIO
    wrapper, which is treated the same way to be safe.
    """
    try:
        status = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return False
    if stat.S_ISREG(status.st_mode):
        return True
    if stat.S_ISCHR(status.st_mode):
        return status.st_rdev == os.stat(os.devnull).st_rdev
    return False


class JsonLinesSink:
    """Writes events to a binary stream, such as stdout's buffer or an open file.

    When the stream can block (a pipe, a terminal), the write runs in a worker thread: a reader
    that stops reading (a full pipe) then stalls only the pollers waiting to write, which is the
    backpressure we want, while the event loop keeps answering signals and the ops server. A
    regular file or /dev/null never waits for a reader, so it is written from the event loop:
    the hop to a thread and back would cost more CPU than the write (~125 us a batch in
    bench/throughput.py). A lock keeps batches whole and in order.
    """

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._lock = anyio.Lock(fast_acquire=True)  # no yield to the loop when uncontended
        self._direct = never_blocks(stream)

    def _write_blocking(self, data: bytes) -> None:
        self._stream.write(data)
        self._stream.flush()

    async def write(self, events: Sequence[Event]) -> None:
        data = encode(events)
        async with self._lock:
            try:
                if self._direct:
                    self._write_blocking(data)
                else:
                    await anyio.to_thread.run_sync(self._write_blocking, data)
            except BrokenPipeError as exc:
                raise SinkClosedError("the output was closed by its reader (broken pipe)") from exc

    async def aclose(self) -> None:
        with contextlib.suppress(BrokenPipeError):  # the reader is gone; nothing left to save
            self._stream.flush()
