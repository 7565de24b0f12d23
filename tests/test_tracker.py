"""The per-pipeline rules: first sight, since, gaps, tail errors, pods coming and going."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from follower.core.enrich import EnrichSettings
from follower.core.events import Event, GapEvent, LogEvent, PodAddedEvent, PodRemovedEvent
from follower.core.model import LogsSnapshot, PodTail
from follower.core.schedule import COUNT_CAP
from follower.core.tail_errors import TailErrorMatcher
from follower.core.tracker import LineSettings, PipelineTracker, Pods, PodState, Since

PIPE = "pipe_abc"
GRACE = LineSettings().pod_grace_s
NOT_FOUND = 'unable to upgrade connection: container not found ("worker")'


def snap(**pods: str) -> LogsSnapshot:
    return LogsSnapshot(PIPE, "uid", tuple(PodTail(name, logs) for name, logs in pods.items()))


def tracker(since: Since = "start") -> PipelineTracker:
    return PipelineTracker(PIPE, since, TailErrorMatcher())


def summary(events: list[Event]) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for e in events:
        if isinstance(e, LogEvent):
            out.append(("log", e.pod, str(e.seq), e.message))
        elif isinstance(e, GapEvent):
            out.append(("gap", e.pod, str(e.after_seq), e.reason))
        elif isinstance(e, PodAddedEvent | PodRemovedEvent):
            out.append((e.kind, e.pod))
        else:
            out.append((e.kind,))
    return out


def test_first_poll_since_start_emits_whole_tail() -> None:
    """since=start: a pod's first tail is emitted in full, after its pod_added."""
    applied = tracker().apply(snap(a="l1\nl2\n"), 1.0)
    assert summary(applied.events) == [
        ("pod_added", "a"), ("log", "a", "1", "l1"), ("log", "a", "2", "l2")
    ]


def test_first_poll_since_now_only_primes() -> None:
    """since=now: the first tail is not emitted; later lines are."""
    t = tracker("now")
    assert summary(t.apply(snap(a="l1\nl2\n"), 1.0).events) == [("pod_added", "a")]
    assert summary(t.apply(snap(a="l1\nl2\nl3\n"), 2.0).events) == [("log", "a", "1", "l3")]


def test_only_new_lines_and_sequence_continues() -> None:
    """A sliding tail yields only its new lines, numbered on from the last sequence number."""
    t = tracker()
    t.apply(snap(a="l1\nl2\nl3\n"), 1.0)
    assert summary(t.apply(snap(a="l2\nl3\nl4\nl5\n"), 2.0).events) == [
        ("log", "a", "4", "l4"), ("log", "a", "5", "l5")
    ]
    assert t.apply(snap(a="l2\nl3\nl4\nl5\n"), 3.0).events == []


def test_restart_yields_gap_then_lines() -> None:
    """A tail that shares nothing with the previous one is preceded by a no_overlap gap."""
    t = tracker()
    t.apply(snap(a="l1\nl2\n"), 1.0)
    assert summary(t.apply(snap(a="n1\n"), 2.0).events) == [
        ("gap", "a", "2", "no_overlap"), ("log", "a", "3", "n1")
    ]


def test_tail_error_is_not_a_log_and_keeps_state() -> None:
    """A tail error produces no log event and leaves the diff state as it was."""
    t = tracker()
    t.apply(snap(a="l1\nl2\n"), 1.0)
    applied = t.apply(snap(a=NOT_FOUND), 2.0)
    assert applied.events == []
    assert [(e.pod, e.error, e.changed) for e in applied.tail_errors] == [("a", NOT_FOUND, True)]
    assert applied.all_failing
    again = t.apply(snap(a=NOT_FOUND), 3.0)
    assert [e.changed for e in again.tail_errors] == [False]
    assert summary(t.apply(snap(a="l1\nl2\nl3\n"), 4.0).events) == [("log", "a", "3", "l3")]


def test_one_failing_pod_does_not_make_the_pipeline_failing() -> None:
    """With one pod healthy, the pipeline is not all-failing (no backoff for the healthy pod)."""
    applied = tracker().apply(snap(a=NOT_FOUND, b="x\n"), 1.0)
    assert not applied.all_failing
    assert summary(applied.events) == [
        ("pod_added", "a"), ("pod_added", "b"), ("log", "b", "1", "x")
    ]


def test_pod_removed_and_replacement_added() -> None:
    """A pod missing from three answers spanning the grace is removed (with its last seq); a new
    name is added at once."""
    t = tracker()
    t.apply(snap(a="l1\n"), 1.0)
    assert summary(t.apply(snap(b="m1\n"), 2.0).events) == [
        ("pod_added", "b"), ("log", "b", "1", "m1")
    ]
    assert summary(t.apply(snap(b="m1\n"), 2.0 + GRACE - 1).events) == []  # not long enough
    removed = t.apply(snap(b="m1\n"), 2.0 + GRACE).events
    assert summary(removed) == [("pod_removed", "a")]
    assert isinstance(removed[0], PodRemovedEvent) and removed[0].last_seq == 1
    assert "a" not in t.pods


