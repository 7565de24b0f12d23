"""Table tests of the polling plan: rate, window, interval bounds, risk order, demand."""

from __future__ import annotations

import math

import pytest

from follower.core.budget import RequestBudget
from follower.core.schedule import (
    COUNT_CAP,
    PipelinePlan,
    PodObservation,
    ScheduleSettings,
    demand_per_s,
    most_at_risk,
    shortfall,
    spare_scale,
)

SETTINGS = ScheduleSettings()


def plan_with(rate: float, window: int, last_poll: float = 0.0) -> PipelinePlan:
    """A plan in a known state, as if several polls had already been folded in."""
    return PipelinePlan(last_poll=last_poll, rate_lps=rate, window=window, samples=3)


def pod(new: int, tail: int, *, gap: bool = False, previous: int | None = None) -> PodObservation:
    return PodObservation(new_lines=new, tail_lines=tail, gap=gap, previous_tail_lines=previous)


@pytest.mark.parametrize(
    ("rate", "window", "interval"),
    [
        (0.0, 100, 60.0),  # idle: the ceiling
        (0.5, 100, 60.0),  # 100 s wanted, the ceiling wins
        (1.0, 100, 50.0),
        (5.0, 100, 10.0),
        (10.0, 100, 5.0),
        (10.0, 1000, 50.0),
        (50.0, 100, 1.0),
        (500.0, 100, 1.0),  # 0.1 s wanted, the floor wins
    ],
)
def test_interval_shrinks_with_rate_within_floor_and_ceiling(
    rate: float, window: int, interval: float
) -> None:
    """Interval = fill_target * window / rate, clamped to [floor_s, ceiling_s]."""
    assert plan_with(rate, window).interval(SETTINGS) == pytest.approx(interval)


def test_fixed_interval_mode_ignores_what_is_observed() -> None:
    """With fixed_interval_s every pipeline is polled at that interval, busy or idle."""
    fixed = ScheduleSettings(fixed_interval_s=5.0)
    for plan in (plan_with(0.0, 100), plan_with(500.0, 10)):
        assert plan.interval(fixed) == 5.0
        assert plan.due(fixed) == 5.0


def test_first_poll_measures_the_tail_and_asks_for_an_early_second() -> None:
    """The first poll has no elapsed time: it records the tail, and the next comes at probe_s."""
    plan = PipelinePlan()
    assert plan.due(SETTINGS) == -math.inf
    plan.observe(10.0, [pod(40, 40), pod(7, 7)], SETTINGS)
    assert (plan.last_poll, plan.rate_lps, plan.window) == (10.0, 0.0, 40)
    assert not plan.window_proven
    assert plan.due(SETTINGS) == 15.0
    plan.observe(15.0, [pod(0, 40), pod(0, 7)], SETTINGS)
    assert plan.rate_lps == 0.2  # five seconds that showed nothing: counted as one line
    assert plan.due(SETTINGS) == 75.0  # 100 s wanted, the ceiling wins
    plan.observe(75.0, [pod(0, 40), pod(0, 7)], SETTINGS)
    assert plan.rate_lps == pytest.approx(0.2 * 0.5 ** (60 / 30))  # later samples as seen


def test_the_probe_is_never_sooner_than_the_floor() -> None:
    """probe_s below floor_s: the floor wins, as for every other interval."""
    settings = ScheduleSettings(floor_s=2.0, probe_s=0.5)
    plan = PipelinePlan()
    plan.observe(10.0, [pod(40, 40)], settings)
    assert plan.due(settings) == 12.0


def test_rate_is_the_busiest_pod_and_rises_at_once() -> None:
    """One request serves every pod, so the pipeline's rate is its busiest pod's."""
    plan = PipelinePlan()
    plan.observe(0.0, [pod(10, 10), pod(10, 10)], SETTINGS)
    plan.observe(5.0, [pod(10, 20), pod(40, 50)], SETTINGS)
    assert plan.rate_lps == pytest.approx(41 / 5)  # the first sample counts one line more
    plan.observe(6.0, [pod(30, 50), pod(0, 50)], SETTINGS)
    assert plan.rate_lps == 30.0  # no smoothing upwards: an underestimate loses lines


def test_rate_decays_by_elapsed_time_not_by_poll_count() -> None:
    """One 30 s poll and three 10 s polls with no new lines both halve the rate (half-life 30 s)."""
    one, three = plan_with(8.0, 1000), plan_with(8.0, 1000)
    one.observe(30.0, [pod(0, 500)], SETTINGS)
    for t in (10.0, 20.0, 30.0):
        three.observe(t, [pod(0, 500)], SETTINGS)
    assert one.rate_lps == pytest.approx(4.0)
    assert three.rate_lps == pytest.approx(4.0)


