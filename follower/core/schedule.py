"""When to poll each pipeline: before its tail window can overflow, within the request budget.

The API returns only the last N lines of each pod (N unknown), so a pod that writes more than N
lines between two polls loses lines for good. Each pipeline's next poll is therefore planned from
what its polls show: its line rate (the busiest pod's, since one request serves every pod) and its
window N (measured from the tails). A pipeline is polled when `fill_target` of its window is
expected to be new, clamped between a floor (never more often) and a ceiling (idle pipelines are
still polled, to notice them waking up).

Estimates err on the side of polling sooner, since a lost line is gone and an extra poll only
costs a token:
- The rate rises at once to a higher sample and decays towards lower ones with a half-life in
  seconds (an EWMA weighted by elapsed time, so the result does not depend on how often we poll).
- A gap means more lines were written than the tail held, so the count seen is only a lower
  bound: the sample is taken as `gap_rate_factor` times the whole tail over the elapsed time.
- The window is the longest tail seen until a tail proves it full (lines scrolled off its top);
  `initial_window` is only used before any line was seen. A longest-tail-so-far below
  `initial_window` is kept as is: the real window is at least that long and maybe no longer, and
  the smaller figure polls sooner. It grows by itself as the tails grow.

A rate needs two looks, so a cold start (thousands of pipelines never polled) is planned from
what one look shows:
- A first tail at least `initial_window` long says the pod writes enough to fill a window: its
  second look comes `probe_s` later, before the first polls of the others, so a busy pipeline's
  rate is known within seconds instead of after a round of every other pipeline's first poll.
- A shorter first tail says the pod wrote fewer lines than that since it started: its second look
  waits until every pipeline was polled once (a never-polled one may be the busiest of all).
- A first sample counts one line more than it saw (a short look that saw none proves no silence).
  A second look that overflowed unseen (a gap, or a full tail of only new lines after an empty
  one) bounds the rate only from below: a third look follows at the floor and measures it.
- A measured pipeline about to overflow (risk >= 0.9) goes before the first polls still to come:
  it loses lines for certain, while the next first poll may find a quiet pipeline. A pipeline
  that waited `ceiling_s` for its first poll goes before everything, so none starves.

When the budget cannot cover every pipeline's interval, `most_at_risk` spends each token on the
fullest window (the highest risk), and `shortfall` says by how many requests per second.
`most_at_risk` scans every due pipeline: it is the reference the dispatcher's
`Ranking` (follower/core/ranking.py, the same choice in O(log n) per token) is tested against. When
the budget covers more than the rates need, `spare_scale` shortens every interval so the spare
tokens shorten the time an idle or slow pipeline's sudden burst goes unseen.

Pure: `now` is always an argument (monotonic seconds); nothing here reads a clock.

Size: over 300 lines because it is one policy: the settings, the per-pipeline plan (rate, window,
risk), the urgency order and the budget figures derived from the plans read as one argument; the
ranking that applies the order without a scan is apart (ranking.py, pool.py, kinetic.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

COUNT_CAP: Final = 256
"""Where the plan's and the tracker's counters of polls and samples stop: CPython shares the ints
up to 256, a counter past them holds an int of its own (32 bytes a pipeline each), and nothing
reads more of them than whether they are 0, 1 or more."""
PROBE_FLOORS: Final = 2.0
"""A first sample over at most this many `floor_s` is as short a look as the floor allows: even if
it overflowed, probing again could not measure the rate better."""


@dataclass(frozen=True, slots=True)
class ScheduleSettings:
    """The planning knobs; `fixed_interval_s` switches adaptive planning off."""

    floor_s: float = 1.0
    """Never poll one pipeline more often than this."""
    ceiling_s: float = 60.0
    """Poll every pipeline at least this often, however idle it looks."""
    fill_target: float = 0.5
    """Poll when this fraction of the window is expected to be new lines."""
    rate_half_life_s: float = 30.0
    """Half-life of the line-rate EWMA, in seconds of elapsed time (not in polls)."""
    initial_window: int = 100
    """The window assumed before any tail has shown a line."""
    fixed_interval_s: float | None = None
    """Set: plain fixed-interval polling (`--interval`, benchmarks); None: adaptive."""
    gap_rate_factor: float = 2.0
    """After a gap, the rate sample is this times the whole tail per elapsed second."""
    probe_s: float = 5.0
    """Seconds between a pipeline's first look and its second, which measures the rate (never
    below `floor_s`). Long enough that a pod writing a line every few seconds shows one, so a
    slow pipeline is not taken for a busy one and polled often; a pod that fills its window
    faster overflows meanwhile and is probed again at the floor."""
    target_utilization: float = 0.5
    """Share of the budget the plan may fill: when the rates need less, every interval shrinks
    in proportion (see `spare_scale`); 0 polls only as often as the rates require."""

    def __post_init__(self) -> None:
        problems = []
        if not (math.isfinite(self.floor_s) and self.floor_s > 0):
            problems.append(f"floor_s must be positive, got {self.floor_s!r}")
        if not (math.isfinite(self.ceiling_s) and self.ceiling_s >= self.floor_s):
            problems.append(f"ceiling_s must be at least floor_s, got {self.ceiling_s!r}")
        if not 0 < self.fill_target <= 1:
            problems.append(f"fill_target must be in (0, 1], got {self.fill_target!r}")
        if not (math.isfinite(self.rate_half_life_s) and self.rate_half_life_s > 0):
            problems.append(f"rate_half_life_s must be positive, got {self.rate_half_life_s!r}")
        if self.initial_window < 1:
            problems.append(f"initial_window must be at least 1, got {self.initial_window!r}")
        fixed = self.fixed_interval_s
        if fixed is not None and not (math.isfinite(fixed) and fixed > 0):
            problems.append(f"fixed_interval_s must be positive, got {fixed!r}")
        if not (math.isfinite(self.gap_rate_factor) and self.gap_rate_factor >= 1):
            problems.append(f"gap_rate_factor must be at least 1, got {self.gap_rate_factor!r}")
        if not (math.isfinite(self.probe_s) and self.probe_s > 0):
            problems.append(f"probe_s must be positive, got {self.probe_s!r}")
        if not 0 <= self.target_utilization <= 1:
            problems.append(
                f"target_utilization must be in [0, 1], got {self.target_utilization!r}"
            )
        if problems:
            raise ValueError("; ".join(problems))


@dataclass(frozen=True, slots=True)
class PodObservation:
    """What one successful poll showed of one pod that answered with real lines.

    `new_lines` is what the differ emitted; with `gap` it is only a lower bound. Pass
    `previous_tail_lines` (the pod's tail length at its previous poll) when known: it is how a
    full window is recognised.
    """

    new_lines: int
    tail_lines: int
    gap: bool = False
    previous_tail_lines: int | None = None

    def count_is_lower_bound(self, window: int) -> bool:
        """More lines may have been written than `new_lines`: a gap, or a tail at least `window`
        long of only new lines after an empty one (the differ cannot tell an overflow there)."""
        return self.gap or (
            self.previous_tail_lines == 0 and self.new_lines == self.tail_lines >= window
        )

    @property
    def proves_window(self) -> bool:
        """Lines scrolled off the top of the tail (old length + new > new length), so the tail
        is as long as the window. A gap proves nothing: a restarted pod's tail is short too."""
        return (
            not self.gap
            and self.previous_tail_lines is not None
            and self.new_lines > 0
            and self.previous_tail_lines + self.new_lines > self.tail_lines
        )


@dataclass(frozen=True, slots=True)
class Learned:
    """What a plan learnt that outlives the process (checkpointed): a restart plans its first
    polls from it instead of probing from scratch, so a busy pipeline is polled at its pace from
    the first poll on."""

    rate_lps: float
    window: int | None
    window_proven: bool


@dataclass(slots=True)
class PipelinePlan:
    """One pipeline's planning state, updated after each successful logs poll."""

    last_poll: float | None = None
    """When the last successful logs poll was sent; None before the first."""
    rate_lps: float = 0.0
    """Smoothed new lines per second of the busiest pod."""
    window: int | None = None
    """Estimated tail window in lines; None until a tail held a line."""
    window_proven: bool = False
    """True once a full tail proved `window` (rather than bounded it from below)."""
    next_at: float | None = None
    """An override of the next request time (a backoff, a status poll); cleared by observe."""
    samples: int = 0
    """How many rate samples were folded in (the first one replaces the initial 0), up to
    `COUNT_CAP`; 0 means the rate is not measured yet. A first sample that is only a lower bound
    does not count."""
    polls: int = 0
    """Successful logs polls folded in, up to `COUNT_CAP`."""
    looks_busy: bool = False
    """Not measured yet, and the longest tail filled `initial_window`: probe before first polls."""
    waiting_since: float | None = None
    """When the pipeline was added (the runner sets it): the ceiling bounds the wait for a first
    poll too. None: the wait is not bounded, or it is over (the first poll clears it: nothing
    reads it once `last_poll` is set, and a float costs 24 bytes a pipeline)."""

    @classmethod
    def from_learned(cls, learned: Learned, waiting_since: float | None) -> PipelinePlan:
        """A plan that knows the rate and window from before a restart (counts as measured)."""
        return cls(
            rate_lps=learned.rate_lps, window=learned.window,
            window_proven=learned.window_proven, samples=1, polls=2,
            waiting_since=waiting_since,
        )

    def learned(self) -> Learned | None:
        """What to checkpoint; None before the rate was measured."""
        if self.samples == 0:
            return None
        return Learned(self.rate_lps, self.window, self.window_proven)

    def observe(
        self, now: float, pods: Sequence[PodObservation], settings: ScheduleSettings
    ) -> None:
        """Fold in a successful logs poll sent at `now`.

        `pods` holds the pods that answered with real lines: an empty sequence is a pipeline with
        no pods (idle). Do not call this for an answer in which every pod held a tail error:
        nothing was learnt about the rate, and the time since the last real poll must keep
        counting towards the risk.
        """
        if self.last_poll is not None and now > self.last_poll:
            elapsed = now - self.last_poll
            window = self._full_window(settings)
            first = self.samples == 0
            sample = max((_pod_rate(pod, elapsed, window, first, settings) for pod in pods),
                         default=0.0)
            self._fold_rate(sample, elapsed, settings)
            if self._probe_again(elapsed, window, pods, settings):
                self.samples = 0
        self._fold_window(pods)
        self.polls = min(self.polls + 1, COUNT_CAP)
        self.looks_busy = self.samples == 0 and (self.window or 0) >= settings.initial_window
        self.last_poll = now
        self.waiting_since = None
        self.next_at = None

    def _full_window(self, settings: ScheduleSettings) -> int:
        """How long a tail must be to be full: the proven window, else at least `initial_window`
        (a longest tail below it only bounds the window from below: a tail of 2 new lines after
        an empty one is not an overflow because the first tail held 1)."""
        if self.window_proven and self.window is not None:
            return self.window
        return max(self.window or 0, settings.initial_window)

    def _probe_again(
        self, elapsed: float, window: int, pods: Sequence[PodObservation],
        settings: ScheduleSettings,
    ) -> bool:
        """Whether the sample just folded in should not count as a measurement: the second look
        overflowed unseen over more than `PROBE_FLOORS` floors, so the rate is only bounded from
        below; a third look one floor later measures it. Once only: a third look always counts,
        so a pipeline that overflows even then is planned from its lower bound, not probed on."""
        return (
            self.samples == 1
            and self.polls == 1
            and elapsed > PROBE_FLOORS * settings.floor_s
            and any(pod.count_is_lower_bound(window) for pod in pods)
        )

    def defer_until(self, when: float) -> None:
        """Make `when` the next request time, whatever the schedule says (lifecycle delays)."""
        self.next_at = when

    def window_estimate(self, settings: ScheduleSettings) -> int:
        """The window used for planning: the measured one, else `initial_window`."""
        return self.window if self.window is not None else settings.initial_window

    def interval(self, settings: ScheduleSettings, scale: float = 1.0) -> float:
        """Seconds between polls: until `fill_target` of the window is new, within the bounds.

        Before the first rate sample the answer is `probe_s` after the first look (a second look
        measures the rate, where assuming an idle pipeline would leave a busy one unread for
        `ceiling_s`), shortened by `scale` for a first tail that filled a window, and `floor_s`
        after a second look that overflowed unseen.
        `scale` (from `spare_scale`, <= 1) shortens the result, never below `floor_s`.
        """
        if settings.fixed_interval_s is not None:
            return settings.fixed_interval_s
        if self.samples == 0:
            if self.polls > 1:
                return settings.floor_s
            # With budget to spare (scale < 1) a busy-looking first tail is looked at again
            # sooner, down to the floor: waiting for a probe would let a busy pod overflow.
            probe = settings.probe_s * (scale if self.looks_busy else 1.0)
            return max(settings.floor_s, probe)
        if self.rate_lps <= 0:
            needed = settings.ceiling_s
        else:
            wanted = settings.fill_target * self.window_estimate(settings) / self.rate_lps
            needed = min(settings.ceiling_s, max(settings.floor_s, wanted))
        return max(settings.floor_s, needed * scale)

    def due(self, settings: ScheduleSettings, scale: float = 1.0) -> float:
        """When the next request should be sent: the override if set, else last poll + interval.

        A pipeline never polled is due at once (-inf), so it sorts before every planned one.
        """
        if self.next_at is not None:
            return self.next_at
        if self.last_poll is None:
            return -math.inf
        return self.last_poll + self.interval(settings, scale)

    def risk(self, now: float) -> float:
        """The expected fraction of the window written since the last poll; > 1: losing lines.

        A pipeline never polled counts as 1.0: its tail may be full and nothing is known.
        """
        if self.last_poll is None:
            return 1.0
        if self.rate_lps <= 0:
            return 0.0
        window = self.window or 1  # lines arrive but no tail showed one: assume the worst
        return self.rate_lps * max(0.0, now - self.last_poll) / window

    def _fold_rate(self, sample: float, elapsed: float, settings: ScheduleSettings) -> None:
        if self.samples == 0 or sample >= self.rate_lps:
            self.rate_lps = sample  # rise at once: an underestimate loses lines
        else:
            keep = 0.5 ** (elapsed / settings.rate_half_life_s)
            self.rate_lps = sample + (self.rate_lps - sample) * keep
        self.samples = min(self.samples + 1, COUNT_CAP)

    def _fold_window(self, pods: Sequence[PodObservation]) -> None:
        proofs = [pod.tail_lines for pod in pods if pod.proves_window]
        if proofs:
            # Pods of one pipeline normally share one window; if not, the smallest is the one
            # that overflows first.
            self.window = min(proofs)
            self.window_proven = True
            return
        longest = max((pod.tail_lines for pod in pods), default=0)
        if longest > (self.window or 0):
            self.window = longest  # a longer tail than the proven window: the window grew
            self.window_proven = False


def _pod_rate(
    pod: PodObservation, elapsed: float, window: int, first: bool, settings: ScheduleSettings
) -> float:
    """Lines per second of one pod; after a gap, a deliberately high guess.

    A first sample counts one line more than it saw: over a short probe a pod writing a line
    every few seconds may show none, and taking that as silence would plan its next poll at the
    ceiling. Later samples span whole intervals and the EWMA keeps their history.
    """
    if pod.count_is_lower_bound(window):
        return max(pod.new_lines, pod.tail_lines) * settings.gap_rate_factor / elapsed
    return (pod.new_lines + (1 if first else 0)) / elapsed


OVERFLOW_RISK: Final = 0.9
"""The risk from which a measured pipeline goes before first polls: about to overflow. Not 1: the
rate is an estimate, and polled at an expected full window a pod spills a line or two half the
time (the budget bench lost 3 lines after warm-up at 1.0, none at 0.9 or 0.95)."""

OVERDUE: Final = 0
PROBE: Final = 1
OVERFLOWING: Final = 2
FIRST_POLL: Final = 3
SECOND_LOOK: Final = 4
BY_RISK: Final = 5


def urgency(plan: PipelinePlan, now: float, ceiling_s: float) -> tuple[int, float, float]:
    """Sort key, smallest first: (group, then within it the most urgent, then the oldest poll);
    ties then go to the smallest pipeline id.

    OVERDUE: unpolled for `ceiling_s` (or waiting that long for a first poll), the oldest first:
    the ceiling is a promise even when tokens are scarce. PROBE: not measured yet but its tail
    filled `initial_window`: a second look measures a possibly busy rate. OVERFLOWING: measured,
    risk >= OVERFLOW_RISK, losing lines now or about to. FIRST_POLL: never polled. SECOND_LOOK:
    not measured yet, its tail short: quiet so far. BY_RISK: every other measured pipeline, the
    fullest window first.
    """
    if plan.last_poll is None:
        waited = 0.0 if plan.waiting_since is None else now - plan.waiting_since
        if waited >= ceiling_s:
            return (OVERDUE, -waited, -math.inf)
        return (FIRST_POLL, -math.inf, -math.inf)
    last = plan.last_poll
    elapsed = now - last if now > last else 0.0
    if elapsed >= ceiling_s:
        return (OVERDUE, -elapsed, last)
    if plan.samples == 0:
        if plan.looks_busy:
            return (PROBE, -float(plan.window or 0), last)
        return (SECOND_LOOK, -elapsed, last)
    rate = plan.rate_lps  # plan.risk(now), inline; kinetic.RiskTournament computes it alike
    risk = rate * elapsed / (plan.window or 1) if rate > 0 else 0.0
    return (OVERFLOWING if risk >= OVERFLOW_RISK else BY_RISK, -risk, last)


def most_at_risk(
    due: Iterable[tuple[str, PipelinePlan]], now: float, *, ceiling_s: float = math.inf
) -> str | None:
    """Which of the due pipelines to poll with the next token (None when none is due): the
    reference, a scan of every due pipeline, that `Ranking` (follower/core/ranking.py) answers
    without the scan.

    The highest `risk()` first: the fullest window is the one closest to losing lines, and a
    poll of it reads the most lines per token, which is what counts when tokens are scarce
    (every poll reads at most one window). Among pipelines that already overflow this polls
    the most overflowed first, which spreads the unavoidable gaps evenly. Ties go to the
    longest unpolled, then the smallest id (deterministic).

    Ordering by lines lost per second of waiting (rate x wait) was tried and rejected: the gap
    estimate (2 x window / elapsed) is larger for a pipeline polled sooner, so the pipelines
    polled most recently won again and again, read half-empty windows, and under overload lost
    13% more lines than fixed-interval round robin on the same budget.

    Pipelines whose rate is not known yet are placed by what their first look showed (see
    `urgency` and the module docstring), and (pass the settings' `ceiling_s`) pipelines unpolled
    for that long, or waiting that long for a first poll, go first, so none starves when the
    budget is short.
    """
    best_key: tuple[int, float, float] | None = None
    best_id = ""
    for pipeline_id, plan in due:  # runs per token over every due pipeline: no tuple per item
        key = urgency(plan, now, ceiling_s)
        if best_key is None or key < best_key or (key == best_key and pipeline_id < best_id):
            best_key, best_id = key, pipeline_id
    return None if best_key is None else best_id


def demand_per_s(plans: Iterable[PipelinePlan], settings: ScheduleSettings) -> float:
    """Requests per second needed to poll every pipeline at its planned interval."""
    return sum(1.0 / plan.interval(settings) for plan in plans)


def spare_scale(
    plans: Iterable[PipelinePlan], settings: ScheduleSettings, budget_rate_per_s: float
) -> float:
    """The factor (<= 1) to pass to `interval`/`due` so that spare budget is not left unused.

    The rates only tell what was seen; an idle or slow pipeline can start a burst at any moment
    and is blind until its next poll. When the plans need less than `target_utilization` of the
    budget, shrinking every interval in proportion spends the spare tokens on shorter blind spots
    while keeping the relative priorities. 1.0 when the budget is already fully planned, in
    fixed-interval mode, or with `target_utilization = 0`.
    """
    if settings.fixed_interval_s is not None or settings.target_utilization <= 0:
        return 1.0
    demand = demand_per_s(plans, settings)
    target = budget_rate_per_s * settings.target_utilization
    if demand <= 0 or demand >= target:
        return 1.0
    return demand / target


def shortfall(
    plans: Iterable[PipelinePlan], settings: ScheduleSettings, budget_rate_per_s: float
) -> float:
    """How many requests per second the plans need beyond the budget (0 when it suffices)."""
    return max(0.0, demand_per_s(plans, settings) - budget_rate_per_s)