def test_new_pod_with_full_window_mid_run_is_flagged() -> None:
    """A pod first seen mid-run with a tail as long as the proven window gets a window_full gap."""
    t = tracker()
    t.apply(snap(a="1\n2\n3\n"), 1.0)
    t.apply(snap(a="2\n3\n4\n"), 2.0)  # the tail slid: the window holds 3 lines
    events = summary(t.apply(snap(a="2\n3\n4\n", b="x\ny\nz\n"), 3.0).events)
    assert events[:2] == [("pod_added", "b"), ("gap", "b", "0", "window_full")]
    short = summary(t.apply(snap(a="2\n3\n4\n", b="x\ny\nz\n", c="q\n"), 4.0).events)
    assert short == [("pod_added", "c"), ("log", "c", "1", "q")]


def test_no_window_full_gap_before_the_window_is_proven() -> None:
    """Tails that only grew prove no window, so a new pod as long as them is not flagged."""
    t = tracker()
    t.apply(snap(a="1\n2\n"), 1.0)
    t.apply(snap(a="1\n2\n3\n"), 2.0)
    events = summary(t.apply(snap(a="1\n2\n3\n", b="x\ny\nz\n"), 3.0).events)
    assert ("gap", "b", "0", "window_full") not in events
    restarted = summary(t.apply(snap(a="n\n", b="x\ny\nz\n"), 4.0).events)
    assert restarted[0] == ("gap", "a", "3", "no_overlap")
    assert t.window == 0  # a restart is not a slide


def test_duplicate_pod_entries_are_diffed_once() -> None:
    """The same pod name twice in one answer is taken once, so no line is emitted twice."""
    twice = LogsSnapshot(PIPE, None, (PodTail("a", "l1\n"), PodTail("a", "l1\n")))
    applied = tracker().apply(twice, 1.0)
    assert summary(applied.events) == [("pod_added", "a"), ("log", "a", "1", "l1")]


def test_empty_pod_list_removes_every_pod() -> None:
    """A paused pipeline (pods: []) removes its pods; nothing else happens."""
    t = tracker()
    t.apply(snap(a="l1\n", b="m1\n"), 1.0)
    assert summary(t.apply(snap(), 2.0).events) == []
    assert summary(t.apply(snap(), 2.0 + GRACE).events) == []  # two answers: a hiccup still
    later = summary(t.apply(snap(), 3.0 + GRACE).events)
    assert later == [("pod_removed", "a"), ("pod_removed", "b")]


def test_long_lines_are_cut_with_a_marker_never_dropped() -> None:
    """A line over the limit becomes its head plus a marker, flagged truncated; short ones pass."""
    t = PipelineTracker(PIPE, "start", TailErrorMatcher(), lines=LineSettings(max_bytes=100))
    long = "x" * 1000
    events = [e for e in t.apply(snap(a=f"short\n{long}\n"), 1.0).events if isinstance(e, LogEvent)]
    assert (events[0].message, events[0].truncated) == ("short", False)
    assert events[1].truncated
    assert events[1].message == "x" * 82 + "\u2026[cut 918 bytes]"
    assert len(events[1].message.encode()) == 100


def test_enrichment_is_opt_in() -> None:
    """With enrichment on, JSON fields, the level and a leading timestamp are lifted out."""
    lines = LineSettings(enrich=EnrichSettings(parse_json=True, level=True, line_ts=True))
    t = PipelineTracker(PIPE, "start", TailErrorMatcher(), lines=lines)
    text = (
        '{"level":"WARN","msg":"slow","ts":"2026-11-28T10:00:00Z"}\n'
        "2026-11-28T10:00:01Z ERROR x\n"
    )
    first, second = [e for e in t.apply(snap(a=text), 1.0).events if isinstance(e, LogEvent)]
    assert (first.level, first.fields is not None) == ("warn", True)
    assert (second.level, second.line_ts) == ("error", "2026-11-28T10:00:01.000Z")
    plain = tracker().apply(snap(a=text), 1.0).events
    assert all(e.level is None and e.fields is None for e in plain if isinstance(e, LogEvent))


def test_only_the_last_max_tail_lines_are_read() -> None:
    """A tail with more lines than the cap is read from its end; the first sight has no gap."""
    lines = LineSettings(max_tail_lines=3)
    t = PipelineTracker(PIPE, "start", TailErrorMatcher(), lines=lines)
    events = t.apply(snap(a="1\n2\n3\n4\n5\n"), 1.0).events
    assert [e.message for e in events if isinstance(e, LogEvent)] == ["3", "4", "5"]


# --- lines still being written (an open last segment) ---------------------------------------------

FLUSH = LineSettings().partial_flush_s


def finals(events: list[Event]) -> list[str]:
    return [e.message for e in events if isinstance(e, LogEvent) and not e.partial]


def partials(events: list[Event]) -> list[str]:
    return [e.message for e in events if isinstance(e, LogEvent) and e.partial]


def test_a_growing_progress_line_is_emitted_once_final_without_a_gap() -> None:
    """An open last segment that grows poll after poll is held, not re-aligned: the terminated
    lines are emitted once, the progress line once when its newline arrives, and no gap."""
    t = tracker()
    events: list[Event] = []
    head = "line0\nline1\nline2\n"
    for now, tail in enumerate(
        [head + "progress #", head + "progress ##", head + "progress ###", head + "progress ###\n"]
    ):
        events += t.apply(snap(a=tail), float(now)).events
    assert finals(events) == ["line0", "line1", "line2", "progress ###"]
    assert partials(events) == []
    assert not [e for e in events if isinstance(e, GapEvent)]
    last = [e for e in events if isinstance(e, LogEvent)][-1]
    assert last.seq == 4


