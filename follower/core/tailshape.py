"""What the differ's fast paths remember of a tail's text, and the fast paths themselves.

Most polls see a tail that is unchanged (an idle pod) or that only slid: it lost lines off its top
and gained new ones at the bottom. Splitting such a tail into lines and fingerprinting every line
costs more than parsing the JSON it came in, so this module recognises those cases from a few
C-level operations on the UTF-8 bytes and splits and fingerprints only the new part.

A false "nothing changed" or a wrong alignment would lose or repeat lines silently, so every fast
answer is proven, never guessed: the overlap of the new tail with the previous one is checked
byte for byte against digests of the previous tail, and anything the checks cannot prove falls
back to the full differ (`follower.core.differ`), which then decides exactly as it always did. The
fast path gives the same answer as the full differ whenever it gives one (the property tests in
tests/test_differ.py hold it to that).

What is kept per pod (never the text: a 200-line tail is ~20 KB, its shape a few hundred bytes)
is packed by `pack` into one `bytes` together with the line fingerprints the full differ aligns
by (`follower.core.differ.TailState` holds it), since a pod's state is most of the follower's
memory: one object and one allocation, where an array, its buffer and a second `bytes` took
~110 bytes more a pod. The fingerprints lie in it as XXH3's canonical (big-endian) 8-byte
digests, so the fast paths compare and carry them as bytes and only the full differ reads them
as integers (`fingerprints_of`). Of the shape:
- `digest`: the 128-bit XXH3 of the whole text. With 128 bits, two different tails of one pod
  compare equal with probability 2^-128 per poll: never, in practice (a 64-bit digest would
  already make it ~5e-20). XXH3 is not cryptographic, but log lines are not chosen to collide
  with the previous tail of the same pod, and the per-line fingerprints the full differ compares
  were 64-bit all along.
- `anchor`: the last line (when it is short), to find where the previous tail ends in the new
  one with one `bytes.rfind` over the new part only.
- blocks of `block_lines` consecutive lines, fixed once complete, each with its 64-bit digest,
  and one of the lines after the last complete block (the open block). 64 bits, as the line
  fingerprints the full differ aligns by: a block is compared only with the bytes at the one
  place the anchor and the fingerprints of the lines before it already put it, so a false match
  takes a 2^-64 collision there (~7e-19 per poll for a 200-line tail), far below the odds the
  full differ accepts; 128-bit block digests cost ~100 more bytes per pod. A slid tail starts
  inside some block; the lines before the first block boundary inside the overlap (fewer than
  `block_lines`) are checked by their fingerprints, every later block by one digest of its bytes.
  So a poll costs O(new lines + block_lines + blocks) Python-level steps, not O(tail lines).

Size: over 300 lines on purpose: the shape's layout (`pack`, `unpack`) and the checks
that read it are one proof, and split they would share each other's private offsets.

Tails with a "\\r" anywhere take the full differ (it strips one "\\r" per line, which would make
byte equality and line equality differ), as do tails cut by `max_tail_lines`.
"""

from __future__ import annotations

import array
import bisect
import itertools
import math
import struct
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, NamedTuple

import xxhash

