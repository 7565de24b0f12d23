"""The differ: table cases, a sliding-window model driven by hypothesis, and linear-time bounds."""

from __future__ import annotations

import array
import hashlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import overload

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from follower.core import tailshape
from follower.core.differ import (
    Diff,
    TailState,
    _kmp_seen_count,
    diff_logs,
    diff_tail,
    fingerprint,
    split_lines,
)

PROPERTY_SETTINGS = settings(max_examples=200, deadline=None)
MEGABYTE = 1_000_000


def legacy_fingerprint(line: str) -> int:
    """A version-1 fingerprint, computed apart from the differ: the little-endian BLAKE2b-64 of
    the line's UTF-8 bytes (a lone surrogate kept)."""
    digest = hashlib.blake2b(line.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


# --- split_lines ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("logs", "expected"),
    [
        ("", []),
        ("\n", [""]),
        ("\n\n", ["", ""]),
        ("a", ["a"]),
        ("a\n", ["a"]),
        ("a\nb", ["a", "b"]),
        ("a\nb\n", ["a", "b"]),
        ("a\n\nb\n", ["a", "", "b"]),
        ("a\r\nb\r\n", ["a", "b"]),
        ("a\r\nb", ["a", "b"]),
        ("\r\n", [""]),
        ("a\r\r\n", ["a\r"]),
        ("a\rb\n", ["a\rb"]),
        ("a\nb\r", ["a", "b"]),
        (" a \n\tb\t\n", [" a ", "\tb\t"]),
    ],
    ids=repr,
)
def test_split_lines(logs: str, expected: list[str]) -> None:
    """A tail splits on "\\n", loses one "\\r" per line and no empty line follows a final "\\n"."""
    assert split_lines(logs) == expected


def test_split_lines_keeps_megabyte_lines_whole() -> None:
    """Lines of a megabyte come back whole and unchanged, with or without CRLF."""
    first, second = "x" * MEGABYTE, "y" * MEGABYTE
    assert split_lines(f"{first}\n{second}\n") == [first, second]
    assert split_lines(f"{first}\r\n{second}") == [first, second]


LINE_WITHOUT_ENDING = st.text(st.characters(exclude_characters="\n")).map(lambda s: s.rstrip("\r"))


@given(st.lists(LINE_WITHOUT_ENDING))
@PROPERTY_SETTINGS
def test_split_lines_inverts_newline_terminated_join(lines: list[str]) -> None:
    """Every line written with a trailing "\\n" comes back as exactly that line."""
    assert split_lines("".join(f"{line}\n" for line in lines)) == lines


# --- fingerprint and TailState -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        # BLAKE2b with an 8-byte digest (RFC 7693), read little-endian: fixed by the standard, so
        # these hold in every process and Python version; checkpoints depend on them.
        ("", 13020603013274838756),
        ("hello", 9022087748821825191),
        ("é", 3394012004367669963),
        ("\ud800", 7497787021708494914),
    ],
    ids=repr,
)
def test_legacy_fingerprint_is_pinned_blake2b_64(line: str, expected: int) -> None:
    """A version-1 fingerprint is the little-endian BLAKE2b-64 of the UTF-8 line, surrogates too."""
    assert legacy_fingerprint(line) == expected


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        # XXH3-64 with seed 0 (xxHash >= 0.8.0 froze its output): the same in every process and
        # on every platform; version-2 checkpoints depend on them. "" is the published value.
        ("", 0x2D06800538D394C2),
        ("hello", 10760762337991515389),
        ("\u00e9", 17839895020865391795),
        ("\ud800", 15756832317056903632),
    ],
    ids=repr,
)
def test_fingerprint_is_pinned_xxh3_64(line: str, expected: int) -> None:
    """A fingerprint is the XXH3-64 of the UTF-8 line, lone surrogates too."""
    assert fingerprint(line) == expected


# Lone surrogates come out of JSON "\ud800" escapes; they must fingerprint like any other text.
ANY_CHARACTER = st.characters(exclude_categories=()) | st.sampled_from(["\ud800", "\udfff"])


@given(st.lists(st.text(alphabet=ANY_CHARACTER, max_size=20)))
@PROPERTY_SETTINGS
def test_state_from_lines_holds_each_fingerprint(lines: list[str]) -> None:
    """The state of a tail holds `fingerprint()` of each line, oldest first, 8 bytes a line."""
    state = TailState.from_lines(lines)
    assert state.to_list() == [fingerprint(line) for line in lines]
    assert len(state) == len(lines)
    assert state.fingerprints.itemsize == 8