def test_an_open_segment_then_its_newline() -> None:
    """"abc" then "abcdef\\n": one line, abcdef, with seq 1."""
    t = tracker()
    assert finals(t.apply(snap(a="abc"), 1.0).events) == []
    assert summary(t.apply(snap(a="abcdef\n"), 2.0).events) == [("log", "a", "1", "abcdef")]


def test_a_quiet_open_line_is_snapshotted_once_then_emitted_final() -> None:
    """An open segment unchanged for partial_flush_s becomes one partial snapshot (flushed by the
    timer between polls), and the complete line follows once, under another id."""
    t = tracker()
    t.apply(snap(a="x\nstill writ"), 10.0)
    assert t.partial_due == 10.0 + FLUSH
    assert t.flush_partials(10.0 + FLUSH - 0.1) == []
    snapshot = t.flush_partials(10.0 + FLUSH)
    assert partials(snapshot) == ["still writ"]
    assert t.flush_partials(10.0 + 3 * FLUSH) == []  # once per text
    assert partials(t.apply(snap(a="x\nstill writ"), 10.0 + 4 * FLUSH).events) == []
    done = t.apply(snap(a="x\nstill writing\n"), 10.0 + 5 * FLUSH).events
    assert finals(done) == ["still writing"]
    (partial,) = snapshot
    (final,) = done
    assert isinstance(partial, LogEvent) and isinstance(final, LogEvent)
    assert partial.seq == final.seq == 2 and partial.id != final.id
    assert partial.to_wire()["partial"] is True and "partial" not in final.to_wire()


def test_a_changing_open_line_waits_for_it_to_settle() -> None:
    """A segment that keeps changing is not snapshotted: the timer starts again at each change."""
    t = tracker()
    t.apply(snap(a="50%"), 0.0)
    assert t.apply(snap(a="60%"), FLUSH - 1).events[1:] == []
    assert partials(t.apply(snap(a="70%"), FLUSH + 1).events) == []
    assert partials(t.flush_partials(2 * FLUSH + 1)) == ["70%"]


def test_an_api_that_never_ends_with_a_newline() -> None:
    """Lines joined without a final newline: each line is emitted final once the next one proves
    it complete; a quiet pod's last line arrives as a snapshot within partial_flush_s."""
    t = tracker()
    events = t.apply(snap(a="a\nb\nc"), 0.0).events
    assert finals(events) == ["a", "b"]
    assert partials(t.apply(snap(a="a\nb\nc"), FLUSH).events) == ["c"]
    events = t.apply(snap(a="b\nc\nd"), FLUSH + 1).events
    assert finals(events) == ["c"]
    assert partials(t.flush_partials(2 * FLUSH + 1)) == ["d"]
    assert finals(t.apply(snap(a="c\nd\ne"), 3 * FLUSH).events) == ["d"]


def test_a_repeated_text_at_a_new_position_is_a_new_open_line() -> None:
    """"a\\nx" then "a\\nx\\nx": the second x is another line, snapshotted in its turn."""
    t = tracker()
    t.apply(snap(a="a\nx"), 0.0)
    assert partials(t.flush_partials(FLUSH)) == ["x"]
    assert finals(t.apply(snap(a="a\nx\nx"), FLUSH + 1).events) == ["x"]
    assert partials(t.flush_partials(2 * FLUSH + 1)) == ["x"]


def test_carriage_returns_inside_a_line_stay_data() -> None:
    """Only newlines separate lines: a progress bar rewritten with \\r is one line."""
    t = tracker()
    assert finals(t.apply(snap(a="10%\r50%\r100%\n"), 0.0).events) == ["10%\r50%\r100%"]


def test_open_lines_are_flushed_at_shutdown_and_when_their_pod_goes() -> None:
    """`everything` flushes every open line at once; a removed pod's open line comes first."""
    t = tracker()
    t.apply(snap(a="x\nopen-a", b="y\nopen-b"), 0.0)
    assert partials(t.flush_partials(1.0, everything=True)) == ["open-a", "open-b"]
    assert t.flush_partials(2.0, everything=True) == []
    t.apply(snap(a="x\nopen-a2"), 3.0)
    t.apply(snap(a="x\nopen-a2"), 4.0)
    gone = summary(t.apply(snap(a="x\nopen-a2"), 3.0 + GRACE).events)
    assert gone == [("pod_removed", "b"), ("log", "a", "2", "open-a2")]  # open-b was flushed
    t2 = tracker()
    t2.apply(snap(a="x\nhalf"), 0.0)
    t2.apply(snap(), 1.0)
    t2.apply(snap(), 2.0)
    assert summary(t2.apply(snap(), 1.0 + GRACE).events) == [
        ("log", "a", "2", "half"), ("pod_removed", "a")
    ]


def test_since_now_does_not_snapshot_a_line_being_written_at_start() -> None:
    """since=now: an open line at start is not old news; its complete form is new."""
    t = tracker("now")
    t.apply(snap(a="old\nhal"), 0.0)
    assert t.flush_partials(FLUSH * 2) == []
    assert finals(t.apply(snap(a="old\nhalf\n"), FLUSH * 3).events) == ["half"]


# --- pods missing from an answer ------------------------------------------------------------------


