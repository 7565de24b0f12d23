"""A poll's events as one value, in which a busy pod's new lines stay a run of lines.

A busy poll is mostly plain log events of one pod after another, each differing from the one
before only in `seq` and `message`. Building a `LogEvent` per line cost about as much as
encoding it (bench/throughput.py), and the JSON Lines encoder, which writes nearly every event
a follower produces, needs only the run's shared fields once and each line's text. So the
tracker hands out an `EventBatch`: its parts are events and `LogRun`s, and a run stands for its
`LogEvent`s without building them. Whoever reads the batch as a sequence sees `Event`s (a run's
built on demand, equal to those built one by one); the encoder reads `parts`
(follower/sinks/encoding.py).

Pure values: nothing here does I/O or reads a clock.
"""

from __future__ import annotations

import itertools
import operator
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar, Final, overload

from follower.core.events import Event, LogEvent


@dataclass(frozen=True, slots=True)
class LogRun:
    """Consecutive plain log events of one pod: `seq` from `first_seq` on, one per line.

    Plain: no optional field set (not cut, not partial, not enriched), so every line must be
    one `LogEvent` would keep whole: the tracker makes a run only of lines short enough for
    that and leaves the others to `LineSettings.event`.
    """

    kind: ClassVar[str] = LogEvent.kind
    ts: float
    pipeline_id: str
    pod: str
    first_seq: int
    lines: Sequence[str]
    epoch: str | None

    def __len__(self) -> int:
        return len(self.lines)

    def __iter__(self) -> Iterator[LogEvent]:
        ts, pipeline_id, pod, epoch = self.ts, self.pipeline_id, self.pod, self.epoch
        for seq, line in enumerate(self.lines, start=self.first_seq):
            yield LogEvent(ts, pipeline_id, pod, seq, line, False, None, None, None, epoch)


Part = Event | LogRun


class EventBatch(Sequence[Event]):
    """Events in order; a `LogRun` among `parts` stands for its log events.

    Immutable once built (`+` makes a new batch). Indexing builds the whole list once, for the
    readers (tests, tools) that index; the follower's own readers iterate or read `parts`.
    """

    __slots__ = ("_events", "_size", "parts")

    def __init__(self, parts: Iterable[Part] = ()) -> None:
        self.parts: tuple[Part, ...] = tuple(parts)
        self._size = sum(len(part) if type(part) is LogRun else 1 for part in self.parts)
        self._events: list[Event] | None = None

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[Event]:
        for part in self.parts:
            if type(part) is LogRun:
                yield from part
            else:
                yield part  # type: ignore[misc]  # not a LogRun: an Event

    @overload
    def __getitem__(self, index: int) -> Event: ...

    @overload
    def __getitem__(self, index: slice) -> list[Event]: ...

    def __getitem__(self, index: int | slice) -> Event | list[Event]:
        if self._events is None:
            self._events = list(self)
        return self._events[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, EventBatch | list):  # a list is not equal to a tuple either
            return len(self) == len(other) and list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # equal to lists, so unhashable like them

    def __add__(self, other: Iterable[Part]) -> EventBatch:
        more = other.parts if isinstance(other, EventBatch) else tuple(other)
        return EventBatch(self.parts + more) if more else self

    def __radd__(self, other: Iterable[Part]) -> EventBatch:
        return EventBatch(other) + self

    def __repr__(self) -> str:
        return f"EventBatch({list(self)!r})"


def pipeline_ids(events: Iterable[Event]) -> Iterator[str]:
    """Each event's pipeline, in order: a batch's runs without building their events."""
    if not isinstance(events, EventBatch):
        yield from map(_PIPELINE_ID, events)
        return
    for part in events.parts:
        if type(part) is LogRun:
            yield from itertools.repeat(part.pipeline_id, len(part))
        else:
            yield part.pipeline_id


def count_kinds(events: Iterable[Event]) -> Counter[str]:
    """How many events of each kind: a batch's runs counted without building their events."""
    if not isinstance(events, EventBatch):
        return Counter(map(_KIND, events))  # one pass at C speed
    kinds: Counter[str] = Counter()
    for part in events.parts:
        kinds[part.kind] += len(part) if type(part) is LogRun else 1
    return kinds


_KIND: Final = operator.attrgetter("kind")
_PIPELINE_ID: Final = operator.attrgetter("pipeline_id")