def test_state_round_trips_through_a_list() -> None:
    """`from_list(to_list())` gives back an equal state, extremes of the range included."""
    state = TailState.from_list([0, 1, 2**64 - 1])
    assert TailState.from_list(state.to_list()) == state
    assert TailState.from_list([]) == TailState.empty() == TailState.from_lines([])


@pytest.mark.parametrize("bad", [-1, 2**64, True, 1.0, "1", None], ids=repr)
def test_state_from_list_rejects_non_fingerprints(bad: object) -> None:
    """A damaged checkpoint value is refused with a ValueError naming its index."""
    with pytest.raises(ValueError, match=r"fingerprints\[1\]"):
        TailState.from_list([5, bad])


def test_state_refuses_arrays_of_another_type() -> None:
    """A TailState only wraps unsigned 64-bit arrays, the type fingerprints are stored in."""
    with pytest.raises(ValueError, match="typecode"):
        TailState.of(array.array("q", [1]))


def test_state_equality_is_of_fingerprints_and_legacy_not_shape() -> None:
    """A state with a shape equals (and hashes like) the shapeless state of the same lines; the
    same fingerprints marked legacy do not."""
    shaped = diff_logs(None, "a\nb\n").state
    plain = TailState.from_lines(["a", "b"])
    assert shaped.has_shape and not plain.has_shape
    assert shaped == plain and hash(shaped) == hash(plain)
    assert TailState.from_list(plain.to_list(), legacy=True) != plain
    assert repr(plain) == f"TailState(fingerprints={plain.to_list()!r}, legacy=False)"


def test_state_without_a_shape_is_diffed_by_the_full_differ() -> None:
    """A restored state (fingerprints only) is never taken as unchanged nor aligned by the fast
    paths, even for its own text; the full differ answers and leaves a state with a shape."""
    restored = TailState.from_list(TailState.from_lines(["a", "b", "c"]).to_list())
    assert not restored.has_shape
    assert not tailshape.unchanged(restored.packed, b"a\nb\nc\n")
    assert tailshape.align(restored.packed, b"b\nc\nd\n") is None
    diff = diff_logs(restored, "b\nc\nd\n")
    assert (diff.new_lines, diff.gap) == (["d"], False) and diff.state.has_shape


@given(st.lists(LINE_WITHOUT_ENDING, min_size=1), st.integers(1, 5))
@PROPERTY_SETTINGS
def test_packed_state_reads_back_its_shape_and_fingerprints(
    lines: list[str], block_lines: int
) -> None:
    """One `bytes` holds a tail's shape and its fingerprints: each reads back as packed, and the
    fingerprints read as integers are `fingerprint()` of each line."""
    raw = [line.encode("utf-8", "surrogatepass") for line in lines]
    data = b"\n".join(raw) + b"\n"
    shape = tailshape.build(data, raw, block_lines)
    digests = tailshape.line_digests(raw)
    packed = tailshape.pack(shape, digests)
    assert tailshape.unpack(packed) == shape
    assert tailshape.digests_of(packed) == digests
    assert tailshape.line_count(packed) == len(lines) and tailshape.has_shape(packed)
    assert tailshape.fingerprints_of(digests).tolist() == [fingerprint(line) for line in lines]


# --- diff_tail: table ----------------------------------------------------------------------------


def diff_lines(
    previous: list[str] | None, lines: list[str], *, window_may_grow: bool = True
) -> Diff:
    """Diff `lines` against a previous tail given as lines (None: the pod was never seen)."""
    state = None if previous is None else TailState.from_lines(previous)
    return diff_tail(state, lines, window_may_grow=window_may_grow)