def test_a_pod_missing_from_one_answer_continues_where_it_left_off() -> None:
    """{p1: a b} -> {p2: x} -> {p1: b c d}: p1's c and d are seq 3 and 4, b is not repeated, and
    there is no pod_removed/pod_added noise."""
    t = tracker()
    t.apply(snap(p1="a\nb\n"), 1.0)
    t.apply(snap(p2="x\n"), 2.0)
    back = t.apply(snap(p1="b\nc\nd\n"), 3.0).events
    assert summary(back) == [("log", "p1", "3", "c"), ("log", "p1", "4", "d")]


def test_a_pod_back_after_its_removal_counts_in_a_new_epoch() -> None:
    """Removed, then back by the same name: its lines start at 1 again, under ids never used."""
    t = tracker()
    first = t.apply(snap(p1="a\n"), 1.0).events
    t.apply(snap(), 2.0)
    t.apply(snap(), 3.0)
    t.apply(snap(), 2.0 + GRACE)
    again = t.apply(snap(p1="z\n"), 3.0 + GRACE).events
    old = next(e for e in first if isinstance(e, LogEvent))
    new = next(e for e in again if isinstance(e, LogEvent))
    assert old.seq == new.seq == 1 and old.id != new.id


# --- ids across restarts --------------------------------------------------------------------------


def test_a_restored_pod_keeps_its_epoch_when_its_tail_lines_up() -> None:
    """Redelivery after a crash: the same lines get the same ids as before it."""
    before = tracker()
    before.apply(snap(a="1\n2\n"), 1.0)
    saved = before.snapshot()
    crashed = before.apply(snap(a="1\n2\n3\n4\n"), 2.0).events
    after = PipelineTracker.restored(PIPE, "start", TailErrorMatcher(), saved)
    again = after.apply(snap(a="2\n3\n4\n5\n"), 3.0).events
    assert [e.id for e in crashed] == [e.id for e in again][:2]


def test_a_restored_pod_whose_tail_does_not_line_up_counts_in_a_new_epoch() -> None:
    """After a crash past a window, seq carries on but the epoch changes: no id named a line
    before the crash and another after it."""
    before = tracker()
    before.apply(snap(a="1\n2\n"), 1.0)
    saved = before.snapshot()
    crashed = before.apply(snap(a="3\n4\n"), 2.0).events  # seq 3, 4: never checkpointed
    after = PipelineTracker.restored(PIPE, "start", TailErrorMatcher(), saved)
    again = after.apply(snap(a="7\n8\n"), 3.0).events
    assert summary(again)[0] == ("gap", "a", "2", "no_overlap")
    crashed_ids = {e.id for e in crashed}
    assert [e.seq for e in again if isinstance(e, LogEvent)] == [3, 4]
    assert not crashed_ids & {e.id for e in again}
    later = after.apply(snap(a="9\n"), 4.0).events  # a later gap in this process: same epoch
    assert isinstance(later[0], GapEvent) and later[0].epoch == again[0].epoch  # type: ignore[union-attr]


BAR = "snapshot   0% [  ]\rsnapshot 100% [##]"
"""A progress bar: the same text at every run of a pod, and after each of its restarts."""


def test_a_restart_that_repeats_the_short_tail_later_is_a_gap() -> None:
    """The soak's lost lines: a pod that just restarted has a one-line tail (a progress bar); it
    restarts again and its new tail holds that text again after other lines. Nothing older than
    a short tail can show, so this is a restart: a gap, and every line of the new tail."""
    t = tracker()
    t.apply(snap(a=f"{BAR}\n"), 1.0)
    events = t.apply(snap(a=f"w1\nw2\n{BAR}\nw3\n"), 2.0).events
    assert summary(events) == [
        ("gap", "a", "1", "no_overlap"), ("log", "a", "2", "w1"), ("log", "a", "3", "w2"),
        ("log", "a", "4", BAR), ("log", "a", "5", "w3"),
    ]


def test_after_a_tail_error_a_short_tail_that_seems_to_slide_is_a_restart() -> None:
    """A pod ends with a progress bar, crashes (tail error), and its new incarnation starts with
    the same bar: the new tail seems to continue the old one by a slide, but a slide needs a
    full window and this tail is short. After a tail error that is a restart: a gap, and every
    line of the new tail (without the tail error it stays the documented limit)."""
    t = tracker()
    t.apply(snap(a="1\n2\n3\n"), 1.0)
    t.apply(snap(a=f"2\n3\n{BAR}\n"), 2.0)  # slid: the window holds 3 lines
    t.apply(snap(a=NOT_FOUND), 3.0)
    events = t.apply(snap(a=f"{BAR}\ny\n"), 4.0).events
    assert summary(events) == [
        ("gap", "a", "4", "restarted"), ("log", "a", "5", BAR), ("log", "a", "6", "y")
    ]
    quiet = tracker()
    quiet.apply(snap(a="1\n2\n3\n"), 1.0)
    quiet.apply(snap(a=f"2\n3\n{BAR}\n"), 2.0)
    assert summary(quiet.apply(snap(a=f"{BAR}\ny\n"), 3.0).events) == [("log", "a", "5", "y")]


def test_after_a_tail_error_a_tail_that_continues_the_old_one_is_no_restart() -> None:
    """A transient tail error: a tail that grew, or slid with a full window, still continues."""
    grew = tracker()
    grew.apply(snap(a="1\n2\n"), 1.0)
    grew.apply(snap(a=NOT_FOUND), 2.0)
    assert summary(grew.apply(snap(a="1\n2\n3\n"), 3.0).events) == [("log", "a", "3", "3")]
    slid = tracker()
    slid.apply(snap(a="1\n2\n3\n"), 1.0)
    slid.apply(snap(a="2\n3\n4\n"), 2.0)  # slid: the window holds 3 lines
    slid.apply(snap(a=NOT_FOUND), 3.0)
    assert summary(slid.apply(snap(a="3\n4\n5\n"), 4.0).events) == [("log", "a", "5", "5")]


