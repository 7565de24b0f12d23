"""What the simulator served: request counters and, per pod, which true lines some poll saw.

A logs answer shows each pod's lines [first, end) of its current incarnation. The recorder keeps
those ranges merged per (pipeline, pod, incarnation) instead of the text, so it stays small however
long a run lasts, and turns them back into lines from the world on demand. A follower that never
misses what a poll showed it must emit exactly `observed()`; lines outside it scrolled out of the
tail between polls and no client could have seen them.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable

from follower.simulator.world import PodWindow, World

Span = tuple[int, int]


def merge_span(spans: list[Span], first: int, end: int) -> None:
    """Add [first, end) to sorted, disjoint, non-adjacent `spans` in place, merging neighbours."""
    if first >= end:
        return
    at = bisect.bisect_left(spans, (first, end))
    if at > 0 and spans[at - 1][1] >= first:  # overlaps or touches the previous span
        at -= 1
        first = spans[at][0]
    stop = at
    while stop < len(spans) and spans[stop][0] <= end:
        end = max(end, spans[stop][1])
        stop += 1
    spans[at:stop] = [(first, end)]


class Recorder:
    """Counts every request by endpoint and outcome, and remembers the lines logs answers showed."""

    def __init__(self, world: World) -> None:
        self._world = world
        self.requests: Counter[str] = Counter()
        """Answered requests by endpoint: list, pipeline, status, logs, other."""
        self.outcomes: Counter[str] = Counter()
        """Answered requests by outcome: ok, rate_limited, 429, 5xx, envelope_error, malformed,
        400, 401, 403, 404, 405, client_gone."""
        self.by_endpoint: Counter[tuple[str, str]] = Counter()
        """Answered requests by (endpoint, outcome)."""
        self.slowed = 0
        """Requests delayed by the slow fault."""
        # pipeline -> pod -> (incarnation, replica) -> spans of line indexes shown
        self._seen: dict[str, dict[str, dict[tuple[int, int], list[Span]]]] = {}

    def count(self, endpoint: str, outcome: str) -> None:
        """Count one answered request."""
        self.requests[endpoint] += 1
        self.outcomes[outcome] += 1
        self.by_endpoint[endpoint, outcome] += 1

    def record(self, pipeline_id: str, windows: Iterable[PodWindow]) -> None:
        """Remember the tails of one successful logs answer."""
        pods = self._seen.setdefault(pipeline_id, {})
        for window in windows:
            incarnations = pods.setdefault(window.pod, {})
            spans = incarnations.setdefault((window.incarnation, window.replica), [])
            merge_span(spans, window.first, window.end)

    def observed_pods(self, pipeline_id: str) -> list[str]:
        """The pods of the pipeline that some successful logs answer listed, in first-seen order."""
        return list(self._seen.get(pipeline_id, {}))

    def observed(self, pipeline_id: str, pod: str) -> list[str]:
        """Every true line of the pod some poll showed, in truth order, each line once."""
        result: list[str] = []
        incarnations = self._seen.get(pipeline_id, {}).get(pod, {})
        for (incarnation, replica), spans in sorted(incarnations.items()):
            for first, end in spans:
                result.extend(self._world.segment(pipeline_id, replica, incarnation, first, end))
        return result

    def observed_spans(self, pipeline_id: str, pod: str) -> list[tuple[int, int, int]]:
        """(incarnation, first, end): the stretches of the pod's lines some poll showed, in truth
        order (lines [first, end) of that incarnation, as `World.history` numbers them)."""
        incarnations = self._seen.get(pipeline_id, {}).get(pod, {})
        return [
            (incarnation, first, end)
            for (incarnation, _), spans in sorted(incarnations.items())
            for first, end in spans
        ]

    def observed_count(self, pipeline_id: str, pod: str) -> int:
        """`len(observed(pipeline_id, pod))` without building the lines."""
        incarnations = self._seen.get(pipeline_id, {}).get(pod, {})
        return sum(end - first for spans in incarnations.values() for first, end in spans)