def test_rate_decays_towards_a_lower_sample() -> None:
    """A lower sample pulls the estimate down by 1 - 2**(-elapsed/half_life) of the difference."""
    plan = plan_with(10.0, 1000)
    plan.observe(30.0, [pod(60, 500)], SETTINGS)  # sample 2 lines/s
    assert plan.rate_lps == pytest.approx(2.0 + 8.0 * 0.5)


@pytest.mark.parametrize(
    ("observation", "rate"),
    [
        (pod(100, 100, gap=True), 40.0),  # the whole tail, doubled, over 5 s
        (pod(30, 100, gap=True), 40.0),  # a restart shows a short count: the tail still bounds it
        (pod(100, 100), 20.0),  # without the gap: the count as seen
    ],
)
def test_gap_raises_the_rate_estimate(observation: PodObservation, rate: float) -> None:
    """A gap means more lines than the tail held: the sample is gap_rate_factor * tail / elapsed."""
    plan = plan_with(1.0, 100)
    plan.observe(5.0, [observation], SETTINGS)
    assert plan.rate_lps == pytest.approx(rate)


@pytest.mark.parametrize(
    ("observation", "lower_bound"),
    [
        (pod(5, 100, gap=True, previous=100), True),  # the differ saw no overlap
        (pod(100, 100, previous=0), True),  # only new lines, a whole window, after an empty tail
        (pod(150, 150, previous=0), True),
        (pod(99, 99, previous=0), False),  # shorter than the window: nothing can have scrolled
        (pod(100, 100, previous=None), False),  # first sight: no count to bound
        (pod(100, 100, previous=100), False),  # the differ found the overlap: an exact count
    ],
)
def test_a_count_is_a_lower_bound_after_a_gap_or_an_unseen_overflow(
    observation: PodObservation, lower_bound: bool
) -> None:
    """A full tail of only new lines after an empty one may have overflowed: the differ cannot
    flag that as a gap, so the count is treated like one."""
    assert observation.count_is_lower_bound(100) is lower_bound


def test_a_full_tail_after_an_empty_one_raises_the_rate_like_a_gap() -> None:
    """An empty first tail then a full one: the sample is gap_rate_factor * tail / elapsed."""
    plan = PipelinePlan()
    plan.observe(0.0, [pod(0, 0)], SETTINGS)
    plan.observe(1.5, [pod(200, 200, previous=0)], SETTINGS)
    assert plan.rate_lps == pytest.approx(2 * 200 / 1.5)


def test_a_short_tail_of_new_lines_after_an_empty_one_is_no_overflow() -> None:
    """The longest tail so far (1 line) only bounds the window from below: 2 new lines after an
    empty tail are an exact count, not a lower bound, and the sample is a measurement."""
    plan = PipelinePlan()
    plan.observe(0.0, [pod(1, 1), pod(0, 0)], SETTINGS)
    plan.observe(5.0, [pod(0, 1, previous=1), pod(2, 2, previous=0)], SETTINGS)
    assert plan.samples == 1
    assert plan.rate_lps == pytest.approx(3 / 5)  # 2 lines + 1 over the first sample


def test_a_proven_window_shorter_than_the_assumed_one_is_full() -> None:
    """Once a window of 50 is proven, 50 new lines after an empty tail may have overflowed."""
    plan = PipelinePlan(last_poll=0.0, window=50, window_proven=True, polls=1)
    plan.observe(10.0, [pod(50, 50, previous=0)], SETTINGS)
    assert plan.rate_lps == pytest.approx(2 * 50 / 10)


def test_a_first_sample_that_overflowed_over_a_long_look_is_probed_again() -> None:
    """A gap after 100 s bounds the rate only from below: the pipeline stays unmeasured, is
    probed again one floor later, and that short look measures it."""
    plan = PipelinePlan()
    plan.observe(0.0, [pod(200, 200)], SETTINGS)
    plan.observe(100.0, [pod(200, 200, gap=True, previous=200)], SETTINGS)
    assert (plan.samples, plan.looks_busy, plan.rate_lps) == (0, True, 4.0)
    assert plan.due(SETTINGS) == 101.0  # the third look comes at the floor, not at probe_s
    plan.observe(101.0, [pod(150, 200, previous=200)], SETTINGS)
    assert (plan.samples, plan.looks_busy) == (1, False)
    assert plan.rate_lps == 151.0  # the probe replaces the lower bound, even though it is lower