def test_a_restored_pod_never_renumbers_lines_after_a_stale_checkpoint() -> None:
    """The soak's ids naming two lines: checkpointed with a one-line tail, the process saw the
    restart (a gap, lines numbered 2 and 3 in the same epoch) and was killed; the next process's
    first tail repeats the checkpointed text after other lines. It must not number `w4` as 2."""
    before = tracker()
    before.apply(snap(a=f"{BAR}\n"), 1.0)
    saved = before.snapshot()
    crashed = before.apply(snap(a="w1\nw2\n"), 2.0).events  # gap, then seq 2, 3
    after = PipelineTracker.restored(PIPE, "start", TailErrorMatcher(), saved)
    again = after.apply(snap(a=f"w1\nw2\nw3\n{BAR}\nw4\n"), 3.0).events
    named = {e.id: e.message for e in crashed if isinstance(e, LogEvent)}
    assert all(named.get(e.id, e.message) == e.message for e in again if isinstance(e, LogEvent))
    assert [e.message for e in again if isinstance(e, LogEvent)] == [
        "w1", "w2", "w3", BAR, "w4"
    ]


def test_a_restored_pod_whose_tail_lines_up_two_ways_counts_in_a_new_epoch() -> None:
    """Checkpointed at `x BAR BAR`; the process then saw `BAR` (nothing new), then `BAR BAR y`
    (grown: `BAR` and `y` new, seq 4 and 5). Restored, `BAR BAR y` also lines up as `y` alone:
    two alignments fit, so the restored pod counts in a new epoch and no id names two lines."""
    before = tracker()
    before.apply(snap(a=f"x\n{BAR}\n{BAR}\n"), 1.0)
    saved = before.snapshot()
    crashed = before.apply(snap(a=f"{BAR}\n"), 2.0).events
    crashed += before.apply(snap(a=f"{BAR}\n{BAR}\ny\n"), 3.0).events
    assert [(e.seq, e.message) for e in crashed if isinstance(e, LogEvent)] == [(4, BAR), (5, "y")]
    after = PipelineTracker.restored(PIPE, "start", TailErrorMatcher(), saved)
    again = after.apply(snap(a=f"{BAR}\n{BAR}\ny\n"), 4.0).events
    assert [(e.seq, e.message) for e in again if isinstance(e, LogEvent)] == [(4, "y")]
    assert not {e.id for e in crashed} & {e.id for e in again}
    assert not any(isinstance(e, GapEvent) for e in again)


def test_a_restored_pod_that_lined_up_once_keeps_its_epoch_at_a_later_gap() -> None:
    """Once a restored pod's tail lined up one way, the numbers past it are this process's own:
    a later restart is an ordinary gap in the same epoch."""
    before = tracker()
    before.apply(snap(a="1\n2\n"), 1.0)
    after = PipelineTracker.restored(PIPE, "start", TailErrorMatcher(), before.snapshot())
    first = after.apply(snap(a="1\n2\n3\n"), 2.0).events
    later = after.apply(snap(a="boot\n"), 3.0).events
    epochs = {e.epoch for e in first + later if isinstance(e, LogEvent | GapEvent)}
    assert epochs == {before.pods["a"].epoch}
    assert summary(later)[0] == ("gap", "a", "3", "no_overlap")


def test_two_trackers_never_share_an_id() -> None:
    """Without state, two processes number from 1, each in an epoch of its own."""
    one = tracker().apply(snap(a="x\n"), 1.0).events
    two = tracker().apply(snap(a="x\n"), 1.0).events
    assert {e.id for e in one if isinstance(e, LogEvent)} != {
        e.id for e in two if isinstance(e, LogEvent)
    }


# --- the property: every terminated line once, final; ids never shared ---------------------------

WRITE, END, POLL = 0, 1, 2


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from([WRITE, END, POLL]), st.text("ab\r%", max_size=4)),
        max_size=60,
    ),
    final_newline=st.booleans(),
)
def test_every_terminated_line_once_and_final(
    steps: list[tuple[int, str]], final_newline: bool
) -> None:
    """A pod writes lines in pieces; polls see a 40-line tail with the open line last (with or
    without a final newline). Without overflow, the final events are exactly the lines a poll
    proved complete, in order; partial snapshots never share an id with anything else."""
    complete: list[str] = []
    current = ""
    t = tracker()
    events: list[Event] = []
    now = 0.0
    proven = 0
    for kind, piece in steps:
        now += 1.0
        if kind == WRITE:
            current += piece
        elif kind == END:
            complete.append(f"{len(complete)}:{current}")  # unique lines: no ambiguous alignment
            current = ""
        else:
            shown = complete[-40:]
            if final_newline:
                logs = "".join(line + "\n" for line in shown) + current
            else:
                logs = "\n".join(shown + ([current] if current else []))
            events += t.apply(snap(a=logs), now).events
            events += t.flush_partials(now + FLUSH)
            proven = len(complete) - (0 if final_newline or current or not complete else 1)
        if len(complete) - proven >= 30:  # keep below the window: this property is not about gaps
            break
    crlf = [line[:-1] if line.endswith("\r") else line for line in complete]  # CRLF endings
    assert finals(events) == crlf[:proven]
    ids: dict[str, str] = {}
    for event in events:
        if isinstance(event, LogEvent):
            assert ids.setdefault(event.id, event.message) == event.message


