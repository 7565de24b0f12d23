"""The per-pipeline rules: first sight, since, gaps, tail errors, pods coming and going."""

from __future__ import annotations

from follower.enrich import EnrichSettings
from follower.model import (
    Event,
    GapEvent,
    LogEvent,
    LogsSnapshot,
    PodAddedEvent,
    PodRemovedEvent,
    PodTail,
)
from follower.tailerrors import TailErrorMatcher
from follower.tracker import LineSettings, PipelineTracker, Since

PIPE = "pipe_abc"
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
    """A pod missing from the answer is removed (with its last seq); a new name is added."""
    t = tracker()
    t.apply(snap(a="l1\n"), 1.0)
    assert summary(t.apply(snap(b="m1\n"), 2.0).events) == [
        ("pod_added", "b"), ("log", "b", "1", "m1"), ("pod_removed", "a")
    ]
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
    assert summary(t.apply(snap(), 2.0).events) == [("pod_removed", "a"), ("pod_removed", "b")]


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