def test_a_pipeline_is_probed_again_once_only() -> None:
    """A third look counts even when it overflowed too: no endless probing of a busy pipeline
    whose probes are late (tokens queued behind other probes)."""
    plan = PipelinePlan()
    plan.observe(0.0, [pod(200, 200)], SETTINGS)
    plan.observe(100.0, [pod(200, 200, gap=True, previous=200)], SETTINGS)
    plan.observe(105.0, [pod(200, 200, gap=True, previous=200)], SETTINGS)
    assert (plan.samples, plan.looks_busy, plan.polls) == (1, False, 3)
    assert plan.rate_lps == pytest.approx(2 * 200 / 5)


def test_an_overflow_over_the_shortest_look_counts_as_a_measurement() -> None:
    """Within two floors of the first poll a gap is the best measurement the floor allows."""
    plan = PipelinePlan()
    plan.observe(0.0, [pod(200, 200)], SETTINGS)
    plan.observe(2.0, [pod(200, 200, gap=True, previous=200)], SETTINGS)
    assert plan.samples == 1
    assert plan.rate_lps == pytest.approx(200.0)


@pytest.mark.parametrize(
    ("tails", "busy"),
    [
        ([100], True),  # a tail as long as the window assumed: may be busy
        ([30, 120], True),  # the busiest pod counts
        ([99], False),  # fewer lines than a window since the pod started
        ([], False),  # no pods
    ],
)
def test_a_first_tail_that_fills_the_assumed_window_looks_busy(
    tails: list[int], busy: bool
) -> None:
    """looks_busy: not measured yet and the longest tail reached initial_window."""
    plan = PipelinePlan()
    plan.observe(0.0, [pod(n, n) for n in tails], SETTINGS)
    assert plan.looks_busy is busy
    plan.observe(1.0, [pod(1, n, previous=n) for n in tails], SETTINGS)
    assert plan.looks_busy is False  # measured: its risk decides from now on


def busy_once(last_poll: float) -> PipelinePlan:
    """Polled once, with a first tail that filled the window: its second look is a probe."""
    return PipelinePlan(last_poll=last_poll, window=200, looks_busy=True)


@pytest.mark.parametrize(
    ("plans", "expected"),
    [
        # a probe of a full first tail goes before an overflowing pipeline and a first poll
        ({"pipe_b": plan_with(20.0, 100), "pipe_probe": busy_once(19.0)}, "pipe_probe"),
        ({"pipe_new": PipelinePlan(), "pipe_probe": busy_once(19.0)}, "pipe_probe"),
        # the fuller first tail first, then the older first poll
        ({"pipe_a": busy_once(18.0), "pipe_b": PipelinePlan(last_poll=19.0, window=300,
                                                            looks_busy=True)}, "pipe_b"),
        ({"pipe_b": busy_once(18.0), "pipe_a": busy_once(19.0)}, "pipe_b"),
        # a window 90% full goes before a first poll (the rate is an estimate); 85% does not
        ({"pipe_new": PipelinePlan(), "pipe_b": plan_with(9.0, 200)}, "pipe_b"),
        ({"pipe_new": PipelinePlan(), "pipe_b": plan_with(8.5, 200)}, "pipe_new"),
        # a short first tail waits for the first polls, but not for the fullest measured window
        ({"pipe_quiet": PipelinePlan(last_poll=1.0, window=5), "pipe_new": PipelinePlan()},
         "pipe_new"),
        ({"pipe_quiet": PipelinePlan(last_poll=1.0, window=5), "pipe_a": plan_with(1.0, 100)},
         "pipe_quiet"),
        # among short first tails, the one polled longest ago
        ({"pipe_a": PipelinePlan(last_poll=5.0, window=50),
          "pipe_b": PipelinePlan(last_poll=1.0, window=5)}, "pipe_b"),
    ],
)
def test_cold_start_order_follows_the_evidence_of_the_first_look(
    plans: dict[str, PipelinePlan], expected: str
) -> None:
    """Probe of a full first tail < overflowing < first poll < second look of a short tail <
    measured risk below 1."""
    assert most_at_risk(plans.items(), 20.0) == expected