def test_an_answer_of_many_pods_reads_a_bounded_number_of_lines() -> None:
    """41 pods of 100,000 blank lines fit the body cap: the answer reads max_answer_lines in all,
    shared by its pods (the last lines of each), so one poll never builds millions of events."""
    t = PipelineTracker(
        PIPE, "start", TailErrorMatcher(),
        lines=LineSettings(max_tail_lines=1_000, max_answer_lines=4_000),
    )
    pods = {f"p{i}": "\n" * 3_000 for i in range(8)}
    events = t.apply(snap(**pods), 1.0).events
    assert len([e for e in events if isinstance(e, LogEvent)]) == 8 * 500
    few = t.apply(snap(p0="\n" * 3_000), 2.0).events  # one pod alone reads up to max_tail_lines
    assert len(t.pods["p0"].tail or ()) == 1_000 and not [
        e for e in few if isinstance(e, GapEvent)
    ]


# --- the pods table ------------------------------------------------------------------------------

POD_NAMES = st.sampled_from(["a", "b", "c", ""])


@given(st.lists(st.tuples(st.sampled_from(["set", "del"]), POD_NAMES, st.integers(0, 9))))
@settings(max_examples=300, deadline=None)
def test_pods_table_behaves_as_a_dict(operations: list[tuple[str, str, int]]) -> None:
    """Whatever pods come and go (one, none, several, back to one), the table answers lookups,
    membership, length and iteration order exactly as a dict would, KeyErrors included."""
    pods, model = Pods(), dict[str, PodState]()
    for operation, name, seq in operations:
        if operation == "set":
            pods[name] = model[name] = PodState(seq=seq)
        elif name in model:
            del pods[name], model[name]
        else:
            with pytest.raises(KeyError):
                del pods[name]
        assert list(pods.items()) == list(model.items())
        assert len(pods) == len(model) and pods == model
        for other in ("a", "b", "c", "", "d"):
            assert (other in pods) == (other in model)
            assert pods.get(other) is model.get(other)


def test_pods_table_copy_copies_each_state() -> None:
    """An undo's copy shares no state with the table it was taken from, equals it, and holds a
    lone pod without a dict as the table does."""
    for names in ([], ["a"], ["a", "b"], ["a", "b", "c"]):
        pods = Pods((name, PodState(seq=1)) for name in names)
        copy = pods.copy()
        assert copy == pods and (copy._many is None) == (len(names) < 2)
        for name in names:
            copy[name].seq = 2
            assert pods[name].seq == 1
        assert list(copy) == names and repr(copy).startswith("Pods({")


def test_tracker_holds_a_lone_pod_without_a_dict() -> None:
    """One pod costs the table no dict; a second makes one, and it goes when one pod is left."""
    t = tracker()
    t.apply(snap(a="x\n"), 0.0)
    assert t.pods._many is None
    t.apply(snap(a="x\n", b="y\n"), 1.0)
    assert t.pods._many is not None
    for now in (2.0, 3.0, 2.0 + GRACE):
        t.apply(snap(b="y\n"), now)
    assert list(t.pods) == ["b"] and t.pods._many is None


def test_poll_count_stops_at_the_cap() -> None:
    """A long-followed tracker's poll count stays a small shared int; it still knows it polled."""
    t = tracker("now")
    for now in range(COUNT_CAP + 10):
        t.apply(snap(a="".join(f"{line}\n" for line in range(now + 1))), float(now))
    assert t.polls == COUNT_CAP
    # Not a first poll: a pod seen now has its whole tail emitted, as `since = "now"` says.
    events = summary(t.apply(snap(b="y\n"), 999.0).events)
    assert events == [("pod_added", "b"), ("log", "b", "1", "y")]


RPC = "rpc error: code = Unavailable desc = connection refused (attempt {})"


def test_lines_that_grow_from_a_tail_error_are_the_pods_output() -> None:
    """A pod whose only output looks like a runtime error is taken for one while it is one line;
    once the next answer adds lines after it, it was output all along: every line is emitted,
    the first one included, and no gap."""
    t = tracker()
    first = t.apply(snap(a=RPC.format(1)), 1.0)
    assert first.tail_errors and not finals(first.events)
    events = t.apply(snap(a=f"{RPC.format(1)}\n{RPC.format(2)}\n"), 2.0).events
    assert summary(events) == [("log", "a", "1", RPC.format(1)), ("log", "a", "2", RPC.format(2))]
    lines = "\n".join(RPC.format(n) for n in (1, 2, 3)) + "\n"
    assert summary(t.apply(snap(a=lines), 3.0).events) == [("log", "a", "3", RPC.format(3))]