@pytest.mark.parametrize(
    ("previous", "lines", "new_lines", "gap"),
    [
        pytest.param(None, ["a", "b"], ["a", "b"], False, id="first-sight"),
        pytest.param([], ["a", "b"], ["a", "b"], False, id="previous-empty"),
        pytest.param(["1", "2", "3", "4"], ["3", "4", "5", "6"], ["5", "6"], False, id="slid"),
        pytest.param(["1", "2"], ["1", "2", "3", "4"], ["3", "4"], False, id="grew-at-end"),
        pytest.param(["2", "3"], ["1", "2", "3", "4"], ["4"], False, id="grew-both-ends"),
        pytest.param(["1", "2", "3", "4"], ["4", "5"], ["5"], False, id="shrunk-and-slid"),
        pytest.param(["1", "2", "3", "4"], ["3", "4"], [], False, id="shrunk-suffix"),
        pytest.param(["1", "2", "3"], ["1", "2", "3"], [], False, id="identical"),
        pytest.param(["1", "2", "3"], ["x", "y"], ["x", "y"], True, id="restart"),
        pytest.param(["1", "2"], ["5", "6"], ["5", "6"], True, id="more-than-the-tail"),
        pytest.param(["go", "w1", "w2"], ["go", "w1"], ["go", "w1"], True, id="restart-same-start"),
        pytest.param(["1", "2"], ["2", "3", "1", "2"], [], False, id="last-occurrence-of-old"),
        pytest.param(["a", "b"], ["a", "b", "a", "b"], ["a", "b"], False, id="grown-when-periodic"),
        pytest.param(["1", "2"], ["9", "1", "2"], [], False, id="periodic-not-grown"),
        pytest.param(["x", "a"], ["x", "a", "a"], ["a"], False, id="repeat-proven-by-anchor"),
        pytest.param(["x", "a"], ["a", "a"], ["a"], False, id="repeat-proven-by-slide"),
        pytest.param(["a", "a"], ["a", "a", "a"], ["a"], False, id="grown-by-a-repeat"),
        pytest.param(["x"], ["x", "b", "c", "x"], ["b", "c", "x"], False, id="short-tail-grew"),
        pytest.param(["x", "a", "a"], ["a", "a", "a"], ["a"], False, id="first-candidate-fails"),
        pytest.param(["b", "a", "b"], ["a", "b", "c"], ["c"], False, id="overlap-not-first-line"),
        pytest.param(["", "a"], ["a", "", ""], ["", ""], False, id="empty-lines"),
    ],
)
def test_diff_tail_table(
    previous: list[str] | None, lines: list[str], new_lines: list[str], gap: bool
) -> None:
    """The new lines are those past the alignment that assumes the fewest new lines (where the
    window may have grown: lines older than the previous tail may show)."""
    diff = diff_lines(previous, lines)
    assert (diff.new_lines, diff.gap) == (new_lines, gap)
    assert diff.state == TailState.from_lines(lines)


@pytest.mark.parametrize(
    ("previous", "lines", "new_lines", "gap"),
    [
        pytest.param(["2", "3"], ["1", "2", "3", "4"], ["1", "2", "3", "4"], True, id="older-line"),
        pytest.param(["1", "2"], ["2", "3", "1", "2"], ["3", "1", "2"], False, id="slid-not-older"),
        pytest.param(["1", "2"], ["9", "1", "2"], ["9", "1", "2"], True, id="periodic-older"),
        pytest.param(["1", "2"], ["1", "2", "3"], ["3"], False, id="grew"),
        pytest.param(["1", "2", "3"], ["2", "3", "4"], ["4"], False, id="slid"),
        pytest.param(
            ["bar"], ["a", "b", "bar", "c"], ["a", "b", "bar", "c"], True, id="restart-repeats-bar"
        ),
    ],
)
def test_without_a_grown_window_no_line_older_than_the_previous_tail_shows(
    previous: list[str], lines: list[str], new_lines: list[str], gap: bool
) -> None:
    """Unless the window may have grown, nothing older than the previous tail can show: the
    alignment that needs it is refused, so a restart whose tail repeats the previous one after
    its start (a progress bar) is a gap, not a silent skip of the lines before the repeat."""
    diff = diff_lines(previous, lines, window_may_grow=False)
    assert (diff.new_lines, diff.gap) == (new_lines, gap)
    assert len(lines) - len(diff.new_lines) <= len(previous)


@pytest.mark.parametrize(
    ("previous", "lines", "ambiguous"),
    [
        pytest.param(["x", "P", "P"], ["P", "P", "y"], True, id="two-ways"),
        pytest.param(["x", "P"], ["P", "y"], False, id="one-way"),
        pytest.param(["a", "b"], ["a", "b", "c"], False, id="grew"),
        pytest.param(["a"], ["a", "a", "c"], False, id="grew-by-a-repeat"),
        pytest.param(["a", "a"], ["a", "a"], True, id="unchanged-or-one-more"),
        pytest.param(["a", "b"], ["c"], False, id="gap"),
    ],
)
def test_ambiguous_says_whether_another_alignment_fits(
    previous: list[str], lines: list[str], ambiguous: bool
) -> None:
    """`check_unique` reports whether an alignment other than the chosen one, with a seen line,
    is consistent too; diff_logs agrees, even where a fast path would have answered."""
    state = TailState.from_lines(previous)
    assert diff_tail(state, lines, check_unique=True).ambiguous is ambiguous
    assert diff_tail(state, lines).ambiguous is False  # not computed unless asked
    shaped = diff_logs(None, as_logs(previous, "\n")).state
    assert diff_logs(shaped, as_logs(lines, "\n"), check_unique=True).ambiguous is ambiguous