def test_poll_and_sample_counts_stop_at_the_cap() -> None:
    """A long-followed plan's counters stay small shared ints, and it plans as it did before."""
    plan = PipelinePlan()
    for second in range(COUNT_CAP + 50):
        plan.observe(float(second), [pod(1, 100, previous=100)], SETTINGS)
    assert (plan.polls, plan.samples) == (COUNT_CAP, COUNT_CAP)
    assert plan.rate_lps == pytest.approx(1.0, rel=0.01) and plan.learned() is not None


def test_the_first_poll_ends_the_wait_for_it() -> None:
    """Once polled, a plan keeps no time of its addition (nothing reads it any more), and its due
    time and risk count from the poll."""
    plan = PipelinePlan(waiting_since=20.0)
    plan.observe(25.0, [], SETTINGS)
    assert plan.waiting_since is None and plan.last_poll == 25.0
    assert plan.due(SETTINGS) > 25.0 and plan.risk(30.0) == 0.0


def test_a_first_poll_waits_at_most_the_ceiling_behind_overflowing_pipelines() -> None:
    """A never-polled plan added at 20 s goes before an overflowing one from 80 s (ceiling 60 s);
    a plan that does not say when it was added is never overdue this way."""
    new = PipelinePlan(waiting_since=20.0)
    unknown = PipelinePlan()

    def choose(now: float, plan: PipelinePlan) -> str | None:
        busy = plan_with(20.0, 100, last_poll=now - 10.0)  # risk 2: overflowing
        return most_at_risk({"pipe_new": plan, "pipe_busy": busy}.items(), now, ceiling_s=60.0)

    assert choose(20.0, new) == "pipe_busy"
    assert choose(79.0, new) == "pipe_busy"
    assert choose(80.0, new) == "pipe_new"
    assert choose(1000.0, unknown) == "pipe_busy"


def test_after_a_gap_the_next_interval_is_a_quarter_of_the_last() -> None:
    """Doubling the lower bound makes the next poll come 4x sooner than the one that overflowed."""
    plan = plan_with(2.0, 100)
    plan.observe(25.0, [pod(100, 100, gap=True)], SETTINGS)
    assert plan.interval(SETTINGS) == pytest.approx(25.0 / 4)


@pytest.mark.parametrize(
    ("observations", "window", "proven"),
    [
        ([[pod(5, 5)]], 5, False),  # a short tail bounds the window from below; kept (safe side)
        ([[pod(5, 5)], [pod(5, 10, previous=5)]], 10, False),  # it grew: not full yet
        ([[pod(50, 50)], [pod(10, 50, previous=50)]], 50, True),  # same length, new lines: full
        ([[pod(50, 50)], [pod(0, 50, previous=50)]], 50, False),  # nothing new proves nothing
        ([[pod(50, 50)], [pod(30, 40, gap=True, previous=50)]], 50, False),  # a restart proves none
        ([[pod(50, 50)], [pod(10, 50, previous=50)], [pod(10, 80, previous=70)]], 80, False),
        ([[pod(100, 100)], [pod(10, 100, previous=100), pod(10, 60, previous=60)]], 60, True),
        ([[pod(200, 200)]], 200, False),  # above initial_window: the measure wins
        ([[]], None, False),
    ],
)
def test_window_is_measured_from_the_tails(
    observations: list[list[PodObservation]], window: int | None, proven: bool
) -> None:
    """The longest tail bounds the window until one proves full; the smallest full one wins."""
    plan = PipelinePlan()
    for t, pods in enumerate(observations):
        plan.observe(float(t), pods, SETTINGS)
    assert (plan.window, plan.window_proven) == (window, proven)


def test_initial_window_is_used_only_before_any_line() -> None:
    """Before any tail held a line, planning assumes initial_window."""
    plan = PipelinePlan(last_poll=0.0, rate_lps=10.0, samples=1)
    assert plan.window_estimate(SETTINGS) == 100
    assert plan.interval(SETTINGS) == pytest.approx(5.0)


def test_override_wins_until_the_next_successful_poll() -> None:
    """A lifecycle delay replaces the planned time; the next observe returns to the plan."""
    plan = plan_with(1.0, 100, last_poll=0.0)
    plan.defer_until(7.0)
    assert plan.due(SETTINGS) == 7.0
    plan.observe(7.0, [pod(7, 100, previous=100)], SETTINGS)
    assert plan.next_at is None
    assert plan.due(SETTINGS) == pytest.approx(7.0 + plan.interval(SETTINGS))


