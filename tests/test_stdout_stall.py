"""The stdout sink facing a reader that stops reading: a cancelled write is abandoned, never
interleaved with the next one, and the sink says it is stalled until the reader takes it."""

from __future__ import annotations

import os

import anyio
from test_exit_paths import stalled_pipe, writes_to_a_pipe

from follower.clock import SystemClock
from follower.core.events import Event, LogEvent
from follower.sinks.jsonlines import JsonLinesSink, encode


def batch(pod: str, count: int) -> list[Event]:
    return [LogEvent(1.8e9, "pipe_a", pod, seq, "line " * 20) for seq in range(1, count + 1)]


async def test_a_cancelled_write_is_abandoned_and_the_next_one_waits_for_it() -> None:
    """Cancelling a write blocked on a full pipe returns at once; the sink is `stalled`; a later
    write starts only once the abandoned one is done, so the reader gets both whole, in order."""
    clock = SystemClock()
    read_end, write_end = stalled_pipe()
    first, second = batch("a", 100), batch("b", 100)
    with open(write_end, "wb") as stream:  # noqa: ASYNC230 - a pipe the test reads itself
        sink = JsonLinesSink(stream)
        async with anyio.create_task_group() as group:
            group.start_soon(sink.write, first)
            with anyio.fail_after(10):
                while not writes_to_a_pipe(os.getpid()):
                    await clock.sleep(0.01)
            group.cancel_scope.cancel()
        assert sink.stalled
        expected = encode(first) + encode(second)
        received = bytearray()

        async def reader() -> None:  # the reader comes back and reads everything
            while len(received.replace(b"filler\n", b"")) < len(expected):
                received.extend(await anyio.to_thread.run_sync(os.read, read_end, 1 << 20))

        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                group.start_soon(sink.write, second)
                group.start_soon(reader)
        await sink.aclose()
    os.close(read_end)
    assert bytes(received).replace(b"filler\n", b"") == expected
    assert not sink.stalled