def test_empty_tail_keeps_the_previous_state() -> None:
    """An empty tail yields nothing, no gap, and hands back the previous state itself."""
    previous = TailState.from_lines(["a", "b"])
    diff = diff_tail(previous, [])
    assert (diff.new_lines, diff.gap) == ([], False)
    assert diff.state is previous
    assert diff_tail(previous, ["b", "c"]).new_lines == ["c"]


def test_empty_tail_keeps_an_empty_previous_state_too() -> None:
    """An empty tail after an empty one hands back that same empty state."""
    previous = TailState.empty()
    assert diff_tail(previous, []).state is previous


def test_empty_tail_of_unseen_pod_gives_empty_state() -> None:
    """An empty tail of a pod never seen yields nothing and an empty state."""
    diff = diff_tail(None, [])
    assert (diff.new_lines, diff.gap, diff.state) == ([], False, TailState.empty())


def test_new_lines_is_a_list_of_the_tail_suffix() -> None:
    """Whatever sequence the tail comes in, the new lines are a fresh list."""
    diff = diff_tail(TailState.from_lines(["a"]), ("a", "b"))
    assert diff.new_lines == ["b"]
    assert isinstance(diff.new_lines, list)


# --- diff_tail: against a sliding-window model ---------------------------------------------------


def reference_seen(old: Sequence[str], new: Sequence[str], window_may_grow: bool = True) -> int:
    """The number of leading lines of `new` already seen, by the definition, in quadratic time.

    A longer `new` that starts with `old` grew: `len(old)`. Otherwise the largest consistent
    alignment (`largest_consistent`).
    """
    if old and len(new) > len(old) and list(new[: len(old)]) == list(old):
        return len(old)
    return largest_consistent(old, new, window_may_grow)


def largest_consistent(old: Sequence[str], new: Sequence[str], window_may_grow: bool = True) -> int:
    """The end of the last occurrence of `old` inside `new` (only where the window may have
    grown, if lines precede it), else the longest prefix of `new` that is a suffix of `old`: the
    alignment that assumes the fewest new lines."""
    if not old:
        return 0
    last = len(new) - len(old)
    for start in range(last if window_may_grow else min(last, 0), -1, -1):  # lines before old?
        if list(new[start : start + len(old)]) == list(old):
            return start + len(old)
    for seen in range(min(len(old), len(new)), 0, -1):
        if list(new[:seen]) == list(old[len(old) - seen :]):
            return seen
    return 0


def consistent(old: Sequence[str], new: Sequence[str], seen: int) -> bool:
    """Whether both tails can be windows of one history in which `new[:seen]` was already seen."""
    overlap = min(seen, len(old))
    return 0 <= seen <= len(new) and list(new[seen - overlap : seen]) == list(
        old[len(old) - overlap :]
    )


@dataclass(frozen=True)
class Step:
    """One poll of the model: true windows (start, end) over the history, the differ's answer."""

    previous: tuple[int, int] | None  # the last non-empty window, which the differ's state holds
    window: tuple[int, int]
    old_tail: list[str]
    tail: list[str]
    diff: Diff

    @property
    def seen(self) -> int:
        """How many leading lines of the tail the differ took as already seen."""
        return len(self.tail) - len(self.diff.new_lines)


def follow(
    history: Sequence[str], windows: Sequence[tuple[int, int]], window_may_grow: bool = True
) -> Iterator[Step]:
    """Poll the windows of `history` in order through diff_tail, as the follower would."""
    state: TailState | None = None
    previous: tuple[int, int] | None = None
    for start, end in windows:
        tail = list(history[start:end])
        diff = diff_tail(state, tail, window_may_grow=window_may_grow)
        old_tail = [] if previous is None else list(history[previous[0] : previous[1]])
        yield Step(previous, (start, end), old_tail, tail, diff)
        assert diff.state == (TailState.from_lines(tail) if tail else state or TailState.empty())
        state = diff.state
        if tail:
            previous = (start, end)