MIN_BLOCK_LINES: Final = 24
"""Lines per block, at least: the fast path checks up to a block of lines one by one and the rest
by one digest per block, so blocks of about the square root of the tail's length (at least this)
keep both parts small: 24 lines for a 200-line tail, 44 for 2,000. A block's check (~1 us, a
slice and its digest) costs about five lines' (~0.2 us each), so blocks of 24 rather than 16
lines cost a slid 200-line tail no time (within the noise of bench/differ.py) and each pod 40
bytes less (8 blocks' digests and offsets, not 12)."""
ANCHOR_MAX_BYTES: Final = 512
"""A longer last line is not kept (a 1 MB line per pod would be a lot of memory); such a tail
takes the full differ at the next poll."""
_NEWLINE: Final = 0x0A
_DIGEST_BYTES: Final = 8
"""Bytes of a block's digest (and of the open block's); the whole text's digest takes 16."""
_FINGERPRINT_BYTES: Final = 8
"""Bytes of a line's fingerprint (its XXH3-64 digest) in a packed state."""
_HEAD: Final = struct.Struct("=16s8sQiIII")
"""A packed state's head: digest, open_digest, size, phase, lines (fingerprints), block_lines,
number of offsets; the fingerprints (8 bytes each, 8-byte aligned), the offsets (see
`_offset_code`), the complete blocks' digests and the anchor follow. Native byte order: a shape
is never saved (checkpoints keep only the fingerprints, as integers). Line counts take 4 bytes:
a tail within the API's body cap holds far fewer than 2^31 lines."""
_NO_SHAPE: Final = (1 << 64) - 1
"""The size in the head of a state that has fingerprints only: no text's `content_end`, so such
a state is never `unchanged`, and it has no anchor, so `align` never answers for it."""
_TINY_OFFSETS: Final = 1 << (8 * array.array("H").itemsize)
_SHORT_OFFSETS: Final = 1 << (8 * array.array("I").itemsize)
_OFFSET_BYTES: Final = {code: array.array(code).itemsize for code in "HIQ"}
_SIZE: Final = struct.Struct("=Q")
_SIZE_AT: Final = 16 + _DIGEST_BYTES
_LINES_AT: Final = _SIZE_AT + 12
_LINES: Final = struct.Struct("=I")
_FINGERPRINTS_AT: Final = _HEAD.size

_line_digest: Final = xxhash.xxh3_64_digest
_text_digest: Final = xxhash.xxh3_128_digest
_block_digest: Final = xxhash.xxh3_64_digest


def _offset_code(size: int) -> str:
    """The array typecode of a text's block offsets, the narrowest that holds them: 2 bytes each
    for a text under 64 KiB (a 200-line tail of lines up to ~300 bytes), 4 for any tail within
    the API's body cap, else 8."""
    if size < _TINY_OFFSETS:
        return "H"
    return "I" if size < _SHORT_OFFSETS else "Q"


def line_digests(lines: Iterable[bytes]) -> bytes:
    """The XXH3-64 of each line's bytes, as 8-byte big-endian digests (XXH3's canonical form),
    joined: the form a packed state keeps them in."""
    return b"".join(map(_line_digest, lines))


def fingerprints_of(digests: bytes | memoryview) -> array.array[int]:
    """Joined 8-byte big-endian digests as integers (`xxh3_64_intdigest` of each line), in an
    unsigned 64-bit array of their exact size.

    Reading them as one buffer is about a third cheaper than building the array from the
    integers one by one.
    """
    fingerprints = array.array("Q")
    fingerprints.frombytes(digests)
    if sys.byteorder == "little":
        fingerprints.byteswap()
    return fingerprints


def digests_from(fingerprints: array.array[int]) -> bytes:
    """Fingerprints (integers, an unsigned 64-bit array) as the joined 8-byte big-endian digests
    a packed state keeps: `fingerprints_of` read back."""
    digests = array.array("Q", fingerprints)
    if sys.byteorder == "little":
        digests.byteswap()
    return digests.tobytes()


def line_fingerprints(lines: Iterable[bytes]) -> array.array[int]:
    """The XXH3-64 of each line's bytes (`xxh3_64_intdigest`), in an unsigned 64-bit array."""
    return fingerprints_of(line_digests(lines))


class Shape(NamedTuple):
    """The fast paths' memory of a tail's text (see the module docstring); offsets are in bytes.

    `offsets[t]` is where block t starts; the last offset starts the open block, which always
    holds at least one line. Block t covers lines `phase + t * block_lines` onwards and its bytes
    end with the newline before the next block. `digests` holds 8 bytes per complete block.

    This is the working form of one poll; what a pod keeps between polls is `pack(shape, ...)`:
    ~300 bytes for a 200-line tail besides its fingerprints, where this object and its eight
    values took ~850 (an object, an array and three `bytes` headers each). A named tuple, not a
    frozen dataclass: a slid poll builds two, and a frozen dataclass cost ~3 us to build.
    """

    size: int
    digest: bytes
    anchor: bytes | None
    block_lines: int
    phase: int
    offsets: array.array[int]
    digests: bytes
    open_digest: bytes


