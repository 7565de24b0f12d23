"""What a pod's differ state costs in memory: the follower holds one per pod, so its bytes are
most of the follower's memory (bench/memory.py); a bound here catches a saving being lost."""

from __future__ import annotations

import array
import tracemalloc

from follower.core import tailshape
from follower.core.differ import TailState, diff_logs

WINDOW = 200
MAX_STATE_BYTES = 2_000
"""A 200-line state holds 1,600 bytes of fingerprints; the rest (the state's and its `bytes`'
headers, the packed shape with its ~100-byte anchor) takes ~320 bytes since the fingerprints and
the shape share one `bytes` (with 2-byte offsets and blocks of 24 lines), took ~470 with them in
an array of their own, ~560-580 with 16-byte block digests, and ~1,050-1,100 before the shape
was packed and the arrays were allocated to their exact size."""


def tail(first: int) -> str:
    """A 200-line tail of ~100-byte log lines, starting at line `first`."""
    return "".join(
        f"2026-12-02T11:{index % 60:02}:00.000Z INFO  worker-{index % 7} processed batch {index} "
        f"of the nightly import in {index % 97} ms, queue depth {index % 13}\n"
        for index in range(first, first + WINDOW)
    )


def retained_bytes(previous: TailState | None, logs: str) -> tuple[int, TailState]:
    """The bytes allocated by diffing `logs` that its state keeps alive, and the state."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        state = diff_logs(previous, logs).state
        return tracemalloc.get_traced_memory()[0] - before, state
    finally:
        tracemalloc.stop()


def test_a_200_line_state_with_its_shape_stays_small() -> None:
    """Both the full differ's state and the fast path's (a slid tail) keep their fingerprints
    and a packed shape in at most MAX_STATE_BYTES."""
    retained_bytes(retained_bytes(None, tail(0))[1], tail(20))  # a tracer's first sight of a line
    full, first = retained_bytes(None, tail(0))
    slid, second = retained_bytes(first, tail(20))
    assert first.has_shape and second.has_shape
    assert len(second) == WINDOW
    assert full <= MAX_STATE_BYTES
    assert slid <= MAX_STATE_BYTES


def test_packed_shape_reads_back_as_built() -> None:
    """`unpack(pack(shape))` is the shape built from the tail, with and without an anchor."""
    for logs in (tail(0), tail(0) + "x" * (tailshape.ANCHOR_MAX_BYTES + 1) + "\n"):
        data = logs.encode()
        lines = data[:-1].split(b"\n")
        shape, digests = tailshape.build(data, lines), tailshape.line_digests(lines)
        packed = tailshape.pack(shape, digests)
        assert tailshape.unpack(packed) == shape
        assert tailshape.digests_of(packed) == digests
        assert tailshape.line_count(packed) == len(lines) and tailshape.has_shape(packed)


def test_packed_shape_keeps_offsets_in_2_4_or_8_bytes_as_the_text_needs() -> None:
    """Offsets take 2 bytes while the text fits them (under 64 KiB), 4 up to 4 GiB, 8 past that;
    each reads back."""
    digest, block = bytes(range(16)), bytes(range(8))  # the text's digest, a block's
    for size, code in ((2**16 - 1, "H"), (2**16, "I"), (2**32 - 1, "I"), (2**32 + 5, "Q")):
        offsets = array.array(code, [0, size // 2, size - 3])
        shape = tailshape.Shape(size, digest, b"\nlast\n", 16, 3, offsets, block * 2, block)
        assert tailshape.unpack(tailshape.pack(shape, block * 5)) == shape
    for size, code in ((2**16 - 1, "H"), (2**16, "I")):  # as `build` chooses
        assert tailshape.build(b"a" * size, [b"a" * size]).offsets.typecode == code