@st.composite
def windows(draw: st.DrawFn) -> list[tuple[int, int]]:
    """Poll windows: lines written between polls (sometimes more than the tail) and tail sizes."""
    result = []
    end = 0
    for _ in range(draw(st.integers(1, 10))):
        end += draw(st.integers(0, 15))
        size = draw(st.integers(0, 12))
        result.append((max(0, end - size), end))
    return result


def history_length(polls: Sequence[tuple[int, int]]) -> int:
    """How many lines the history must hold for these windows."""
    return polls[-1][1]


@st.composite
def repetitive_history(draw: st.DrawFn, length: int) -> list[str]:
    """Lines from a tiny alphabet, or periodic content, so repeats fool naive alignments."""
    if draw(st.booleans()):
        period = draw(st.integers(1, 4))
        phase = draw(st.integers(0, period - 1))
        return [f"p{(index + phase) % period}" for index in range(length)]
    alphabet = st.sampled_from("abc"[: draw(st.integers(1, 3))])
    return draw(st.lists(alphabet, min_size=length, max_size=length))


@given(st.data())
@PROPERTY_SETTINGS
def test_repeated_lines_take_the_largest_consistent_alignment(data: st.DataObject) -> None:
    """With repeats, each poll takes a tail that starts with the previous one and is longer as
    grown, and otherwise the alignment that is consistent and assumes fewest new lines.

    So no line is emitted twice while the window does not grow backwards (a tail of fixed size,
    or one growing from the pod's first line), and a line is missed only where the window lost
    it or where an equally consistent alignment with fewer new lines exists.
    """
    polls = data.draw(windows())
    history = data.draw(repetitive_history(history_length(polls)))
    for step in follow(history, polls):
        diff = step.diff
        assert diff.new_lines == step.tail[step.seen :]
        if step.previous is None:
            assert (diff.new_lines, diff.gap) == (step.tail, False)
            continue
        (previous_start, previous_end), (start, end) = step.previous, step.window
        grown = len(step.tail) > len(step.old_tail) and step.tail[: len(step.old_tail)] == list(
            step.old_tail
        )
        # The differ's choice is consistent, and unless the tail grew, no alignment with fewer
        # new lines is.
        assert consistent(step.old_tail, step.tail, step.seen)
        assert grown or not any(
            consistent(step.old_tail, step.tail, larger)
            for larger in range(step.seen + 1, len(step.tail) + 1)
        )
        assert step.seen == reference_seen(step.old_tail, step.tail)
        assert diff.gap == (step.seen == 0 and bool(step.tail))
        # Never a duplicate: no more lines than were truly written since the previous poll,
        # unless the window grew backwards over lines that repeat the previous tail.
        if start >= previous_start:
            assert len(diff.new_lines) <= end - previous_end
        if start <= previous_end:  # the windows overlap or touch: the true alignment is known
            true_seen = previous_end - start
            assert consistent(step.old_tail, step.tail, true_seen)
            if start >= previous_start:  # a window that grew backwards may repeat the old tail
                assert step.seen >= true_seen


@given(st.data())
@PROPERTY_SETTINGS
def test_unique_lines_are_emitted_exactly_once_with_gaps_where_lost(data: st.DataObject) -> None:
    """With distinct lines the output is the history, plus a gap at each poll that lost lines."""
    polls = data.draw(windows())
    history = [f"line {index}" for index in range(history_length(polls))]
    emitted: list[str] = []
    expected: list[str] = []
    for step in follow(history, polls):
        start, end = step.window
        previous_end = 0 if step.previous is None else step.previous[1]
        assert step.diff.new_lines == history[max(start, previous_end) : end]
        # Adjacent windows (start == previous_end) share no line, so they too are flagged.
        lost = step.previous is not None and start >= previous_end and bool(step.tail)
        assert step.diff.gap == lost
        emitted.extend(step.diff.new_lines)
        if step.tail:
            expected.extend(history[max(start, previous_end) : end])
    assert emitted == expected
    assert len(set(emitted)) == len(emitted)


@given(
    st.lists(st.sampled_from("ab"), max_size=12),
    st.lists(st.sampled_from("ab"), max_size=14),
)
@settings(max_examples=300, deadline=None)
def test_any_pair_of_tails_matches_the_definition(old: list[str], new: list[str]) -> None:
    """For any two tails, even ones no sliding window makes, the differ follows the definition,
    with and without a window that may have grown; and reports whether it was the only choice."""
    for grow in (True, False):
        diff = diff_tail(TailState.from_lines(old), new, window_may_grow=grow, check_unique=True)
        seen = len(new) - len(diff.new_lines)
        assert seen == reference_seen(old, new, grow)
        assert diff.gap == (seen == 0 and bool(old) and bool(new))
        others = [
            q for q in range(1, len(new) + 1)
            if q != seen and consistent(old, new, q) and (grow or q <= len(old))
        ]
        assert diff.ambiguous == (bool(old) and bool(others))