def test_error_like_lines_that_continue_the_tail_are_emitted_not_swallowed() -> None:
    """Output lines that look like runtime errors and fill the window go on from the previous
    tail: they are lines, not a tail error (no line lost, no gap, no backoff)."""
    t = tracker()
    t.apply(snap(a=f"n1\nn2\n{RPC.format(1)}\n"), 1.0)
    applied = t.apply(snap(a=f"n2\n{RPC.format(1)}\n{RPC.format(2)}\n"), 2.0)
    assert summary(applied.events) == [("log", "a", "4", RPC.format(2))]
    rpcs = "\n".join(RPC.format(n) for n in (1, 2, 3)) + "\n"
    applied = t.apply(snap(a=rpcs), 3.0)
    assert summary(applied.events) == [("log", "a", "5", RPC.format(3))]
    assert not applied.tail_errors and not applied.all_failing
    back = t.apply(snap(a=f"{RPC.format(2)}\n{RPC.format(3)}\nrecovered\n"), 4.0).events
    assert summary(back) == [("log", "a", "6", "recovered")]


def test_a_runtime_error_after_output_is_still_a_tail_error() -> None:
    """Error lines that do not go on from the previous tail (nor grow from a previous error)
    are the runtime's answer, one line or several."""
    t = tracker()
    t.apply(snap(a="l1\nl2\n"), 1.0)
    two = f"{RPC.format(1)}\n{RPC.format(2)}"
    applied = t.apply(snap(a=two), 2.0)
    assert applied.events == [] and [e.error for e in applied.tail_errors] == [two]
    again = t.apply(snap(a=two), 3.0)
    assert again.events == [] and [e.changed for e in again.tail_errors] == [False]


def test_an_open_line_that_is_not_continued_is_a_gap() -> None:
    """A line being written can only grow: when the line that completes it does not start with
    what was seen of it, the output was rewritten (the pod restarted) and what was being written
    is lost, so a gap says so before the new line."""
    t = tracker()
    t.apply(snap(a="a\nabc"), 1.0)
    assert summary(t.apply(snap(a="a\nxyz\n"), 2.0).events) == [
        ("gap", "a", "1", "restarted"), ("log", "a", "2", "xyz")
    ]


def test_an_open_line_ending_in_a_carriage_return_is_shown_without_it() -> None:
    """CRLF output: the open segment "c\\r" is snapshotted as "c", as its final line will be,
    and its completion is no gap."""
    t = tracker()
    t.apply(snap(a="a\r\nc\r"), 0.0)
    assert partials(t.flush_partials(FLUSH)) == ["c"]
    assert summary(t.apply(snap(a="a\r\nc\r\n"), FLUSH + 1).events) == [("log", "a", "2", "c")]


def journaled(t: PipelineTracker, logs: str, now: float) -> tuple[list[Event], dict[str, PodState]]:
    """The events of one poll, and the pods it numbered anew (as the journal records them)."""
    applied = t.apply(snap(a=logs), now)
    return list(applied.events), dict(applied.numbered)


def test_a_poll_that_numbers_a_pod_anew_says_so_and_a_steady_one_does_not() -> None:
    """First sight (and a pod back after its removal, and a first real tail after a tail error)
    numbers lines no earlier record can reproduce: the poll hands the pod's state over, with
    `replay_from` at its first line; a poll that only goes on numbers nothing anew."""
    t = tracker()
    _, numbered = journaled(t, "l1\nl2\n", 1.0)
    assert list(numbered) == ["a"] and numbered["a"].replay_from == 1
    assert numbered["a"].epoch == t.pods["a"].epoch and numbered["a"].seq == 2
    assert journaled(t, "l1\nl2\nl3\n", 2.0)[1] == {}
    late = tracker()
    late.apply(snap(a=NOT_FOUND), 1.0)
    assert late.apply(snap(a=NOT_FOUND), 2.0).numbered == []
    assert [(pod, s.replay_from) for pod, s in late.apply(snap(a="x\n"), 3.0).numbered] == [
        ("a", 1)
    ]


def restored_from(record: PodState) -> PipelineTracker:
    return PipelineTracker.restored(PIPE, "start", TailErrorMatcher(), {"a": record})


def test_a_pod_restored_from_its_record_writes_its_lines_again_under_their_ids() -> None:
    """Killed before a checkpoint held the pod: restored from the journal's record, the lines
    numbered before the crash come again with the ids they had, and the numbering goes on."""
    t = tracker()
    crashed, numbered = journaled(t, "l1\nl2\n", 1.0)
    crashed += t.apply(snap(a="l1\nl2\nl3\n"), 2.0).events
    again = restored_from(numbered["a"]).apply(snap(a="l1\nl2\nl3\nl4\n"), 3.0).events
    ids = {e.message: e.id for e in crashed if isinstance(e, LogEvent)}
    assert summary(again) == [
        ("log", "a", "1", "l1"), ("log", "a", "2", "l2"), ("log", "a", "3", "l3"),
        ("log", "a", "4", "l4"),
    ]
    assert all(ids.get(e.message, e.id) == e.id for e in again if isinstance(e, LogEvent))


def test_a_record_whose_lines_left_the_tail_counts_on_behind_a_gap_in_a_new_epoch() -> None:
    """The pod wrote past the first lines numbered before the crash: they cannot be written
    again under their ids, so the whole tail goes on in a new epoch behind a gap."""
    t = tracker()
    crashed, numbered = journaled(t, "l1\nl2\n", 1.0)
    again = restored_from(numbered["a"]).apply(snap(a="l2\nl3\n"), 2.0).events
    assert summary(again) == [
        ("gap", "a", "2", "no_overlap"), ("log", "a", "3", "l2"), ("log", "a", "4", "l3")
    ]
    assert not {e.id for e in crashed} & {e.id for e in again}