def pack(shape: Shape, digests: bytes) -> bytes:
    """`shape` and the tail's line `digests` (`line_digests`) as one `bytes` (see `_HEAD`);
    `unpack` and `digests_of` read them back."""
    offsets = shape.offsets
    head = _HEAD.pack(
        shape.digest, shape.open_digest, shape.size, shape.phase,
        len(digests) // _FINGERPRINT_BYTES, shape.block_lines, len(offsets),
    )
    return b"".join((head, digests, offsets.tobytes(), shape.digests, shape.anchor or b""))


def pack_digests(digests: bytes) -> bytes:
    """A packed state of line `digests` only, without a shape (a tail the fast paths cannot
    follow, or one restored from a checkpoint): the full differ diffs the next tail."""
    lines = len(digests) // _FINGERPRINT_BYTES
    head = _HEAD.pack(bytes(16), bytes(_DIGEST_BYTES), _NO_SHAPE, 0, lines, 0, 0)
    return head + digests


def has_shape(packed: bytes) -> bool:
    """Whether the packed state holds a shape, besides its fingerprints."""
    return bool(_SIZE.unpack_from(packed, _SIZE_AT)[0] != _NO_SHAPE)


def line_count(packed: bytes) -> int:
    """How many lines (fingerprints) the packed state holds."""
    count: int = _LINES.unpack_from(packed, _LINES_AT)[0]
    return count


def digests_of(packed: bytes) -> bytes:
    """The packed state's line digests, joined (as `line_digests` gave them)."""
    return packed[_FINGERPRINTS_AT : _fingerprint_at(line_count(packed))]


def unpack(packed: bytes) -> Shape:
    """The shape `pack` packed (a state without one reads as an empty shape, without anchor)."""
    digest, open_digest, size, phase, lines, block_lines, count = _HEAD.unpack_from(packed)
    code = _offset_code(size)
    offsets_at = _fingerprint_at(lines)
    offsets_end = offsets_at + _OFFSET_BYTES[code] * count
    digests_end = offsets_end + max(count - 1, 0) * _DIGEST_BYTES
    offsets = array.array(code)
    offsets.frombytes(packed[offsets_at:offsets_end])
    anchor = packed[digests_end:] or None  # an anchor holds two newlines at least
    digests = packed[offsets_end:digests_end]
    return Shape(size, digest, anchor, block_lines, phase, offsets, digests, open_digest)


@dataclass(frozen=True, slots=True)
class Aligned:
    """A fast answer: the first `seen_from` previous lines left the window, `new` arrived.

    `packed` is the new tail's state (`pack`: its shape and fingerprints), as the next poll
    keeps it.
    """

    seen_from: int
    new: list[bytes]
    new_lines: list[str]
    packed: bytes


def content_end(data: bytes) -> int:
    """Where the last line ends: a final newline ends it rather than starting another."""
    return len(data) - 1 if data.endswith(b"\n") else len(data)


def build(data: bytes, lines: Sequence[bytes], block_lines: int | None = None) -> Shape:
    """The shape of a tail whose text is `data` and whose lines (no "\\r", none cut) are `lines`.

    `block_lines` defaults to the square root of the line count (see `MIN_BLOCK_LINES`).
    """
    if block_lines is None:
        block_lines = max(MIN_BLOCK_LINES, math.isqrt(len(lines)))
    end = content_end(data)
    offsets = array.array(_offset_code(end))
    digests = []
    position = 0
    complete = (len(lines) - 1) // block_lines  # the open block keeps one line at least
    for block in range(complete):
        offsets.append(position)
        first = block * block_lines
        stop = position + sum(map(len, lines[first : first + block_lines])) + block_lines
        digests.append(_block_digest(data[position:stop]))
        position = stop
    offsets.append(position)
    return Shape(
        size=end,
        digest=_digest_to(data, end),
        anchor=_anchor(lines[-1]),
        block_lines=block_lines,
        phase=0,
        offsets=offsets,
        digests=b"".join(digests),
        open_digest=_block_digest(data[position:end]),
    )