@given(
    st.lists(st.integers(0, 2), max_size=12),
    st.lists(st.integers(0, 2), max_size=14),
)
@settings(max_examples=300, deadline=None)
def test_kmp_fallback_matches_the_definition(old: list[int], new: list[int]) -> None:
    """The KMP scan, diff_tail's fallback when its first candidate fails, follows the definition."""
    for grow in (True, False):
        expected = largest_consistent([str(v) for v in old], [str(v) for v in new], grow)
        assert _kmp_seen_count(old[::-1], new[::-1], window_may_grow=grow) == expected


# --- diff_logs: the fast paths agree with diff_tail ----------------------------------------------


def as_logs(lines: Sequence[str], ending: str) -> str:
    """A tail as the API sends it: lines joined by "\\n", with or without a final newline (an
    empty last line needs it, or it would not be a line)."""
    if ending or (lines and lines[-1] == ""):
        return "".join(f"{line}\n" for line in lines)
    return "\n".join(lines)


def fast_answer(previous: TailState | None, logs: str) -> tailshape.Aligned | None:
    """What the slid/grew fast path alone answers for this poll (None: it did not prove one)."""
    if previous is None or not previous.has_shape or not logs:
        return None
    data = logs.encode("utf-8", "surrogatepass")
    return tailshape.align(previous.packed, data)


def check_polls(
    history: Sequence[str], polls: Sequence[tuple[int, int]], ending: str, block_lines: int,
    max_lines: int = 1_000,
) -> list[tailshape.Aligned | None]:
    """Poll the windows through diff_logs and diff_tail side by side; both must answer alike.

    Returns what the fast path answered at each poll, so tests can check it was exercised.
    """
    fast_state: TailState | None = None
    slow_state: TailState | None = None
    answers = []
    for start, end in polls:
        tail = list(history[start:end])
        logs = as_logs(tail, ending)
        answers.append(fast_answer(fast_state, logs))
        fast = diff_logs(fast_state, logs, max_lines=max_lines, block_lines=block_lines)
        slow = diff_tail(slow_state, split_lines(logs)[-max_lines:])
        assert fast.new_lines == slow.new_lines
        assert fast.gap == slow.gap
        assert fast.state.to_list() == slow.state.to_list()
        assert fast.state == slow.state and hash(fast.state) == hash(slow.state)
        fast_state, slow_state = fast.state, slow.state
    return answers


# Lines that repeat (so anchors occur earlier in the tail and alignments are ambiguous), are empty,
# carry "\r" or non-ASCII text or a lone surrogate, or are long (longer than an anchor is kept).
ODD_LINES = st.sampled_from(
    ["a", "b", "", "a\r", "\u00e9t\u00e9", "\ud800", "x" * (tailshape.ANCHOR_MAX_BYTES + 1)]
)


@given(st.data())
@settings(max_examples=400, deadline=None)
def test_diff_logs_agrees_with_diff_tail_on_repetitive_tails(data: st.DataObject) -> None:
    """Unchanged, grown, slid, restarted and empty tails of repeated lines: the same answers."""
    polls = data.draw(windows())
    length = history_length(polls)
    if data.draw(st.booleans()):
        history = data.draw(repetitive_history(length))
    else:
        history = data.draw(st.lists(ODD_LINES, min_size=length, max_size=length))
    check_polls(
        history, polls, data.draw(st.sampled_from(["", "\n"])), data.draw(st.integers(1, 4)),
        max_lines=data.draw(st.sampled_from([3, 1_000])),
    )


@given(st.data())
@settings(max_examples=300, deadline=None)
def test_diff_logs_takes_the_fast_path_on_every_slide_of_unique_lines(data: st.DataObject) -> None:
    """Distinct lines whose window grew or slid (its start and end did not move back) and still
    overlaps the previous one: the fast path proves every such poll (nothing falls back to
    splitting the whole tail), and the answers match diff_tail."""
    polls = data.draw(windows())
    history = [f"line {index}" for index in range(history_length(polls))]
    answers = check_polls(
        history, polls, data.draw(st.sampled_from(["", "\n"])), data.draw(st.integers(1, 4))
    )
    previous: tuple[int, int] | None = None
    for (start, end), answer in zip(polls, answers, strict=True):
        if previous is not None and previous[0] <= start < previous[1] <= end:
            assert answer is not None, (previous, (start, end))
            assert answer.new == [line.encode() for line in history[previous[1] : end]]
        if end > start:
            previous = (start, end)


