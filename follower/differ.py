"""Which lines of a pod's log tail are new since the previous poll.

The API returns, per pod, only the current tail of its output: no offsets, no cursors. Each poll
sees a window over the same history that ends later; the differ lines the new window up against the
previous one and reports the lines past the end of the old window. It keeps only the previous
tail's line fingerprints (8 bytes a line), never the lines themselves.

Alignment. Let `q` be how many leading lines of the new tail were already seen. An alignment is
consistent when the first `q` lines of the new tail end with the same lines as the old tail (their
last `min(q, len(old))` lines agree). Repeated lines make several alignments consistent; we take
the largest `q`, the one that assumes the fewest new lines, so that a line is never emitted twice.
That is the end of the last occurrence of the whole old tail inside the new one if there is one
(the window grew), else the longest prefix of the new tail that is a suffix of the old one (the
window slid).

Reversing both tails turns this into one left-to-right search: the answer is `len(new) - s` for
the smallest `s` at which `reversed(old)` agrees with `reversed(new)[s:]` over their common length,
i.e. the first full match of KMP with pattern `reversed(old)` and text `reversed(new)`, or failing
one, the length KMP has matched when the text runs out. KMP keeps that linear: no quadratic
blow-up on 10,000 identical lines or periodic content. Before KMP we try the one candidate the two
tails usually agree on (the first place the old tail's last line appears), which C-level array
operations check some twenty times faster than the Python loop; only when it does not fit do we pay
for the pure-Python KMP.

Fingerprints are the 8-byte BLAKE2b digest of the line's UTF-8 bytes, read as a little-endian
integer: the same in every process, Python version and platform, so checkpoints can store them.
`bench/differ.py` measured the stdlib options on ~100-byte lines; the per-call overhead dominates,
not the hashing itself. Copying a prepared BLAKE2b-64 hasher is as fast as
`crc32(b) << 32 | adler32(b)` and faster than `blake2b(b, digest_size=8)`, MD5, SHA-1 or SHA-256,
while CRC-32 and Adler-32 are linear checksums whose 64 bits hold far less than 64 bits of entropy
on short lines (and collide on demand). With a real 64-bit hash, two different lines in a pair of
10,000-line tails share a fingerprint with probability about 10^8 / 2^64 ~ 5e-12 per poll.
"""

from __future__ import annotations

import array
import hashlib
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

Fingerprint = int

FINGERPRINT_BYTES: Final = 8
_TYPECODE: Final = "Q"  # unsigned 64-bit on every platform CPython supports
_FINGERPRINT_LIMIT: Final = 1 << (8 * FINGERPRINT_BYTES)
# Copying this prepared hasher skips the parameter parsing that `blake2b(data, digest_size=8)` pays
# on every call, which is most of the cost for a 100-byte line.
_BLAKE2B_64: Final = hashlib.blake2b(digest_size=FINGERPRINT_BYTES)


def split_lines(logs: str) -> list[str]:
    """The lines of a tail: split on "\\n", drop one "\\r" ending each, none after a final "\\n"."""
    if not logs:
        return []
    lines = logs.split("\n")
    if not lines[-1]:  # a final "\n" ends the last line rather than starting another
        lines.pop()
    if "\r" in logs:  # one C-level scan saves a Python-level pass over tails without CRLF
        lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    return lines


def _digest(line: str) -> bytes:
    """The 8-byte BLAKE2b digest of the line's UTF-8 bytes."""
    hasher = _BLAKE2B_64.copy()
    try:
        data = line.encode()
    except UnicodeEncodeError:  # a lone surrogate, e.g. from a JSON "\ud800" escape, still hashes
        data = line.encode("utf-8", "surrogatepass")
    hasher.update(data)
    return hasher.digest()


def fingerprint(line: str) -> Fingerprint:
    """A 64-bit fingerprint of `line`, stable across processes, Python versions and platforms."""
    return int.from_bytes(_digest(line), "little")


def _fingerprints(lines: Iterable[str]) -> array.array[int]:
    """`fingerprint()` of every line, packed from the digests without an int object per line."""
    fingerprints = array.array(_TYPECODE)
    fingerprints.frombytes(b"".join(map(_digest, lines)))
    if sys.byteorder == "big":  # the digests are read little-endian, as `fingerprint` reads them
        fingerprints.byteswap()
    return fingerprints