def _digest_to(data: bytes, end: int) -> bytes:
    """The digest of `data[:end]`, without copying when that is all of it."""
    return _text_digest(data if end == len(data) else data[:end])


def _anchor(last_line: bytes) -> bytes | None:
    """The search pattern of a whole line equal to `last_line`, if it is short enough to keep."""
    if len(last_line) > ANCHOR_MAX_BYTES:
        return None
    return b"\n" + last_line + b"\n"


def unchanged(packed: bytes, data: bytes) -> bool:
    """Whether `data` is the very tail the packed state was built from (a final newline aside)."""
    end = content_end(data)
    if end != _SIZE.unpack_from(packed, _SIZE_AT)[0]:
        return False
    return packed.startswith(_text_digest(data if end == len(data) else data[:end]))


def align(packed: bytes, data: bytes) -> Aligned | None:
    """The full differ's answer for the new tail `data`, if the fast checks can prove it.

    The full differ takes a longer tail that starts with the previous one as grown; otherwise the
    last line of the new tail equal to the previous tail's last line, checking that the lines
    before it are the previous tail's (or end with them). Here the first is one digest of the
    new tail's start, the last such line is found with `rfind`, the lines before it are checked by
    digests, and None means "not proven": anything but a tail that slid or grew, or a previous
    last line that is long (or a previous state without a shape). `packed` is the previous
    tail's packed state.
    """
    if b"\r" in data:
        return None
    shape = unpack(packed)
    if shape.anchor is None:
        return None
    end = content_end(data)
    if _grew(shape, data, end):
        overlap_end: int | None = shape.size  # the previous tail is this one's start (see differ)
    else:
        overlap_end = _last_anchor(shape.anchor, data, end)
    if overlap_end is None or overlap_end > shape.size:
        return None  # nothing aligns, or more lines before the old tail: the full differ decides
    start = shape.size - overlap_end  # where, in the previous text, the new tail starts
    checked = _check_overlap(shape, packed, data, start, overlap_end)
    if checked is None:
        return None
    seen_from, first_block = checked
    new: list[bytes] = []
    new_lines: list[str] = []
    if overlap_end < end:
        added = data[overlap_end + 1 : end]
        new = added.split(b"\n")
        new_lines = added.decode("utf-8", "surrogatepass").split("\n")
    kept = memoryview(packed)[_fingerprint_at(seen_from) : _fingerprint_at(line_count(packed))]
    code = _offset_code(end)
    offsets = array.array(code, [offset - start for offset in shape.offsets[first_block:]])
    digests = shape.digests[first_block * _DIGEST_BYTES :]
    phase = shape.phase + first_block * shape.block_lines - seen_from
    if first_block == len(shape.offsets):  # the new tail starts inside the old open block
        offsets, phase = array.array(code, [0]), 0
    anchor = _anchor(new[-1]) if new else shape.anchor
    slid = Shape(
        end, _digest_to(data, end), anchor, shape.block_lines, phase, offsets, digests, b""
    )
    state = _close_blocks(slid, kept, data, kept_end=overlap_end, new=new)
    return Aligned(seen_from, new, new_lines, state)


def _fingerprint_at(index: int) -> int:
    """Where line `index`'s fingerprint starts in a packed state (for the line count: where the
    fingerprints end)."""
    return _FINGERPRINTS_AT + _FINGERPRINT_BYTES * index


def _grew(shape: Shape, data: bytes, end: int) -> bool:
    """Whether `data` holds more lines than the previous tail and starts with all of it."""
    return (
        end > shape.size > 0
        and data[shape.size : shape.size + 1] == b"\n"
        and _digest_to(data, shape.size) == shape.digest
    )


def _last_anchor(anchor: bytes, data: bytes, end: int) -> int | None:
    """Where the last line of `data[:end]` equal to the anchor's line ends, if there is one."""
    line = anchor[1:-1]
    if data.endswith(anchor[:-1], 0, end) or (end == len(line) and data.startswith(line)):
        return end
    found = data.rfind(anchor, 0, end)
    if found >= 0:
        return found + len(anchor) - 1
    if data.startswith(anchor[1:]):
        return len(line)
    return None


