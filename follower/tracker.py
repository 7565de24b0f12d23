"""What one pipeline's pods looked like at the last poll, and the events a new poll implies.

Pure: `PipelineTracker.apply` takes a parsed logs answer and the wall time and returns events; it
does no I/O and reads no clock, so every rule below is table-tested without a server.

Rules:
- A pod's `logs` that is a runtime tail error is reported, never emitted as lines, and leaves the
  pod's diff state untouched, so the first real tail afterwards is diffed against the last one.
- A pod seen for the first time has its whole tail emitted (`since = "start"`), except on the very
  first poll with `since = "now"`, where its tail only primes the state (like `tail -n 0 -f`).
- A pod first seen after the first poll whose tail is already as long as this pipeline's proven
  window may have lost lines off the top of it: a `window_full` gap says so. A window is proven
  when a pod's tail slid (lines dropped off its top while new ones arrived); until then nothing
  is known of the window and no such gap is claimed.
- A pod missing from the answer is removed and its state freed.
- After `--reset-state`, every pod's first tail is preceded by a `state_reset` gap: what happened
  while the follower was away is unknown.
- A tracker restored from a checkpoint diffs each pod's first tail against the saved state, so
  lines written while the follower was down are emitted and a lost stretch shows as a gap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from follower.differ import TailState, diff_logs
from follower.enrich import EnrichSettings, enrich
from follower.model import (
    DEFAULT_MAX_LINE_BYTES,
    Event,
    GapEvent,
    GapReason,
    LogEvent,
    LogsSnapshot,
    PodAddedEvent,
    PodRemovedEvent,
    cut_line,
)
from follower.schedule import PodObservation
from follower.tailerrors import TailErrorMatcher

Since = Literal["start", "now"]


@dataclass(frozen=True, slots=True)
class LineSettings:
    """How a new line becomes a log event: the length limit and the opt-in enrichment."""

    max_bytes: int = DEFAULT_MAX_LINE_BYTES
    enrich: EnrichSettings = field(default_factory=EnrichSettings)
    max_tail_lines: int = 100_000
    """Only the last this many lines of a tail are read: a hostile 8 MB body of newlines must not
    become 8 million events. Anything cut off this way shows as a gap if it mattered."""

    def events(
        self, now: float, pipeline_id: str, pod: str, first_seq: int, lines: Sequence[str]
    ) -> list[LogEvent]:
        """The log events of consecutive new lines, numbered from `first_seq`.

        The hot path of a busy pod: without enrichment, a line short enough that even 4-byte
        characters fit the limit becomes its event directly, without `event`'s checks.
        """
        if self.enrich.enabled:
            return [self.event(now, pipeline_id, pod, seq, line)
                    for seq, line in enumerate(lines, start=first_seq)]
        short = self.max_bytes // 4
        return [
            LogEvent(now, pipeline_id, pod, seq, line) if len(line) <= short
            else self.event(now, pipeline_id, pod, seq, line)
            for seq, line in enumerate(lines, start=first_seq)
        ]

    def event(self, now: float, pipeline_id: str, pod: str, seq: int, line: str) -> LogEvent:
        """The log event of `line`: cut with a marker when too long, never dropped."""
        message, cut = cut_line(line, self.max_bytes)
        if not self.enrich.enabled:
            return LogEvent(now, pipeline_id, pod, seq, message, cut)
        found = enrich(line, self.enrich, truncated=cut)
        return LogEvent(
            now, pipeline_id, pod, seq, message, cut, found.level, found.line_ts, found.fields
        )


@dataclass(slots=True)
class PodState:
    """Per-pod memory: the last real tail's fingerprints, the last sequence number and error."""

    tail: TailState | None = None
    seq: int = 0
    error: str | None = None


@dataclass(frozen=True, slots=True)
class PodTailError:
    """A pod whose `logs` held a tail error at this poll; `changed` is False if it already did."""

    pod: str
    error: str
    changed: bool


@dataclass(frozen=True, slots=True)
class Applied:
    """What one poll implies: events to write, and the pods that answered with a tail error."""

    events: list[Event]
    tail_errors: list[PodTailError]
    pods_with_logs: int
    observations: list[PodObservation] = field(default_factory=list)
    """One per pod with real lines: what the scheduler learns of its rate and window."""

    @property
    def all_failing(self) -> bool:
        """Every pod answered with a tail error (none with real logs): worth backing off."""
        return bool(self.tail_errors) and self.pods_with_logs == 0


