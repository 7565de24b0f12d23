"""What one pipeline's pods looked like at the last poll, and the events a new poll implies.

Pure: `PipelineTracker.apply` takes a parsed logs answer and the wall time and returns events; it
does no I/O and reads no clock, so every rule below is table-tested without a server.

Rules:
- A pod's `logs` that is a runtime tail error is reported, never emitted as lines, and leaves the
  pod's diff state untouched, so the first real tail afterwards is diffed against the last one.
- Only terminated lines are diffed; an open last segment (no newline after it) is a line still
  being written, held per pod (`follower.core.pending`) and written as a `partial` snapshot once it
  did not change for `partial_flush_s`, when its pod is removed, or when the follower stops.
- A pod seen for the first time has its whole tail emitted (`since = "start"`), except on the very
  first poll with `since = "now"`, where its tail only primes the state (like `tail -n 0 -f`).
- A pod first seen after the first poll whose tail is already as long as this pipeline's proven
  window may have lost lines off the top of it: a `window_full` gap says so. A window is proven
  when a pod's tail slid (lines dropped off its top while new ones arrived); until then nothing
  is known of the window and no such gap is claimed.
- A pod missing from an answer keeps its state: an answer may omit a pod that still runs. It is
  removed (`pod_removed`, state freed) once it was missing from `POD_GONE_ANSWERS` answers in a
  row spanning at least `pod_grace_s`; back before that, it continues where it left off.
- Every pod's lines are numbered in an epoch (see `LogEvent`): a pod seen for the first time gets
  a new one, and so does a pod restored from a checkpoint whose first tail does not line up with
  the saved one (lines written after that checkpoint may have had those numbers before a crash).
- After `--reset-state`, every pod's first tail is preceded by a `state_reset` gap: what happened
  while the follower was away is unknown.
- A tracker restored from a checkpoint diffs each pod's first tail against the saved state, so
  lines written while the follower was down are emitted and a lost stretch shows as a gap.

Size: over 300 lines because the rules above are one state machine per pod (first sight, diff,
open line, missing, epochs), and the per-pod state, the table that holds it and the line
settings it applies belong with it.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from follower.core import pending
from follower.core.batch import EventBatch, LogRun, Part
from follower.core.differ import Diff, TailState, diff_logs, fingerprint, split_lines
from follower.core.enrich import EnrichSettings, enrich
from follower.core.events import Event, GapEvent, LogEvent, PodAddedEvent, PodRemovedEvent
from follower.core.model import (
    DEFAULT_MAX_LINE_BYTES,
    GapReason,
    LogsSnapshot,
    cut_line,
    epoch_from,
)
from follower.core.pending import Pending
from follower.core.schedule import COUNT_CAP, PodObservation
from follower.core.tail_errors import TailErrorMatcher

Since = Literal["start", "now"]

POD_GONE_ANSWERS: Final = 3
"""Answers in a row a pod must be missing from before it counts as removed: an answer that
omits a running pod is a hiccup of the API, not a removal, and a slowly polled pipeline can meet
two such answers in a row (the soak's 5% of missing answers did, once in 600 s)."""
_NO_EVENTS: Final = EventBatch()


def random_epoch() -> str:
    """A new epoch from the operating system's random source (see `LogEvent.epoch`)."""
    return epoch_from(secrets.randbits(64))


@dataclass(frozen=True, slots=True)
class LineSettings:
    """How a pod's output becomes events: line limit, enrichment, open lines, vanished pods."""

    max_bytes: int = DEFAULT_MAX_LINE_BYTES
    enrich: EnrichSettings = field(default_factory=EnrichSettings)
    max_tail_lines: int = 100_000
    """Only the last this many lines of a tail are read: a hostile 8 MB body of newlines must not
    become 8 million events. Anything cut off this way shows as a gap if it mattered."""
    max_answer_lines: int = 200_000
    """The same bound for a whole answer, shared by its pods: 41 pods of 100,000 blank lines
    fit the 8 MiB body cap, and 4 million events of one poll would take gigabytes."""
    partial_flush_s: float = 5.0
    """A line still being written is written as a `partial` snapshot once it did not change for
    this long (at most one snapshot per pod per this long)."""
    pod_grace_s: float = 60.0
    """A pod missing from the answers for this long (and from `POD_GONE_ANSWERS` in a row) is
    removed; back sooner, it continues where it left off."""

    def events(
        self, now: float, pipeline_id: str, pod: str, first_seq: int, lines: Sequence[str],
        *, epoch: str | None,
    ) -> EventBatch:
        """The log events of consecutive new lines, numbered from `first_seq`.

        The hot path of a busy pod: without enrichment, lines short enough that even 4-byte
        characters fit the limit are one `LogRun`, built once whatever their number; the
        encoder writes them from it without an event per line (follower/core/batch.py). With a
        longer line among them, or enrichment, each line is its own event.
        """
        if not lines:
            return _NO_EVENTS
        if not self.enrich.enabled and max(map(len, lines)) <= self.max_bytes // 4:
            return EventBatch((LogRun(now, pipeline_id, pod, first_seq, lines, epoch),))
        return EventBatch(
            self.event(now, pipeline_id, pod, seq, line, epoch=epoch)
            for seq, line in enumerate(lines, start=first_seq)
        )

    def event(
        self, now: float, pipeline_id: str, pod: str, seq: int, line: str,
        *, epoch: str | None = None, digest: int | None = None,
    ) -> LogEvent:
        """The log event of `line`: cut with a marker when too long, never dropped.

        With `digest` (the text's fingerprint) it is a partial snapshot of an open line.
        """
        message, cut = cut_line(line, self.max_bytes)
        partial = digest is not None
        if not self.enrich.enabled:
            return LogEvent(
                now, pipeline_id, pod, seq, message, cut,
                epoch=epoch, partial=partial, digest=digest or 0,
            )
        found = enrich(line, self.enrich, truncated=cut)
        return LogEvent(
            now, pipeline_id, pod, seq, message, cut, found.level, found.line_ts, found.fields,
            epoch=epoch, partial=partial, digest=digest or 0,
        )


@dataclass(slots=True)
class PodState:
    """Per-pod memory: the last real tail's fingerprints, the last sequence number and error.

    `epoch` names the space `seq` counts in; `fresh` says this process drew it (so no earlier
    process can have used its numbers). `pending` is the open last segment. `missing_since` and
    `missing_answers` count how long the pod has been absent from the answers. `replay_from`
    (restored from the journal of new numberings, follower/engine/journal.py): the lines of
    `tail` from this seq on were numbered but perhaps never written, so they are written again,
    under the same ids, at the next poll that still shows them all (0: nothing to write again).
    """

    tail: TailState | None = None
    seq: int = 0
    error: str | None = None
    epoch: str | None = None
    pending: Pending | None = None
    missing_since: float | None = None
    missing_answers: int = 0
    fresh: bool = False
    replay_from: int = 0

    def copy(self) -> PodState:
        """A copy for a checkpoint or an undo (tails and pendings are immutable, so shared)."""
        return PodState(
            self.tail, self.seq, self.error, self.epoch, self.pending,
            self.missing_since, self.missing_answers, self.fresh, self.replay_from,
        )


class Pods(MutableMapping[str, PodState]):
    """A pipeline's pods by name, in the order they were first seen: a dict, except that a lone
    pod is held without one.

    Most pipelines run one pod, and a dict holding one costs 184 bytes (the dict and a table of
    eight slots) where these three slots cost 56; the follower holds one per pipeline. A second
    pod moves both into a dict, and the dict goes again once one pod is left.
    """

    __slots__ = ("_many", "_name", "_state")

    def __init__(self, pods: Iterable[tuple[str, PodState]] = ()) -> None:
        self._name = ""
        self._state: PodState | None = None
        """The lone pod's state (`_name` is its name); None when there is none or `_many`."""
        self._many: dict[str, PodState] | None = None
        for name, state in pods:
            self[name] = state

    def __getitem__(self, name: str) -> PodState:
        many = self._many
        if many is not None:
            return many[name]
        if self._state is None or name != self._name:
            raise KeyError(name)
        return self._state

    # The ignore: `Mapping.get` is overloaded for defaults of any type; the tracker passes none.
    def get(self, name: str, default: PodState | None = None) -> PodState | None:  # type: ignore[override]
        """The pod's state, else `default` (without `Mapping.get`'s KeyError round trip)."""
        many = self._many
        if many is not None:
            return many.get(name, default)
        return self._state if self._state is not None and name == self._name else default

    def __contains__(self, name: object) -> bool:
        many = self._many
        if many is not None:
            return name in many
        return self._state is not None and name == self._name

    def __setitem__(self, name: str, state: PodState) -> None:
        many = self._many
        if many is not None:
            many[name] = state
        elif self._state is None or name == self._name:
            self._name, self._state = name, state
        else:
            self._many = {self._name: self._state, name: state}
            self._name, self._state = "", None

    def __delitem__(self, name: str) -> None:
        many = self._many
        if many is not None:
            del many[name]
            if len(many) == 1:
                ((self._name, self._state),) = many.items()
                self._many = None
        elif self._state is not None and name == self._name:
            self._name, self._state = "", None
        else:
            raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        many = self._many
        if many is not None:
            return iter(many)
        return iter(() if self._state is None else (self._name,))

    def __len__(self) -> int:
        many = self._many
        if many is not None:
            return len(many)
        return 0 if self._state is None else 1

    def __repr__(self) -> str:
        return f"Pods({dict(self)!r})"

    def copy(self) -> Pods:
        """A copy with a copy of each pod's state (`PodState.copy`), for an undo: at every poll,
        so straight from the slots (through the mapping protocol it took twice as long)."""
        clone = Pods()
        many = self._many
        if many is not None:
            clone._many = {name: state.copy() for name, state in many.items()}
        elif self._state is not None:
            clone._name, clone._state = self._name, self._state.copy()
        return clone


@dataclass(frozen=True, slots=True)
class PodTailError:
    """A pod whose `logs` held a tail error at this poll; `changed` is False if it already did."""

    pod: str
    error: str
    changed: bool


@dataclass(frozen=True, slots=True)
class Applied:
    """What one poll implies: events to write, and the pods that answered with a tail error."""

    events: EventBatch
    tail_errors: list[PodTailError]
    pods_with_logs: int
    observations: list[PodObservation] = field(default_factory=list)
    """One per pod with real lines: what the scheduler learns of its rate and window."""
    numbered: list[tuple[str, PodState]] = field(default_factory=list)
    """Pods whose lines this poll numbers in a way no earlier record can reproduce (a new epoch,
    the first lines after an empty or unknown tail, or lines after a gap: a restart that repeats
    the last lines seen would line up with the saved tail as if it had slid), each with its
    state after the poll and
    `replay_from` at its first line: to be made durable before the events are written (the
    journal), so a crash before the next checkpoint cannot give those lines other ids."""

    @property
    def all_failing(self) -> bool:
        """Every pod answered with a tail error (none with real logs): worth backing off."""
        return bool(self.tail_errors) and self.pods_with_logs == 0


Memento = tuple[Pods, int, int, float, frozenset[str]]


@dataclass(slots=True)
class PipelineTracker:
    """The follower's memory of one pipeline between polls."""

    pipeline_id: str
    since: Since
    matcher: TailErrorMatcher
    pods: Pods = field(default_factory=Pods)
    polls: int = 0
    """Polls applied, up to `COUNT_CAP` (only whether there was one is read)."""
    window: int = 0
    reset_state: bool = False
    lines: LineSettings = field(default_factory=LineSettings)
    new_epoch: Callable[[], str] = random_epoch
    partial_due: float = float("inf")
    """The earliest moment a partial snapshot of some pod is due (`flush_partials`)."""
    restarted: frozenset[str] = frozenset()
    """Pods whose next tail follows a restart of the worker (see `mark_restarted`). Immutable, so
    every tracker shares the one empty value (an empty `set` costs 216 bytes a pipeline)."""

    @classmethod
    def restored(
        cls,
        pipeline_id: str,
        since: Since,
        matcher: TailErrorMatcher,
        pods: dict[str, PodState],
        lines: LineSettings | None = None,
        *,
        new_epoch: Callable[[], str] = random_epoch,
        window: int = 0,
    ) -> PipelineTracker:
        """A tracker that continues from checkpointed pods (its next poll is not a first poll),
        with the `window` the saving tracker had proven (it decides how the first tails align)."""
        tracker = cls(
            pipeline_id, since, matcher, Pods((pod, state.copy()) for pod, state in pods.items()),
            polls=1, window=window, lines=lines or LineSettings(), new_epoch=new_epoch,
        )
        for state in tracker.pods.values():
            state.fresh = False  # drawn by an earlier process, which may have used more numbers
        return tracker

    def memento(self) -> Memento:
        """Everything `apply` changes, to undo a poll whose events could not be written."""
        return self.pods.copy(), self.polls, self.window, self.partial_due, self.restarted

    def restore(self, memento: Memento) -> None:
        """Go back to the state `memento()` saw."""
        self.pods, self.polls, self.window, self.partial_due, self.restarted = memento

    def snapshot(self) -> dict[str, PodState]:
        """A copy of the pods' state for a checkpoint."""
        return {pod: state.copy() for pod, state in self.pods.items()}

    def mark_restarted(self) -> None:
        """The worker restarted (the status endpoint's `start_time` changed): the next gap of
        each pod seen so far is a `restarted` one, not a guessed `no_overlap`."""
        self.restarted = frozenset(self.pods)

    def apply(self, snapshot: LogsSnapshot, now: float) -> Applied:
        """Fold one successful logs answer into the state; return the events it implies."""
        events: list[Part] = []
        tail_errors: list[PodTailError] = []
        observations: list[PodObservation] = []
        numbered: list[tuple[str, PodState]] = []
        seen: set[str] = set()
        read = self._lines_per_pod(len(snapshot.pods))
        for entry in snapshot.pods:
            if entry.pod in seen:  # a duplicated pod name would be diffed twice: keep the first
                continue
            seen.add(entry.pod)
            state = self.pods.get(entry.pod)
            epoch, untailed, seq = None, True, 0
            if state is None:
                state = self.pods[entry.pod] = PodState(epoch=self.new_epoch(), fresh=True)
                events.append(PodAddedEvent(now, self.pipeline_id, entry.pod))
            else:
                epoch, untailed, seq = state.epoch, not state.tail, state.seq
            state.missing_since, state.missing_answers = None, 0
            error = self.matcher.match(entry.logs)
            if error is not None and _is_output(state, entry.logs, error):
                error = None
            if error is not None:
                tail_errors.append(PodTailError(entry.pod, error, changed=error != state.error))
                state.error = error
                continue
            after_error, state.error = state.error is not None, None
            previous = None if state.tail is None else len(state.tail)
            pod_events, observed = self._diff_pod(
                entry.pod, state, entry.logs, now, read, after_error=after_error
            )
            events.extend(pod_events)
            gapped = bool(pod_events) and isinstance(pod_events[0], GapEvent)
            if state.epoch != epoch or gapped or (untailed and state.seq > seq):
                record = state.copy()
                record.replay_from = seq + 1
                numbered.append((entry.pod, record))
            observations.append(
                PodObservation(observed.new_lines, observed.tail_lines, observed.gap, previous)
            )
        if len(seen) < len(self.pods):
            events.extend(self._missing(seen, now))
        self.polls = min(self.polls + 1, COUNT_CAP)
        events.extend(self.flush_partials(now))
        return Applied(
            EventBatch(events), tail_errors, len(observations), observations, numbered
        )

    def _missing(self, seen: set[str], now: float) -> list[Event]:
        """Count the absence of pods the answer left out; remove those gone long enough."""
        events: list[Event] = []
        for name, state in list(self.pods.items()):
            if name in seen:
                continue
            if state.missing_since is None:
                state.missing_since = now
            state.missing_answers += 1
            if (
                state.missing_answers >= POD_GONE_ANSWERS
                and now - state.missing_since >= self.lines.pod_grace_s
            ):
                events.extend(self._snapshot_pending(name, state, now))
                del self.pods[name]
                events.append(PodRemovedEvent(now, self.pipeline_id, name, state.seq))
        return events

    def flush_partials(self, now: float, *, everything: bool = False) -> list[Event]:
        """Partial snapshots of open lines that stopped changing `partial_flush_s` ago (with
        `everything`: of every open line not yet flushed, as at shutdown)."""
        if not everything and now < self.partial_due:
            return []
        events: list[Event] = []
        due = float("inf")
        flush_s = self.lines.partial_flush_s
        for name, state in self.pods.items():
            held = state.pending
            if held is None:
                continue
            at = held.due_at(flush_s)
            if at <= now or (everything and at < float("inf")):
                events.extend(self._snapshot_pending(name, state, now))
            else:
                due = min(due, at)
        self.partial_due = due
        return events

    def _snapshot_pending(self, pod: str, state: PodState, now: float) -> list[Event]:
        held = state.pending
        if held is None or held.flushed or held.text is None:
            return []
        state.pending = Pending(held.digest, held.seen_at, True, held.text)
        # As its final line will be: CRLF output loses the "\r" that ends a line.
        text = held.text[:-1] if held.text.endswith("\r") else held.text
        event = self.lines.event(
            now, self.pipeline_id, pod, state.seq + 1, text,
            epoch=state.epoch, digest=held.digest,
        )
        return [event]

    def _lines_per_pod(self, pods: int) -> int:
        """How many lines of each pod's tail one answer reads: `max_answer_lines` shared."""
        share = self.lines.max_answer_lines // max(1, pods)
        return max(1, min(self.lines.max_tail_lines, share))

    def _diff_pod(
        self, pod: str, state: PodState, logs: str, now: float, read: int, *, after_error: bool
    ) -> tuple[list[Part], _Observed]:
        """The pod's events for this tail, and what the scheduler learns from it."""
        first_sight = state.tail is None
        terminated, open_text = pending.split_open(logs)
        window_before = self.window
        before = len(state.tail or ())
        # Lines older than the previous tail only show past a full window that then grew. The
        # first alignments of a restored pod must be the only ones: the process that saved it
        # may have numbered the lines after its tail.
        full = 0 < window_before <= before
        diff = diff_logs(
            state.tail, terminated, read, window_may_grow=full, check_unique=not state.fresh
        )
        tail_lines = len(diff.state) if terminated else 0
        restarted = after_error and _cannot_slide(diff, before, tail_lines, window_before)
        replay: list[str] | None = []
        if state.replay_from and terminated and not restarted and not diff.gap:
            replay = None if diff.ambiguous else _replayed(state, terminated, read, diff)
        if restarted or replay is None:
            # With lines numbered before a crash gone from the tail, or no one way to find them,
            # the whole tail goes on behind a gap, in a new epoch (below).
            diff = Diff(split_lines(terminated)[-read:], True, diff.state)
            replay = []
        slid = tail_lines < before + len(diff.new_lines)
        if state.tail is not None and not diff.gap and slid:
            self.window = max(self.window, tail_lines)  # lines dropped off the top: it slid
        state.tail = diff.state
        if first_sight and self.polls == 0 and self.since == "now":
            if open_text is not None:  # being written at start: its final form is new, not this
                state.pending = Pending(fingerprint(open_text), now, True, open_text)
            return [], _Observed(0, tail_lines, gap=False)
        events: list[Part] = []
        reason = self._gap_reason(diff.gap, first_sight, window_before, tail_lines, pod)
        if restarted or (reason is None and _rewritten(state.pending, diff.new_lines)):
            reason = "restarted"
        if not state.fresh and terminated:
            # Restored: the process that saved the tail may have numbered lines past it before it
            # stopped. If the tail lines up in one way only, those were these lines, in this
            # order, and every number it used is now behind `seq`; otherwise count on in a new
            # epoch. Either way, the numbers from here on are this process's own.
            if diff.gap or diff.ambiguous:
                state.epoch = self.new_epoch()
            state.fresh, state.replay_from = True, 0
        if reason is not None:
            events.append(GapEvent(now, self.pipeline_id, pod, state.seq, reason, state.epoch))
        seq = state.seq
        lines = replay + diff.new_lines if replay else diff.new_lines
        events.extend(
            self.lines.events(
                now, self.pipeline_id, pod, seq + 1 - len(replay), lines, epoch=state.epoch
            ).parts
        )
        state.seq = seq + len(diff.new_lines)
        self._hold_open(state, open_text, bool(diff.new_lines) or diff.gap, now)
        gap = reason not in (None, "state_reset", "restarted")  # a restart is not an overflow
        return events, _Observed(len(diff.new_lines), tail_lines, gap)

    def _hold_open(self, state: PodState, text: str | None, moved: bool, now: float) -> None:
        if text is None:
            state.pending = None
            return
        state.pending = pending.follow(state.pending, text, fingerprint(text), moved, now)
        self.partial_due = min(self.partial_due, state.pending.due_at(self.lines.partial_flush_s))

    def _gap_reason(
        self, no_overlap: bool, first_sight: bool, window: int, length: int, pod: str = ""
    ) -> GapReason | None:
        restarted = pod in self.restarted
        if restarted:
            self.restarted = self.restarted - {pod}
        if no_overlap:
            return "restarted" if restarted else "no_overlap"
        if first_sight and self.polls == 0 and self.reset_state and length:
            return "state_reset"
        if first_sight and self.polls > 0 and 0 < window <= length:
            return "window_full"
        return None


def _is_output(state: PodState, logs: str, error: str) -> bool:
    """Whether `logs`, which reads as a runtime error, is the pod's own output after all: it grew
    from the previous such answer by more lines, or it goes on from the previous tail. A runtime
    error replaces the output, so it does neither; a program that prints error-like lines (a
    gRPC client's `rpc error: ...`) does both, and its lines must not be lost."""
    if state.error is not None and error.startswith(state.error + "\n"):
        return True
    terminated = pending.split_open(logs)[0]
    if state.tail is None or not len(state.tail) or not terminated:
        return False
    diff = diff_logs(state.tail, terminated)
    return not diff.gap and len(diff.state) > len(diff.new_lines)


def _replayed(state: PodState, terminated: str, read: int, diff: Diff) -> list[str] | None:
    """The restored tail's lines from `replay_from` on, as the new tail shows them (just before
    its new lines), or None when some of them have left it."""
    count = state.seq - state.replay_from + 1
    if count <= 0:
        return []
    seen = len(diff.state) - len(diff.new_lines)
    if count > seen:
        return None
    return split_lines(terminated)[-read:][seen - count : seen]


def _rewritten(held: Pending | None, new_lines: Sequence[str]) -> bool:
    """Whether the line that was being written is not the one that completes it: a line only
    grows, so the output was rewritten (the pod restarted) and what was being written is lost.
    A final line has lost the one "\r" that ended it, its open segment not always."""
    if held is None or held.text is None or not new_lines:
        return False
    line = new_lines[0]
    return not (line.startswith(held.text) or (line + "\r").startswith(held.text))


def _cannot_slide(diff: Diff, before: int, tail_lines: int, window: int) -> bool:
    """Whether `diff` takes the tail for a slide of a `before`-line tail (lines dropped off its
    top) that a window of constant size cannot make: a slide needs a full window, and this tail
    is shorter than the previous one or than the proven window. After a tail error (the pod
    crashed or was replaced) that is a restart whose first lines repeat the last ones seen."""
    seen = tail_lines - len(diff.new_lines)
    return not diff.gap and 0 < seen < before and tail_lines < max(before, window)


@dataclass(frozen=True, slots=True)
class _Observed:
    """What one pod's poll showed: new lines, the tail's length, a gap other than state_reset."""

    new_lines: int
    tail_lines: int
    gap: bool
