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

Lines older than the whole old tail (`q > len(old)`) can only show if the API's window grew since
the old tail was taken, and only past an old tail that was a full window: a shorter one held the
pod's every line, so nothing older exists. Unless the caller says the window may have grown
(`window_may_grow`), such an alignment is refused and the largest `q <= len(old)` taken instead. A
restarted pod whose new tail repeats the old tail's lines somewhere after its start (a progress
bar, a banner) would otherwise be taken for the old pod, and the lines before the repeat silently
skipped.

`Diff.ambiguous` says whether another alignment with `q >= 1` is consistent too. Within one
process the choice is always the same rule, so this does not matter; a state restored from a
checkpoint is another matter: the process that saved it may have numbered the lines after it by
another alignment (the tracker draws a new epoch rather than risk one id for two lines).

Reversing both tails turns this into one left-to-right search: the answer is `len(new) - s` for
the smallest `s` at which `reversed(old)` agrees with `reversed(new)[s:]` over their common length,
i.e. the first full match of KMP with pattern `reversed(old)` and text `reversed(new)`, or failing
one, the length KMP has matched when the text runs out. KMP keeps that linear: no quadratic
blow-up on 10,000 identical lines or periodic content. Before KMP we try the one candidate the two
tails usually agree on (the first place the old tail's last line appears), which C-level array
operations check much faster than the Python loop; only when it does not fit do we pay for the
pure-Python KMP.

Fingerprints are the 64-bit XXH3 of the line's UTF-8 bytes (`xxhash.xxh3_64_intdigest`): the same
in every process, version and platform (XXH3's output is frozen since xxHash 0.8.0), so checkpoints
can store them. Through `map` over the lines' bytes it is cheaper than the BLAKE2b-64 used
before (figures in docs/design.md); its 64 bits keep the collision odds of two different lines
in a pair of 10,000-line tails at about 10^8 / 2^64 ~ 5e-12 per poll. Checkpoints of version 1
hold BLAKE2b-64 fingerprints: such a state is `legacy`, and the first tail diffed
against it is fingerprinted both ways, then only with XXH3.

Before any of this, `diff_logs` tries the fast paths of `follower.core.tailshape`, which prove
from the tail's bytes that it is unchanged, or only slid or grew, and then split and fingerprint
only the new part; whatever they cannot prove comes here.

Size: over 300 lines because it is one algorithm: the reference diff, the fast-path entry, the
KMP alignment and the fingerprints they compare, whose correctness argument (above) spans them all.
"""

from __future__ import annotations

import array
import hashlib
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from follower.core import tailshape

Fingerprint = int

FINGERPRINT_BYTES: Final = 8
_TYPECODE: Final = "Q"  # unsigned 64-bit on every platform CPython supports
_FINGERPRINT_LIMIT: Final = 1 << (8 * FINGERPRINT_BYTES)
# Version-1 checkpoints hold BLAKE2b-64 fingerprints. Copying this prepared hasher skips the
# parameter parsing that `blake2b(data, digest_size=8)` pays on every call.
_BLAKE2B_64: Final = hashlib.blake2b(digest_size=FINGERPRINT_BYTES)
DEFAULT_MAX_LINES: Final = 100_000
_EMPTY: Final = tailshape.pack_digests(b"")


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


def _utf8(text: str) -> bytes:
    """UTF-8 bytes; a lone surrogate (e.g. from a JSON "\\ud800" escape) is kept, not refused."""
    return text.encode("utf-8", "surrogatepass")


def fingerprint(line: str) -> Fingerprint:
    """A 64-bit fingerprint of `line`, stable across processes, Python versions and platforms."""
    return tailshape.line_fingerprints([_utf8(line)])[0]


def _legacy_digest(line: bytes) -> bytes:
    hasher = _BLAKE2B_64.copy()
    hasher.update(line)
    return hasher.digest()


def _legacy_fingerprints(lines: Iterable[bytes]) -> array.array[int]:
    fingerprints = array.array(_TYPECODE)
    fingerprints.frombytes(b"".join(map(_legacy_digest, lines)))
    if sys.byteorder == "big":  # the digests are read little-endian
        fingerprints.byteswap()
    return fingerprints


@dataclass(frozen=True, slots=True, eq=False)
class TailState:
    """What the differ keeps of a pod's previous tail: its line fingerprints, oldest first.

    A fingerprint costs 8 bytes a line, against ~150 for the line itself. `packed` holds them
    together with what the fast paths know of the text (its shape), in one `bytes`
    (`tailshape.pack`: a pod's state is most of the follower's memory, and one object costs less
    than an array and a second `bytes`). The shape is not saved, so a restored state has none
    (`tailshape.pack_digests`). `legacy`: the fingerprints are BLAKE2b-64 (from a version-1
    checkpoint). Two states are equal when their fingerprints and `legacy` are: the shape only
    says how fast the next tail can be diffed.
    """

    packed: bytes
    legacy: bool = False

    @classmethod
    def of(cls, fingerprints: array.array[int], legacy: bool = False) -> TailState:
        """The state of these fingerprints (an unsigned 64-bit array), without a shape."""
        if fingerprints.typecode != _TYPECODE:
            raise ValueError(
                f"TailState needs an array of typecode {_TYPECODE!r}, "
                f"got {fingerprints.typecode!r}"
            )
        return cls(tailshape.pack_digests(tailshape.digests_from(fingerprints)), legacy)

    @property
    def fingerprints(self) -> array.array[int]:
        """The fingerprints as integers, in a new array (as the full differ and checkpoints
        read them)."""
        return tailshape.fingerprints_of(tailshape.digests_of(self.packed))

    @property
    def has_shape(self) -> bool:
        """Whether the fast paths can try the next tail against this one."""
        return tailshape.has_shape(self.packed)

    def __len__(self) -> int:
        return tailshape.line_count(self.packed)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TailState):
            return NotImplemented
        return self.legacy == other.legacy and (
            tailshape.digests_of(self.packed) == tailshape.digests_of(other.packed)
        )

    def __hash__(self) -> int:
        return hash((tailshape.digests_of(self.packed), self.legacy))

    def __repr__(self) -> str:
        return f"TailState(fingerprints={self.to_list()!r}, legacy={self.legacy!r})"

    @classmethod
    def empty(cls) -> TailState:
        """The state of a pod whose tail held no lines."""
        return cls(_EMPTY)

    @classmethod
    def from_lines(cls, lines: Iterable[str]) -> TailState:
        """The state that remembers `lines` as the previous tail."""
        return cls(tailshape.pack_digests(tailshape.line_digests(map(_utf8, lines))))

    def to_list(self) -> list[int]:
        """The fingerprints as plain integers, for a checkpoint file."""
        return self.fingerprints.tolist()

    @classmethod
    def from_list(cls, values: Iterable[object], *, legacy: bool = False) -> TailState:
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
        return cls.of(fingerprints, legacy)


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
    ambiguous: bool = False
    """Another alignment with at least one seen line was consistent too (only computed when asked
    for, with `check_unique`)."""


def diff_tail(
    previous: TailState | None,
    lines: Sequence[str],
    *,
    window_may_grow: bool = False,
    check_unique: bool = False,
) -> Diff:
    """The lines of the new tail `lines` that the previous tail did not hold.

    `previous` is None for a pod never seen: every line is new and `gap` is False; the caller
    decides what first sight means. An empty tail carries no information, so it yields nothing and
    keeps the previous state; if the pod really restarted, the next non-empty tail will not line up.
    This is the reference `diff_logs` must agree with; it keeps no shape, so no fast path.
    """
    if not lines:
        return _empty(previous)
    raw = [_utf8(line) for line in lines]
    digests = tailshape.line_digests(raw)
    fingerprints = tailshape.fingerprints_of(digests)
    seen, ambiguous = _seen(previous, raw, fingerprints, window_may_grow, check_unique)
    state = TailState(tailshape.pack_digests(digests))
    return Diff(list(lines[seen:]), _is_gap(previous, seen), state, ambiguous)


def diff_logs(
    previous: TailState | None,
    logs: str,
    max_lines: int = DEFAULT_MAX_LINES,
    block_lines: int | None = None,
    *,
    window_may_grow: bool = False,
    check_unique: bool = False,
) -> Diff:
    """`diff_tail(previous, split_lines(logs)[-max_lines:])`, without splitting what is not new.

    The fast paths answer when they can prove the answer (an unchanged tail, or one that slid or
    grew); otherwise the tail's bytes are split and fingerprinted whole. `block_lines` is for
    tests, which use small blocks to exercise block boundaries (see `tailshape.build`).
    `check_unique` skips the fast paths: they prove their alignment, not that it is the only one.
    """
    if not logs:
        return _empty(previous)
    data = _utf8(logs)
    if previous is not None and not check_unique:
        # A state without a shape is never unchanged, and align never answers for it.
        packed = previous.packed
        if tailshape.unchanged(packed, data):
            return Diff([], False, previous)
        aligned = tailshape.align(packed, data)
        if aligned is not None and tailshape.line_count(aligned.packed) <= max_lines:
            return Diff(aligned.new_lines, False, TailState(aligned.packed))
    return _full_diff(
        previous, data, max_lines, block_lines,
        window_may_grow=window_may_grow, check_unique=check_unique,
    )


def _full_diff(
    previous: TailState | None,
    data: bytes,
    max_lines: int,
    block_lines: int | None,
    *,
    window_may_grow: bool,
    check_unique: bool,
) -> Diff:
    end = tailshape.content_end(data)
    raw = data[:end].split(b"\n")
    crlf = b"\r" in data
    if crlf:
        raw = [line[:-1] if line.endswith(b"\r") else line for line in raw]
    cut = len(raw) > max_lines
    if cut:
        raw = raw[-max_lines:]
    digests = tailshape.line_digests(raw)
    seen, ambiguous = _seen(
        previous, raw, tailshape.fingerprints_of(digests), window_may_grow, check_unique
    )
    if crlf or cut:
        packed = tailshape.pack_digests(digests)
    else:
        packed = tailshape.pack(tailshape.build(data, raw, block_lines), digests)
    state = TailState(packed)
    return Diff(_decode(raw[seen:]), _is_gap(previous, seen), state, ambiguous)


def _empty(previous: TailState | None) -> Diff:
    return Diff([], False, previous if previous is not None else TailState.empty())


def _seen(
    previous: TailState | None,
    raw: list[bytes],
    fingerprints: array.array[int],
    window_may_grow: bool,
    check_unique: bool,
) -> tuple[int, bool]:
    """How many leading lines of the new tail were seen, comparing like fingerprints with like,
    and whether another alignment was consistent too (when `check_unique`)."""
    if previous is None:
        return 0, False
    old = previous.fingerprints
    current = _legacy_fingerprints(raw) if previous.legacy else fingerprints
    seen = _seen_count(old, current, window_may_grow=window_may_grow)
    if not check_unique or not old or not current:
        return seen, False
    found = _kmp_alignments(old[::-1].tolist(), current[::-1].tolist(), window_may_grow, 2)
    return seen, len(found) > 1 or (bool(found) and found[0] != seen)


def _is_gap(previous: TailState | None, seen: int) -> bool:
    return seen == 0 and previous is not None and len(previous) > 0


def _decode(raw: list[bytes]) -> list[str]:
    """The lines as text: one decode of the joined bytes, then one split."""
    if not raw:
        return []
    return b"\n".join(raw).decode("utf-8", "surrogatepass").split("\n")


def _seen_count(
    previous: array.array[int], current: array.array[int], *, window_may_grow: bool
) -> int:
    """How many leading lines of `current` the largest consistent alignment says were seen.

    Works on the reversed tails (see the module docstring): the answer is `len(current) - s` for
    the smallest `s` at which the reversed previous tail fits against the reversed current one,
    and without `window_may_grow` the smallest `s >= len(current) - len(previous)` (no line older
    than the previous tail).
    """
    if not previous or not current:
        return 0
    if len(current) > len(previous) and current[: len(previous)] == previous:
        # A longer tail that starts with the previous one grew: the previous tail was not full
        # (the window holds at least the new length), so no line older than its first can show
        # now. A later occurrence of its lines is new lines repeating them, not the same lines.
        return len(previous)
    pattern = previous[::-1]
    text = current[::-1]
    lowest = 0 if window_may_grow else max(0, len(text) - len(pattern))
    likely = _first_candidate(pattern, text, lowest)
    if likely is not None:
        return likely
    return _kmp_seen_count(pattern.tolist(), text.tolist(), window_may_grow=window_may_grow)


def _fits(pattern: array.array[int], text: array.array[int], start: int) -> bool:
    """Whether `pattern` agrees with `text[start:]` over their common length."""
    length = min(len(pattern), len(text) - start)
    return text[start : start + length] == pattern[:length]


def _first_candidate(
    pattern: array.array[int], text: array.array[int], lowest: int = 0
) -> int | None:
    """The answer if the first candidate position from `lowest` on decides it, else None.

    Any fit starts where `text` holds `pattern[0]` (the previous tail's last line), so the first
    such position is the smallest candidate: if it fits, it is the answer; if there is none,
    nothing aligns. Both are C-level array scans, which is why this runs before the pure-Python KMP.
    """
    try:
        start = text.index(pattern[0], lowest)
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


def _kmp_seen_count(
    pattern: Sequence[int], text: Sequence[int], *, window_may_grow: bool = True
) -> int:
    """`len(text) - s` for the smallest `s` where `pattern` fits `text[s:]`, in linear time (with
    `window_may_grow` False, the smallest `s >= len(text) - len(pattern)`)."""
    found = _kmp_alignments(pattern, text, window_may_grow, 1)
    return found[0] if found else 0


def _kmp_alignments(
    pattern: Sequence[int], text: Sequence[int], window_may_grow: bool, limit: int
) -> list[int]:
    """The first `limit` consistent alignments (`len(text) - s` for each `s` where `pattern` fits
    `text[s:]`, at least 1), largest first, in linear time.

    A full match ending at `end` starts at `s = end - len(pattern)`; one that ends before the text
    does sees lines older than the whole previous tail, so it counts only with `window_may_grow`.
    When the text runs out, the length KMP has matched is the longest suffix of `text` that is a
    prefix of `pattern` (a fit running off the end of `text`), and the failure function lists the
    shorter ones.
    """
    found: list[int] = []
    if not pattern:
        return found
    failure = _failure_function(pattern)
    matched = 0
    last = len(text)
    for end, value in enumerate(text, start=1):
        while matched and pattern[matched] != value:
            matched = failure[matched - 1]
        if pattern[matched] == value:
            matched += 1
            if matched == len(pattern) and end < last:
                if window_may_grow:
                    found.append(last - (end - matched))
                    if len(found) >= limit:
                        return found
                matched = failure[matched - 1]
    while matched and len(found) < limit:
        found.append(matched)
        matched = failure[matched - 1]
    return found