def test_fast_path_follows_a_tail_across_64_kib_both_ways() -> None:
    """Block offsets take 2 bytes under 64 KiB and 4 above: a tail that grows past 64 KiB and
    slides back under it is still proven by the fast path at every poll, alike with diff_tail."""
    history = [f"{index:05} " + "x" * 394 for index in range(300)]  # 400-byte lines (anchors)
    polls = [(0, 150), (0, 180), (10, 190), (40, 200), (70, 210)]  # 60, 72, 72, 64, 56 KB
    answers = check_polls(history, polls, "\n", 4)
    assert all(answer is not None for answer in answers[1:])


def test_unchanged_tail_keeps_the_state_object() -> None:
    """An identical tail (with or without its final newline) is recognised without splitting."""
    first = diff_logs(None, "a\nb\nc\n")
    assert first.state.has_shape
    for logs in ("a\nb\nc\n", "a\nb\nc"):
        again = diff_logs(first.state, logs)
        assert again.new_lines == [] and not again.gap
        assert again.state is first.state


def test_same_length_different_tail_is_not_unchanged() -> None:
    """A tail of the same length whose bytes differ is diffed, not taken as unchanged."""
    first = diff_logs(None, "a\nb\nc")
    assert diff_logs(first.state, "a\nb\nd").new_lines == ["a", "b", "d"]


def test_anchor_that_also_occurs_earlier_takes_the_last_consistent_occurrence() -> None:
    """The previous tail appears twice in a tail that does not start with it: the later
    occurrence is the answer when the lines before it fit, as diff_tail decides."""
    first = diff_logs(None, "x\nok\n", block_lines=1)
    logs, lines = "q\nx\nok\ny\nx\nok\nz\n", ["q", "x", "ok", "y", "x", "ok", "z"]
    slid = diff_logs(first.state, logs, block_lines=1, window_may_grow=True)
    assert slid.new_lines == ["z"]
    assert slid.new_lines == diff_tail(first.state, lines, window_may_grow=True).new_lines
    # Without a window that may have grown, `q` cannot be older than the previous tail: a gap.
    refused = diff_logs(first.state, logs, block_lines=1)
    assert (refused.new_lines, refused.gap) == (lines, True)


def test_a_short_tail_that_grew_keeps_lines_that_repeat_it() -> None:
    """A pod that just started: its one-line tail, then a longer tail starting with it that
    repeats the line later (a progress bar, a blank line). The tail grew, so the lines after the
    first are new, also for the fast path (the last occurrence would silently skip them)."""
    first = diff_logs(None, "x\nok\n", block_lines=1)
    grown = diff_logs(first.state, "x\nok\ny\nx\nok\nz\n", block_lines=1)
    assert grown.new_lines == ["y", "x", "ok", "z"] and not grown.gap
    assert grown.new_lines == diff_tail(first.state, ["x", "ok", "y", "x", "ok", "z"]).new_lines


def test_restart_that_repeats_the_last_line_is_a_gap_not_a_silent_loss() -> None:
    """A restarted pod whose new tail contains the old last line, with different lines before
    it: the anchor alone would skip `boot`; the overlap check refuses, and the full differ says
    gap."""
    first = diff_logs(None, "one\ntwo\nready\n")
    restarted = diff_logs(first.state, "boot\nready\n")
    assert restarted.new_lines == ["boot", "ready"] and restarted.gap


def test_state_of_a_fast_answer_has_the_same_fingerprints_as_a_full_diff() -> None:
    """After a slide proven by blocks, the state equals the one a full diff computes."""
    history = [f"line {index}" for index in range(100)]
    state = diff_logs(None, as_logs(history[:40], "\n"), block_lines=4).state
    for start in range(1, 60, 7):
        logs = as_logs(history[start : start + 40], "\n")
        assert fast_answer(state, logs) is not None
        diff = diff_logs(state, logs, block_lines=4)
        assert diff.state == TailState.from_lines(history[start : start + 40])
        state = diff.state