@dataclass(frozen=True, slots=True)
class TailState:
    """What the differ keeps of a pod's previous tail: its line fingerprints, oldest first.

    An array of unsigned 64-bit integers costs 8 bytes a line, against ~150 for the line itself.
    Treat it as immutable: the differ never changes an array it has handed out.
    """

    fingerprints: array.array[int]

    def __post_init__(self) -> None:
        if self.fingerprints.typecode != _TYPECODE:
            raise ValueError(
                f"TailState needs an array of typecode {_TYPECODE!r}, "
                f"got {self.fingerprints.typecode!r}"
            )

    def __len__(self) -> int:
        return len(self.fingerprints)

    @classmethod
    def empty(cls) -> TailState:
        """The state of a pod whose tail held no lines."""
        return cls(array.array(_TYPECODE))

    @classmethod
    def from_lines(cls, lines: Iterable[str]) -> TailState:
        """The state that remembers `lines` as the previous tail."""
        return cls(_fingerprints(lines))

    def to_list(self) -> list[int]:
        """The fingerprints as plain integers, for a checkpoint file."""
        return self.fingerprints.tolist()

    @classmethod
    def from_list(cls, values: Iterable[object]) -> TailState:
        """The state saved by `to_list()`; ValueError names the first bad value.

        Takes any objects because the values come from a checkpoint file that may be damaged.
        """
        fingerprints = array.array(_TYPECODE)
        for index, value in enumerate(values):
            # bool is an int subclass, but a checkpoint holding `true` is damaged.
            if (
                isinstance(value, bool)
                or not isinstance(value, int)
                or not 0 <= value < _FINGERPRINT_LIMIT
            ):
                raise ValueError(
                    f"fingerprints[{index}]: expected an integer in [0, 2**64), got {value!r}"
                )
            fingerprints.append(value)
        return cls(fingerprints)


@dataclass(frozen=True, slots=True)
class Diff:
    """The outcome of one poll of one pod.

    `new_lines` is always a suffix of the new tail. `gap` means lines may have been missed before
    `new_lines`: nothing in the new tail lines up with the previous one, because the pod restarted
    or more lines arrived than the tail holds. `state` is what to pass as `previous` next time.
    """

    new_lines: list[str]
    gap: bool
    state: TailState


def diff_tail(previous: TailState | None, lines: Sequence[str]) -> Diff:
    """The lines of the new tail `lines` that the previous tail did not hold.

    `previous` is None for a pod never seen: every line is new and `gap` is False; the caller
    decides what first sight means. An empty tail carries no information, so it yields nothing and
    keeps the previous state; if the pod really restarted, the next non-empty tail will not line up.
    """
    if not lines:
        kept = previous if previous is not None else TailState.empty()
        return Diff(new_lines=[], gap=False, state=kept)
    state = TailState.from_lines(lines)
    if previous is None:
        return Diff(new_lines=list(lines), gap=False, state=state)
    seen = _seen_count(previous.fingerprints, state.fingerprints)
    gap = seen == 0 and len(previous) > 0
    return Diff(new_lines=list(lines[seen:]), gap=gap, state=state)


def _seen_count(previous: array.array[int], current: array.array[int]) -> int:
    """How many leading lines of `current` the largest consistent alignment says were seen.

    Works on the reversed tails (see the module docstring): the answer is `len(current) - s` for
    the smallest `s` at which the reversed previous tail fits against the reversed current one.
    """
    if not previous or not current:
        return 0
    pattern = previous[::-1]
    text = current[::-1]
    likely = _first_candidate(pattern, text)
    if likely is not None:
        return likely
    return _kmp_seen_count(pattern.tolist(), text.tolist())


def _fits(pattern: array.array[int], text: array.array[int], start: int) -> bool:
    """Whether `pattern` agrees with `text[start:]` over their common length."""
    length = min(len(pattern), len(text) - start)
    return text[start : start + length] == pattern[:length]


def _first_candidate(pattern: array.array[int], text: array.array[int]) -> int | None:
    """The answer if the first candidate position decides it, else None.

    Any fit starts where `text` holds `pattern[0]` (the previous tail's last line), so the first
    such position is the smallest candidate: if it fits, it is the answer; if there is none,
    nothing aligns. Both are C-level array scans, which is why this runs before the pure-Python KMP.
    """
    try:
        start = text.index(pattern[0])
    except ValueError:
        return 0
    if _fits(pattern, text, start):
        return len(text) - start
    return None


def _failure_function(pattern: Sequence[int]) -> list[int]:
    """For each i, the length of the longest proper prefix of `pattern[: i + 1]` that ends it."""
    failure = [0] * len(pattern)
    matched = 0
    for index in range(1, len(pattern)):
        value = pattern[index]
        while matched and pattern[matched] != value:
            matched = failure[matched - 1]
        if pattern[matched] == value:
            matched += 1
        failure[index] = matched
    return failure


def _kmp_seen_count(pattern: Sequence[int], text: Sequence[int]) -> int:
    """`len(text) - s` for the smallest `s` where `pattern` fits `text[s:]`, in linear time.

    A full match ending at `end` starts at `s = end - len(pattern)`. Without one, the length KMP has
    matched when the text runs out is the longest suffix of `text` that is a prefix of `pattern`:
    the fit that runs off the end of `text`, at `s = len(text) - matched`.
    """
    if not pattern:
        return 0
    failure = _failure_function(pattern)
    matched = 0
    for end, value in enumerate(text, start=1):
        while matched and pattern[matched] != value:
            matched = failure[matched - 1]
        if pattern[matched] == value:
            matched += 1
            if matched == len(pattern):
                return len(text) - (end - matched)
    return matched
