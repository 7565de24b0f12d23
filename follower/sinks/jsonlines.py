"""JSON Lines: one compact JSON object per event, UTF-8, newline-terminated.

The form every log shipper reads without configuration. A poll's events are encoded and written
in pieces of whole lines (follower/sinks/encoding.py), each written and flushed before the next
is encoded, so a shipper never sees half an event from us and a poll of 400,000 lines never holds
all its encodings at once. When a piece cannot be written the poll is undone
(follower/engine/poller.py): its earlier pieces may then be repeated after a restart, never lost.
"""

from __future__ import annotations

import array
import contextlib
import errno
import fcntl
import io
import os
import stat
import termios
import threading
from collections.abc import Sequence
from typing import BinaryIO, Final

import anyio
import anyio.to_thread

from follower.core.events import Event
from follower.core.model import DEFAULT_MAX_LINE_BYTES
from follower.errors import SinkClosedError
from follower.sinks.encoding import encode, pieces

__all__ = ["JsonLinesSink", "encode", "never_blocks"]


def closed_error(exc: OSError | ValueError) -> SinkClosedError:
    """The error for a failed write, in one line."""
    if isinstance(exc, BrokenPipeError):
        return SinkClosedError("the output was closed by its reader (broken pipe)")
    if isinstance(exc, OSError) and exc.errno is not None:
        reason = exc.strerror or os.strerror(exc.errno)
        name = errno.errorcode.get(exc.errno, str(exc.errno))
        return SinkClosedError(f"cannot write the output: {reason} ({name})")
    return SinkClosedError(f"cannot write the output: {exc}")


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


PAGE: Final = 4096
"""A pipe holds its bytes in pages; a partly read first page and a partly filled last one can
each hold a page's room that a write cannot use."""


def pipe_capacity(stream: BinaryIO) -> int | None:
    """The capacity in bytes of the pipe `stream` writes to, or None when it is no pipe (or the
    platform cannot say: then every write to it goes through a thread)."""
    get_size = getattr(fcntl, "F_GETPIPE_SZ", None)  # Linux only
    if get_size is None:
        return None
    try:
        fd = stream.fileno()
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return None
        return int(fcntl.fcntl(fd, get_size))
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None


def queued(fd: int) -> int | None:
    """Bytes written to the pipe `fd` and not read yet (None when it cannot be told)."""
    count = array.array("i", [0])
    try:
        fcntl.ioctl(fd, termios.FIONREAD, count, True)
    except OSError:
        return None
    return count[0]


class JsonLinesSink:
    """Writes events to a binary stream, such as stdout's buffer or an open file.

    When the stream can block (a pipe, a terminal), each piece is written in a worker thread: a
    reader that stops reading (a full pipe) then stalls only the pollers waiting to write, which
    is the backpressure we want, while the event loop keeps answering signals and the ops server.
    Such a write cannot be interrupted, so cancelling it (shutdown) abandons the thread: the poll
    is undone, later writes wait for the thread, and `stalled` tells the CLI that the process
    must end without waiting for it. A regular file or /dev/null never waits for a reader, so it
    is written from the event loop: the hop to a thread and back would cost more CPU than the
    write (docs/design.md). Nor does a pipe with room for the whole piece (Linux tells how many
    bytes wait in it): a shipper that keeps up leaves room, so only a pipe filling up costs the
    hop. A lock keeps polls whole and in order.
    """

    def __init__(self, stream: BinaryIO, *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        self._stream = stream
        self._max_line_bytes = max_line_bytes
        self._lock = anyio.Lock(fast_acquire=True)  # no yield to the loop when uncontended
        self._direct = never_blocks(stream)
        self._pipe_capacity = None if self._direct else pipe_capacity(stream)
        self._abandoned: threading.Event | None = None  # set when the abandoned write returns

    @property
    def stalled(self) -> bool:
        """A write abandoned by cancellation still waits on the reader (its thread cannot end)."""
        return self._abandoned is not None and not self._abandoned.is_set()

    def _write_blocking(self, data: bytes, done: threading.Event | None = None) -> None:
        try:
            self._stream.write(data)
            self._stream.flush()
        finally:
            if done is not None:
                done.set()

    async def _write_in_thread(self, data: bytes) -> None:
        if self.stalled:
            assert self._abandoned is not None
            await anyio.to_thread.run_sync(self._abandoned.wait, abandon_on_cancel=True)
        done = threading.Event()
        try:
            await anyio.to_thread.run_sync(self._write_blocking, data, done, abandon_on_cancel=True)
        finally:
            if not done.is_set():  # cancelled while the thread still writes
                self._abandoned = done

    async def write(self, events: Sequence[Event]) -> None:
        async with self._lock:
            for data in pieces(events, self._max_line_bytes):
                try:
                    if self._direct or self._fits_in_pipe(len(data)):
                        self._write_blocking(data)
                    else:
                        await self._write_in_thread(data)
                except (OSError, ValueError) as exc:  # ValueError: the stream was closed
                    raise closed_error(exc) from exc

    def _fits_in_pipe(self, size: int) -> bool:
        """Whether writing `size` bytes to the pipe returns at once: only this process writes to
        it and its reader only makes room, so the room seen now can only grow. Never while an
        abandoned write still waits (it must go first)."""
        if self._pipe_capacity is None or self.stalled:
            return False
        waiting = queued(self._stream.fileno())
        return waiting is not None and waiting + size + 2 * PAGE <= self._pipe_capacity

    async def aclose(self) -> None:
        if self.stalled:  # the abandoned thread holds the stream: nothing can be flushed
            return
        with contextlib.suppress(OSError, ValueError):  # the reader is gone; nothing to save
            self._stream.flush()