@dataclass(slots=True)
class PipelineTracker:
    """The follower's memory of one pipeline between polls."""

    pipeline_id: str
    since: Since
    matcher: TailErrorMatcher
    pods: dict[str, PodState] = field(default_factory=dict)
    polls: int = 0
    window: int = 0
    reset_state: bool = False
    lines: LineSettings = field(default_factory=LineSettings)
    restarted: set[str] = field(default_factory=set)
    """Pods whose next tail follows a restart of the worker (see `mark_restarted`)."""

    @classmethod
    def restored(
        cls,
        pipeline_id: str,
        since: Since,
        matcher: TailErrorMatcher,
        pods: dict[str, PodState],
        lines: LineSettings | None = None,
    ) -> PipelineTracker:
        """A tracker that continues from checkpointed pods (its next poll is not a first poll)."""
        return cls(pipeline_id, since, matcher, dict(pods), polls=1, lines=lines or LineSettings())

    def memento(self) -> tuple[dict[str, PodState], int, int]:
        """Everything `apply` changes, to undo a poll whose events could not be written."""
        return self.snapshot(), self.polls, self.window

    def restore(self, memento: tuple[dict[str, PodState], int, int]) -> None:
        """Go back to the state `memento()` saw."""
        self.pods, self.polls, self.window = memento

    def snapshot(self) -> dict[str, PodState]:
        """A copy of the pods' state for a checkpoint (tails are immutable, so shared)."""
        return {pod: PodState(s.tail, s.seq, s.error) for pod, s in self.pods.items()}

    def mark_restarted(self) -> None:
        """The worker restarted (the status endpoint's `start_time` changed): the next gap of
        each pod seen so far is a `restarted` one, not a guessed `no_overlap`."""
        self.restarted = set(self.pods)

    def apply(self, snapshot: LogsSnapshot, now: float) -> Applied:
        """Fold one successful logs answer into the state; return the events it implies."""
        events: list[Event] = []
        tail_errors: list[PodTailError] = []
        observations: list[PodObservation] = []
        seen: set[str] = set()
        for entry in snapshot.pods:
            if entry.pod in seen:  # a duplicated pod name would be diffed twice: keep the first
                continue
            seen.add(entry.pod)
            state = self.pods.get(entry.pod)
            if state is None:
                state = self.pods[entry.pod] = PodState()
                events.append(PodAddedEvent(now, self.pipeline_id, entry.pod))
            error = self.matcher.match(entry.logs)
            if error is not None:
                tail_errors.append(PodTailError(entry.pod, error, changed=error != state.error))
                state.error = error
                continue
            state.error = None
            previous = None if state.tail is None else len(state.tail)
            pod_events, observed = self._diff_pod(entry.pod, state, entry.logs, now)
            events.extend(pod_events)
            observations.append(
                PodObservation(observed.new_lines, observed.tail_lines, observed.gap, previous)
            )
        for gone in [name for name in self.pods if name not in seen]:
            events.append(PodRemovedEvent(now, self.pipeline_id, gone, self.pods.pop(gone).seq))
        self.polls += 1
        return Applied(events, tail_errors, len(observations), observations)

    def _diff_pod(
        self, pod: str, state: PodState, logs: str, now: float
    ) -> tuple[list[Event], _Observed]:
        """The pod's events for this tail, and what the scheduler learns from it."""
        first_sight = state.tail is None
        diff = diff_logs(state.tail, logs, self.lines.max_tail_lines)
        tail_lines = len(diff.state) if logs else 0
        window_before = self.window
        slid = tail_lines < len(state.tail or ()) + len(diff.new_lines)
        if state.tail is not None and not diff.gap and slid:
            self.window = max(self.window, tail_lines)  # lines dropped off the top: it slid
        state.tail = diff.state
        if first_sight and self.polls == 0 and self.since == "now":
            return [], _Observed(0, tail_lines, gap=False)
        events: list[Event] = []
        reason = self._gap_reason(diff.gap, first_sight, window_before, tail_lines, pod)
        if reason is not None:
            events.append(GapEvent(now, self.pipeline_id, pod, state.seq, reason))
        seq = state.seq
        events.extend(self.lines.events(now, self.pipeline_id, pod, seq + 1, diff.new_lines))
        state.seq = seq + len(diff.new_lines)
        gap = reason not in (None, "state_reset", "restarted")  # a restart is not an overflow
        return events, _Observed(len(diff.new_lines), tail_lines, gap)

    def _gap_reason(
        self, no_overlap: bool, first_sight: bool, window: int, length: int, pod: str = ""
    ) -> GapReason | None:
        restarted = pod in self.restarted
        self.restarted.discard(pod)
        if no_overlap:
            return "restarted" if restarted else "no_overlap"
        if first_sight and self.polls == 0 and self.reset_state and length:
            return "state_reset"
        if first_sight and self.polls > 0 and 0 < window <= length:
            return "window_full"
        return None


@dataclass(frozen=True, slots=True)
class _Observed:
    """What one pod's poll showed: new lines, the tail's length, a gap other than state_reset."""

    new_lines: int
    tail_lines: int
    gap: bool