@pytest.mark.parametrize(
    ("plan", "now", "risk"),
    [
        (PipelinePlan(), 5.0, 1.0),
        (plan_with(0.0, 100), 1000.0, 0.0),
        (plan_with(10.0, 100), 5.0, 0.5),
        (plan_with(10.0, 100), 20.0, 2.0),
    ],
)
def test_risk_is_the_expected_fraction_of_the_window_that_is_new(
    plan: PipelinePlan, now: float, risk: float
) -> None:
    """risk = rate * time since the last poll / window; never-polled counts as a full window."""
    assert plan.risk(now) == pytest.approx(risk)


@pytest.mark.parametrize(
    ("plans", "expected"),
    [
        ({}, None),
        ({"pipe_a": plan_with(1.0, 100), "pipe_b": plan_with(10.0, 100)}, "pipe_b"),
        ({"pipe_a": plan_with(10.0, 100), "pipe_b": plan_with(20.0, 100)}, "pipe_b"),
        # the fuller window first, though pipe_a would overflow sooner (1.5 s against 2.2 s)
        ({"pipe_a": plan_with(40.0, 100, 19.0), "pipe_b": plan_with(4.5, 100)}, "pipe_b"),
        ({"pipe_a": plan_with(0.1, 1), "pipe_b": plan_with(4.5, 100)}, "pipe_a"),
        # no rate known yet: a first poll goes before a window that is not overflowing yet...
        ({"pipe_a": plan_with(1.0, 100), "pipe_new": PipelinePlan()}, "pipe_new"),
        # ...but after one that overflows (risk 4): that one loses lines for certain
        ({"pipe_new": PipelinePlan(), "pipe_b": plan_with(20.0, 100)}, "pipe_b"),
        ({"pipe_b": plan_with(20.0, 100), "pipe_once": PipelinePlan(last_poll=19.0)}, "pipe_b"),
        ({"pipe_new": PipelinePlan(), "pipe_once": PipelinePlan(last_poll=19.0)}, "pipe_new"),
        # equal risk: the longest unpolled, then the smallest id
        ({"pipe_b": plan_with(0.0, 100, 5.0), "pipe_a": plan_with(0.0, 100, 3.0)}, "pipe_a"),
        ({"pipe_b": plan_with(0.0, 100), "pipe_a": plan_with(0.0, 100)}, "pipe_a"),
    ],
)
def test_most_at_risk_polls_the_fullest_window_first(
    plans: dict[str, PipelinePlan], expected: str | None
) -> None:
    """Unknown rates first, then the highest risk, then the longest unpolled, then the id."""
    assert most_at_risk(plans.items(), 20.0) == expected


def test_the_ceiling_holds_when_tokens_are_scarce() -> None:
    """An idle pipeline unpolled for ceiling_s goes before an overflowing one: it never starves."""
    plans = {"pipe_idle": plan_with(0.0, 100, -50.0), "pipe_busy": plan_with(20.0, 100)}
    assert most_at_risk(plans.items(), 20.0) == "pipe_busy"
    assert most_at_risk(plans.items(), 20.0, ceiling_s=60.0) == "pipe_idle"
    assert most_at_risk(plans.items(), 9.0, ceiling_s=60.0) == "pipe_busy"


def test_demand_and_shortfall() -> None:
    """Demand sums 1/interval; the shortfall is what exceeds the budget, never negative."""
    plans = [plan_with(50.0, 100), plan_with(10.0, 100), plan_with(0.0, 100)]  # 1 s, 5 s, 60 s
    assert demand_per_s(plans, SETTINGS) == pytest.approx(1.0 + 0.2 + 1 / 60)
    assert shortfall(plans, SETTINGS, 1.0) == pytest.approx(0.2 + 1 / 60)
    assert shortfall(plans, SETTINGS, 4.0) == 0.0
    fixed = ScheduleSettings(fixed_interval_s=0.5)
    assert shortfall(plans, fixed, 4.0) == pytest.approx(2.0)


def test_invalid_settings_are_all_reported_at_once() -> None:
    """Every bad knob is named in one ValueError."""
    with pytest.raises(ValueError, match=r"floor_s.*fill_target.*fixed_interval_s"):
        ScheduleSettings(floor_s=0.0, ceiling_s=10.0, fill_target=1.5, fixed_interval_s=-1.0)