def test_a_record_that_lines_up_two_ways_counts_on_behind_a_gap_in_a_new_epoch() -> None:
    """Repeated lines: with no one way to find the lines numbered before the crash, none of
    them may be left out, so the whole tail comes again in a new epoch behind a gap."""
    t = tracker()
    crashed, numbered = journaled(t, "x\nx\n", 1.0)
    again = restored_from(numbered["a"]).apply(snap(a="x\nx\nx\n"), 2.0).events
    assert summary(again)[0] == ("gap", "a", "2", "no_overlap")
    assert [e.message for e in again if isinstance(e, LogEvent)] == ["x", "x", "x"]
    assert not {e.id for e in crashed} & {e.id for e in again}


def test_a_restored_record_waits_for_a_tail_with_lines() -> None:
    """An empty tail or only a line being written shows nothing of the record's lines: they are
    written again at the first tail with terminated lines, not given up behind a gap."""
    t = tracker()
    _, numbered = journaled(t, "l1\nl2\n", 1.0)
    after = restored_from(numbered["a"])
    assert after.apply(snap(a=""), 2.0).events == []
    assert finals(after.apply(snap(a="l1\nl2\nl3\n"), 3.0).events) == ["l1", "l2", "l3"]


def test_lines_after_a_gap_are_recorded_so_a_crash_does_not_renumber_them() -> None:
    """A restored pod restarts after a tail error and repeats the last lines seen: numbered on
    behind a gap, they are recorded; killed then, the next process starts from the older
    checkpoint and the record, writes those lines again under their ids, and gives the lines
    after them numbers never used (the checkpoint alone took `l3 l4` for a slide)."""
    first = tracker()
    first.apply(snap(a="l0\nl1\nl2\nl3\nl4\n"), 1.0)
    saved = first.snapshot()
    crashed = PipelineTracker.restored(PIPE, "start", TailErrorMatcher(), saved)
    crashed.apply(snap(a="l0\nl1\nl2\nl3\nl4\n"), 2.0)
    crashed.apply(snap(a=NOT_FOUND), 3.0)
    applied = crashed.apply(snap(a="l3\nl4\n"), 4.0)
    assert summary(applied.events)[0] == ("gap", "a", "5", "restarted")
    (pod, record), = applied.numbered
    after = PipelineTracker.restored(PIPE, "start", TailErrorMatcher(), {**saved, pod: record})
    again = after.apply(snap(a="l3\nl4\nNEW5\nNEW6\n"), 5.0).events
    before = {e.id: e.message for e in applied.events if isinstance(e, LogEvent)}
    assert all(before.get(e.id, e.message) == e.message for e in again if isinstance(e, LogEvent))
    assert [e.message for e in again if isinstance(e, LogEvent)] == ["l3", "l4", "NEW5", "NEW6"]


def test_the_first_lines_after_an_empty_saved_tail_are_recorded() -> None:
    """Saved while its tail was empty, a pod's first lines are recorded: a crash later cannot
    number the lines of a slid tail from 1 again in the same epoch."""
    empty = tracker()
    empty.apply(snap(a=""), 1.0)
    saved = empty.snapshot()
    crashed = PipelineTracker.restored(PIPE, "start", TailErrorMatcher(), saved)
    applied = crashed.apply(snap(a="l1\nl2\nl3\nl4\nl5\n"), 2.0)
    assert [(pod, s.replay_from) for pod, s in applied.numbered] == [("a", 1)]
    slid = crashed.apply(snap(a="l4\nl5\nl6\nl7\nl8\n"), 3.0).events
    numbered = list(applied.events) + list(slid)
    after = PipelineTracker.restored(PIPE, "start", TailErrorMatcher(), dict(applied.numbered))
    again = after.apply(snap(a="l4\nl5\nl6\nl7\nl8\n"), 4.0).events
    before = {e.id: e.message for e in numbered if isinstance(e, LogEvent)}
    assert all(before.get(e.id, e.message) == e.message for e in again if isinstance(e, LogEvent))


def test_a_restored_tracker_aligns_with_the_window_its_saver_had_proven() -> None:
    """The API's window grows just before a crash and shows an older line again: the saver
    (window 5 proven) took `e a b c d e f` as one new line, f = 7. Restored without that window,
    the next process took the lone `e` for the old tail's end and numbered a..f from 7 in the
    same epoch, 7 naming a; with it, it sees the same alignment, and another (the tail lines up
    two ways), so it counts in a new epoch: no id names two lines."""
    saver = tracker()
    saver.apply(snap(a="e\na\nb\nc\nd\n"), 1.0)
    saver.apply(snap(a="a\nb\nc\nd\ne\n"), 2.0)
    saved, window = saver.snapshot(), saver.window
    assert window == 5
    crashed = saver.apply(snap(a="e\na\nb\nc\nd\ne\nf\n"), 3.0).events
    assert finals(crashed) == ["f"]
    named = {e.id: e.message for e in crashed if isinstance(e, LogEvent)}
    for restored_window, reused in ((0, True), (window, False)):
        after = PipelineTracker.restored(
            PIPE, "start", TailErrorMatcher(), saved, window=restored_window
        )
        again = after.apply(snap(a="e\na\nb\nc\nd\ne\nf\n"), 4.0).events
        clash = [e for e in again if isinstance(e, LogEvent) and named.get(e.id, e.message)
                 != e.message]
        assert bool(clash) is reused
