"""Is the planned poll interval kept? Planned vs achieved gaps between polls, and why not.

Slow answers with a bounded number of requests in flight cap the request rate at
`in_flight_limit / latency`: thirty pipelines that answer in 8 s, polled every second through 8
requests in flight, are each polled every 30 s, whatever the plan says. The budget's own
shortfall is reported elsewhere (`budget_exhausted`); this says when the plan is not kept for any
reason, once per episode, with the figures that explain it.

Pure: times are arguments, nothing here reads a clock.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Final

WINDOW: Final = 64
"""Recent polls (and answers) the figures are taken over."""
MIN_SAMPLES: Final = 16
"""Polls with a planned gap needed before anything is said."""
LATE_RATIO: Final = 1.5
"""Achieved gaps this much longer than planned (on average) are "not kept"..."""
LATE_SLACK_S: Final = 0.5
"""...and longer by at least this (a plan of 0.1 s late by 0.1 s is not worth a word)."""
KEPT_RATIO: Final = 1.2
"""Back under this ratio, the episode is over (and a new one may be reported)."""


@dataclass(frozen=True, slots=True)
class PaceReport:
    """The figures of an interval not kept (or kept again)."""

    kept: bool
    planned_interval_s: float
    achieved_interval_s: float
    latency_s: float
    in_flight_limit: int
    max_rate_rps: float
    """The most requests per second the in-flight limit allows at this latency."""
    needed_rate_rps: float
    """The requests per second the plan asks for: the followed pipelines per planned interval."""

    @property
    def cause(self) -> str:
        """`latency` when the in-flight limit at this latency cannot carry the plan."""
        return "latency" if self.max_rate_rps < self.needed_rate_rps else "other"


@dataclass(slots=True)
class PaceMonitor:
    """Gaps between consecutive polls of each pipeline, planned and achieved, and latencies."""

    planned: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))
    achieved: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))
    late: bool = False
    """An episode of not keeping the plan was reported and has not ended."""

    def sent(self, now: float, due_at: float, last_sent: float | None) -> None:
        """A poll went out at `now`; it was planned for `due_at`, the previous went at
        `last_sent` (None: its first poll, which has no gap)."""
        if last_sent is None or not math.isfinite(due_at):
            return
        self.planned.append(max(0.0, due_at - last_sent))
        self.achieved.append(now - last_sent)

    def answered(self, latency_s: float) -> None:
        """An answer (or failure) came `latency_s` after its request was sent."""
        self.latencies.append(latency_s)

    def intervals(self) -> tuple[float, float] | None:
        """The mean planned and achieved gap over the recent polls (None before any)."""
        if not self.planned:
            return None
        return sum(self.planned) / len(self.planned), sum(self.achieved) / len(self.achieved)

    def check(self, in_flight_limit: int, pipelines: int) -> PaceReport | None:
        """A report when the plan stops being kept, or is kept again; None otherwise.

        `pipelines`: how many are followed (the plan's rate is about that many per interval).
        """
        figures = self.intervals()
        if figures is None or len(self.planned) < MIN_SAMPLES or not self.latencies:
            return None
        planned, achieved = figures
        latency = sum(self.latencies) / len(self.latencies)
        is_late = achieved > max(planned * LATE_RATIO, planned + LATE_SLACK_S)
        is_kept = achieved <= planned * KEPT_RATIO + LATE_SLACK_S
        if is_late == self.late or (not is_late and not is_kept):
            return None
        self.late = is_late
        return PaceReport(
            kept=not is_late,
            planned_interval_s=planned,
            achieved_interval_s=achieved,
            latency_s=latency,
            in_flight_limit=in_flight_limit,
            max_rate_rps=in_flight_limit / latency if latency > 0 else math.inf,
            needed_rate_rps=pipelines / planned if planned > 0 else math.inf,
        )