@pytest.mark.parametrize(
    ("knob", "value"),
    [
        ("floor_s", math.nan),
        ("ceiling_s", 0.5),
        ("fill_target", 0.0),
        ("rate_half_life_s", 0.0),
        ("initial_window", 0),
        ("fixed_interval_s", math.inf),
        ("gap_rate_factor", 0.5),
        ("probe_s", 0.0),
        ("target_utilization", 1.5),
    ],
)
def test_each_invalid_setting_is_named(knob: str, value: float) -> None:
    """Each knob out of its range is refused with its name."""
    with pytest.raises(ValueError, match=knob):
        ScheduleSettings(**{knob: value})  # type: ignore[arg-type]


def test_spare_budget_shortens_every_interval_in_proportion() -> None:
    """Plans needing ~1 req/s of 2 spare req/s shrink by need/2, but never below the floor."""
    plans = [plan_with(1.0, 100), plan_with(0.0, 100), plan_with(50.0, 100)]  # 50 s, 60 s, 1 s
    need = 1 / 50 + 1 / 60 + 1.0
    scale = spare_scale(plans, SETTINGS, 4.0)
    assert scale == pytest.approx(need / 2.0)
    assert plans[0].interval(SETTINGS, scale) == pytest.approx(50.0 * need / 2.0)
    assert plans[2].interval(SETTINGS, scale) == 1.0
    assert plans[0].due(SETTINGS, scale) == pytest.approx(50.0 * need / 2.0)


@pytest.mark.parametrize(
    ("settings", "budget"),
    [
        (SETTINGS, 1.0),  # the plans already need more than half the budget
        (ScheduleSettings(target_utilization=0.0), 100.0),
        (ScheduleSettings(fixed_interval_s=5.0), 100.0),
    ],
)
def test_no_spare_scaling_when_the_budget_is_planned_or_it_is_off(
    settings: ScheduleSettings, budget: float
) -> None:
    """The scale is 1 when there is no spare budget, when disabled, and in fixed mode."""
    plans = [plan_with(1.0, 100), plan_with(50.0, 100)]
    assert spare_scale(plans, settings, budget) == 1.0
    assert spare_scale([], SETTINGS, budget) == 1.0


def simulate(rates: list[float], budget_rate: float, settings: ScheduleSettings) -> tuple[int, int]:
    """Pods writing steadily into 100-line tails, polled by plan within a budget for 300 s.

    Returns (polls, lines lost): lines that scrolled out of a tail before a poll read them.
    """
    window, end = 100, 300.0
    budget = RequestBudget(budget_rate, 1)
    plans = {f"pipe_{i}": PipelinePlan() for i in range(len(rates))}
    read = dict.fromkeys(plans, 0)
    lost = polls = 0
    now = 0.0
    while now < end:
        scale = spare_scale(plans.values(), settings, budget.current_rate_per_s)
        due = [(p, plan) for p, plan in plans.items() if plan.due(settings, scale) <= now]
        if not due:
            now = min(plan.due(settings, scale) for plan in plans.values())
            continue
        if budget.available_at(now) > now:
            now = budget.available_at(now)
            continue
        pick = most_at_risk(due, now, ceiling_s=settings.ceiling_s)
        assert pick is not None
        budget.take(now)
        polls += 1
        written = int(rates[int(pick[5:])] * now)
        tail, previous = min(written, window), min(read[pick], window)
        new = written - read[pick]
        lost += max(0, new - tail)
        read[pick] = written
        observation = PodObservation(min(new, tail), tail, new > tail, previous)
        plans[pick].observe(now, [observation], settings)
    for pick in plans:  # lines scrolled out since the last poll (a full tail is still there)
        lost += max(0, int(rates[int(pick[5:])] * now) - read[pick] - window)
    return polls, lost


def test_adaptive_loses_nothing_when_the_budget_allows() -> None:
    """Ten pods at 5 lines/s and 5 req/s: no line lost, with half the requests of a 5 s poll."""
    adaptive = simulate([5.0] * 10, 5.0, ScheduleSettings(target_utilization=0.0))
    fixed = simulate([5.0] * 10, 5.0, ScheduleSettings(fixed_interval_s=5.0))
    assert adaptive[1] == fixed[1] == 0
    assert adaptive[0] < 0.6 * fixed[0]


def test_adaptive_loses_no_more_than_round_robin_under_overload() -> None:
    """50 pods at 30 lines/s on 4 req/s: every token should still read a full window."""
    adaptive = simulate([30.0] * 50, 4.0, ScheduleSettings())
    fixed = simulate([30.0] * 50, 4.0, ScheduleSettings(fixed_interval_s=5.0))
    assert adaptive[0] == fixed[0]
    assert adaptive[1] <= fixed[1] * 1.01