def _check_overlap(
    shape: Shape, packed: bytes, data: bytes, start: int, overlap_end: int
) -> tuple[int, int] | None:
    """Prove `data[:overlap_end]` equals the previous text from byte `start` to its end.

    `packed` is the previous state (`shape` unpacked). Returns the index of the previous line the
    new tail starts with and the first block that lies wholly inside the overlap, or None if the
    bytes differ (or `start` is not a line start).
    """
    offsets, count = shape.offsets, line_count(packed)
    if start == 0:  # the tail only grew: one digest of the whole previous text proves it
        return (0, 0) if _digest_to(data, overlap_end) == shape.digest else None
    first_block = bisect.bisect_left(offsets, start)
    if first_block == len(offsets):  # the overlap lies inside the open block: check it by lines
        lines = data[:overlap_end].split(b"\n")
        return (count - len(lines), first_block) if _lines_match(lines, packed, count) else None
    head_end = offsets[first_block] - start
    boundary = shape.phase + first_block * shape.block_lines
    head: list[bytes] = []
    if head_end:  # lines before the first block boundary inside the overlap: check by lines
        if data[head_end - 1] != _NEWLINE:
            return None
        head = data[: head_end - 1].split(b"\n")
    proven = (
        _lines_match(head, packed, boundary)
        and _blocks_match(shape, data, start, first_block)
        and _block_digest(data[offsets[-1] - start : overlap_end]) == shape.open_digest
    )
    return (boundary - len(head), first_block) if proven else None


def _lines_match(lines: list[bytes], packed: bytes, end: int) -> bool:
    """Whether `lines` are the previous tail's lines just before line `end`, by fingerprints
    (`packed` is the previous state)."""
    if len(lines) > end:
        return False
    return line_digests(lines) == packed[_fingerprint_at(end - len(lines)) : _fingerprint_at(end)]


def _blocks_match(shape: Shape, data: bytes, start: int, first_block: int) -> bool:
    """Whether the complete blocks from `first_block` on are where they were, byte for byte.

    One digest over the blocks' digests compares them all at once with the stored ones.
    """
    offsets = shape.offsets
    bounds = [offset - start for offset in offsets[first_block:]]
    found = b"".join(map(_block_digest, map(data.__getitem__, map(slice, bounds, bounds[1:]))))
    return found == shape.digests[first_block * _DIGEST_BYTES :]


def _close_blocks(
    shape: Shape, kept_digests: memoryview, data: bytes, *, kept_end: int, new: list[bytes]
) -> bytes:
    """`shape` with its open block split into complete blocks until it holds at most a block,
    packed with the tail's fingerprints (as `pack` would, without building that shape first).

    The tail's first lines end at byte `kept_end` (they were in the previous tail, and
    `kept_digests` are their fingerprints); the `new` lines follow. Block ends are found from the
    new lines' lengths, without splitting.
    """
    size = shape.block_lines
    kept = len(kept_digests) // _FINGERPRINT_BYTES
    offsets = array.array(shape.offsets.typecode, shape.offsets)
    digests = [shape.digests]
    carried = kept - shape.phase - (len(offsets) - 1) * size  # kept lines in the open block
    ends = [0, *itertools.accumulate(map(len, new))]  # bytes of the new lines before each one
    position = offsets[-1]
    for index in range(size - carried, len(new), size):  # a block ends before new[index]
        stop = kept_end + 1 + ends[index] + index
        digests.append(_block_digest(data[position:stop]))
        offsets.append(stop)
        position = stop
    open_digest = _block_digest(data[position : shape.size])
    lines = kept + len(new)
    head = _HEAD.pack(
        shape.digest, open_digest, shape.size, shape.phase, lines, size, len(offsets)
    )
    return b"".join((
        head, kept_digests, line_digests(new), offsets.tobytes(), *digests, shape.anchor or b""
    ))