def test_legacy_state_is_compared_with_blake2b_then_switches_to_xxh3() -> None:
    """A version-1 state (BLAKE2b fingerprints) aligns the first tail after it without losing or
    repeating a line; the state it leaves holds XXH3 fingerprints."""
    fingerprints = [legacy_fingerprint(line) for line in ["a", "b", "c"]]
    legacy = TailState.from_list(fingerprints, legacy=True)
    diff = diff_logs(legacy, "b\nc\nd\n")
    assert (diff.new_lines, diff.gap) == (["d"], False)
    assert not diff.state.legacy
    assert diff.state.to_list() == [fingerprint(line) for line in ["b", "c", "d"]]
    assert diff_tail(legacy, ["b", "c", "d"]).new_lines == ["d"]


def test_max_lines_cuts_the_tail_on_every_path() -> None:
    """Only the last `max_lines` lines are read, whether the tail is new, slid or grown."""
    first = diff_logs(None, "a\nb\nc\n", max_lines=2)
    assert first.new_lines == ["b", "c"]
    grown = diff_logs(first.state, "a\nb\nc\nd\n", max_lines=2)
    assert grown.new_lines == ["d"] and len(grown.state) == 2


# --- linear time ---------------------------------------------------------------------------------


class CountingSequence(Sequence[int]):
    """A sequence that counts element reads, the unit of work of the KMP scan."""

    def __init__(self, values: list[int], reads: list[int]) -> None:
        self._values = values
        self._reads = reads

    @overload
    def __getitem__(self, index: int) -> int: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[int]: ...
    def __getitem__(self, index: int | slice) -> int | Sequence[int]:
        if isinstance(index, slice):
            raise TypeError("the KMP scan must not copy slices")
        self._reads[0] += 1
        return self._values[index]

    def __iter__(self) -> Iterator[int]:
        for value in self._values:
            self._reads[0] += 1
            yield value

    def __len__(self) -> int:
        return len(self._values)


def periodic(period: int, length: int, shift: int = 0) -> list[int]:
    """`length` values of a sequence with the given period, starting `shift` into it."""
    return [(index + shift) % period for index in range(length)]


# (old tail, new tail, lines already seen) for tails of n lines: shapes on which a naive alignment
# is quadratic. "near-miss" also defeats diff_tail's first candidate, so it runs the KMP scan.
HARD_TAILS: dict[str, Callable[[int], tuple[list[int], list[int], int]]] = {
    "identical": lambda n: ([0] * n, [0] * n, n),
    "period-3": lambda n: (periodic(3, n), periodic(3, n, shift=1), n - 1),
    "period-7": lambda n: (periodic(7, n), periodic(7, n, shift=3), n - 3),
    "near-miss": lambda n: ([1] + [0] * (n - 1), [0] * n, n - 1),
    "restart-of-repeats": lambda n: ([0] * n, [1] + [0] * (n - 1), 0),
}


@pytest.mark.parametrize("shape", HARD_TAILS)
@pytest.mark.parametrize("size", [1_000, 10_000])
def test_kmp_reads_each_value_a_bounded_number_of_times(shape: str, size: int) -> None:
    """The KMP scan reads at most 4 values per line of the two tails, however repetitive."""
    old, new, expected = HARD_TAILS[shape](size)
    reads = [0]
    seen = _kmp_seen_count(CountingSequence(old[::-1], reads), CountingSequence(new[::-1], reads))
    assert seen == expected
    # Each line is read once, plus once per KMP step; the steps back never outnumber those forward.
    assert reads[0] <= 4 * (len(old) + len(new))


def best_times(small: Callable[[], object], large: Callable[[], object]) -> tuple[float, float]:
    """The fastest of five runs of each, in seconds, taking turns so load elsewhere hits both."""
    small_best = large_best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        small()
        small_best = min(small_best, time.perf_counter() - started)
        started = time.perf_counter()
        large()
        large_best = min(large_best, time.perf_counter() - started)
    return small_best, large_best


@pytest.mark.parametrize("shape", HARD_TAILS)
def test_diff_tail_time_grows_linearly(shape: str) -> None:
    """Ten times the lines costs about ten times as long end to end, not a hundred (ratio < 40)."""

    def poll(size: int) -> Callable[[], Diff]:
        old, new, expected = HARD_TAILS[shape](size)
        previous = TailState.from_lines(map(str, old))
        lines = [str(value) for value in new]
        assert len(diff_tail(previous, lines).new_lines) == size - expected
        return partial(diff_tail, previous, lines)

    small, large = best_times(poll(1_000), poll(10_000))
    assert large / small < 40
