"""The ranking (follower/core/ranking.py) chooses exactly what `most_at_risk` chooses over the same
due pipelines, and tells the same wait, whatever the plans, the sources and the changes."""

from __future__ import annotations

import math
from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from follower.core import kinetic, pool
from follower.core.kinetic import RiskTournament
from follower.core.ranking import Ranking
from follower.core.schedule import PipelinePlan, most_at_risk

SOURCES = ("a", "b", "c")
IDS = tuple(f"p{i:02d}" for i in range(10))
GRID = (0.0, 0.5, 1.0, 2.5, 10.0, 30.0, 59.5, 60.0, 61.0, 100.0, 1e-300, 5e-324)
times = st.one_of(st.sampled_from(GRID), st.sampled_from(GRID), st.floats(-10.0, 300.0))
Model = dict[str, tuple[PipelinePlan, str, float]]


@st.composite
def plans(draw: st.DrawFn) -> PipelinePlan:
    """Every group of `_urgency`: never polled (overdue or not), busy or quiet first looks,
    measured (idle, rising, overflowing), with ties in every field."""
    since = draw(st.none() | times)
    kind = draw(st.sampled_from(("new", "probe", "second", "measured", "measured")))
    if kind == "new":
        return PipelinePlan(waiting_since=since)
    last = draw(times)
    window = draw(st.sampled_from((None, 0, 1, 100, 200)) | st.integers(1, 1000))
    if kind in ("probe", "second"):
        return PipelinePlan(last_poll=last, window=window, polls=1, looks_busy=kind == "probe",
                            waiting_since=since)
    rate = draw(st.sampled_from((0.0, 0.5, 1.0, 10.0, 1e-9)) | st.floats(0.0, 1e4))
    return PipelinePlan(last_poll=last, window=window, rate_lps=rate, samples=1, polls=2,
                        waiting_since=since)


def reference(
    model: Model, now: float, ready: Mapping[str, float | None], ceiling_s: float
) -> tuple[str | None, float | None]:
    """What the dispatcher's scan of every pipeline chose before the ranking."""
    due: list[tuple[str, PipelinePlan]] = []
    later: list[float] = []
    for pipeline_id, (plan, source, due_at) in model.items():
        source_at = ready[source]
        if source_at is None:
            continue
        at = due_at if due_at > source_at else source_at
        if at <= now:
            due.append((pipeline_id, plan))
        else:
            later.append(at)
    best = most_at_risk(due, now, ceiling_s=ceiling_s)
    return (best, None) if best is not None else (None, min(later, default=None))


step = st.one_of(
    st.tuples(st.just("put"), st.sampled_from(IDS), plans(), st.sampled_from(SOURCES), times),
    st.tuples(st.just("replan"), st.sampled_from(IDS), times),
    st.tuples(st.just("take")),
    st.tuples(st.just("take")),
    st.tuples(st.just("drop"), st.sampled_from(IDS)),
    st.tuples(st.just("wait"), st.sampled_from((0.0, 0.5, 1.0, 5.0, 60.0)) | st.floats(0, 90)),
    st.tuples(st.just("ceiling"), st.sampled_from((1.0, 60.0, math.inf))),
)
readiness = st.lists(st.none() | st.floats(-5.0, 5.0), min_size=3, max_size=3)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(step, readiness), max_size=60), st.sampled_from((1.0, 60.0, math.inf)))
def test_the_pick_and_the_wait_are_those_of_a_scan_of_every_pipeline(
    steps: list[tuple[tuple[object, ...], list[float | None]]], ceiling_s: float
) -> None:
    """Random plans, sources, due times and readiness; puts, replans, takes, drops, waits and
    ceiling changes: after each, the ranking's answer equals the reference scan's."""
    check_against_the_scan(steps, ceiling_s)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(step, readiness), max_size=60), st.sampled_from((1.0, 60.0, math.inf)))
def test_dropping_stale_heap_entries_at_every_change_changes_no_answer(
    steps: list[tuple[tuple[object, ...], list[float | None]]], ceiling_s: float
) -> None:
    """The same, with the stale entries of every heap dropped at every chance (in production only
    once they outnumber the members): the liveness checks keep exactly the live entries."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pool, "STALE_ENTRIES", 0)
        patch.setattr(pool, "STALE_SLACK", 0)
        patch.setattr(kinetic, "STALE_CERTIFICATES", 0)
        patch.setattr(kinetic, "CERTIFICATE_SLACK", 0)
        check_against_the_scan(steps, ceiling_s)


def check_against_the_scan(
    steps: list[tuple[tuple[object, ...], list[float | None]]], ceiling_s: float
) -> None:
    ranking: Ranking[str] = Ranking(ceiling_s)
    model: Model = {}
    now = 0.0
    for action, offsets in steps:
        ready = {s: None if o is None else now + o for s, o in zip(SOURCES, offsets, strict=True)}
        match action:
            case ("put", str(pid), PipelinePlan() as plan, str(source), float(due_at)):
                model[pid] = (plan, source, due_at)
                ranking.put(pid, plan, source, due_at)
            case ("replan", str(pid), float(due_at)) if pid in model:
                plan, source, _ = model[pid]
                model[pid] = (plan, source, due_at)
                ranking.put(pid, plan, source, due_at)
            case ("take",):
                chosen, _ = ranking.pick(now, ready)
                if chosen is not None:
                    del model[chosen]
                    ranking.remove(chosen)
            case ("drop", str(pid)):
                model.pop(pid, None)
                ranking.remove(pid)
            case ("wait", float(seconds)):
                now += seconds
            case ("ceiling", float(ceiling)):
                ceiling_s = ceiling
                ranking.reconfigure(ceiling)
        assert ranking.pick(now, ready) == reference(model, now, ready, ceiling_s)
        assert len(ranking) == len(model)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from((0.5, 1.0, 2.0, 4.0)) | st.floats(1e-3, 1e3),
                       st.sampled_from((0.0, 1.0, 2.0, 25.0, 40.0)) | st.floats(0, 50),
                       st.sampled_from((1, 2, 200))), min_size=1, max_size=40),
    st.lists(st.sampled_from((0.0, 1e-9, 0.25, 1.0)) | st.floats(0, 20), max_size=40),
)
def test_the_tournament_follows_crossing_risks_exactly(
    lines: list[tuple[float, float, int]], steps: list[float]
) -> None:
    """Many crossings and near ties: the tournament's best is always the reference's."""
    tournament = RiskTournament()
    now = 50.0
    plans = {}
    slots = {}
    for index, (rate, last, window) in enumerate(lines):
        pid = f"p{index:02d}"
        plans[pid] = PipelinePlan(last_poll=last, rate_lps=rate, window=window, samples=1)
        slots[pid] = tournament.add(pid, rate, last, window, now)
    for index, seconds in enumerate(steps):
        now += seconds
        expected = most_at_risk(plans.items(), now)
        assert tournament.best(now) == expected
        if index % 3 == 2 and expected is not None:
            tournament.remove(slots.pop(expected))
            del plans[expected]
        assert len(tournament) == len(plans)


def test_a_never_polled_pipeline_past_the_ceiling_goes_first() -> None:
    """The ceiling bounds a first poll's wait even behind an overflowing pipeline."""
    ranking: Ranking[str] = Ranking(60.0)
    busy = PipelinePlan(last_poll=0.0, rate_lps=100.0, window=100, samples=1, polls=2)
    ranking.put("busy", busy, "a", 1.0)
    ranking.put("new", PipelinePlan(waiting_since=0.0), "a", -math.inf)
    assert ranking.pick(10.0, {"a": 10.0}) == ("busy", None)
    assert ranking.pick(60.0, {"a": 60.0}) == ("new", None)


def test_the_ceiling_is_reached_at_exactly_its_age() -> None:
    """A pipeline unpolled for exactly `ceiling_s` is OVERDUE, as in the reference, whether it
    was due before (and moves group) or falls due then."""
    ranking: Ranking[str] = Ranking(60.0)
    busy = PipelinePlan(last_poll=50.0, rate_lps=100.0, window=100, samples=1, polls=2)
    quiet = PipelinePlan(last_poll=0.0, rate_lps=0.1, window=100, samples=1, polls=2)
    late = PipelinePlan(last_poll=0.0, looks_busy=False, window=5, polls=1)
    ranking.put("busy", busy, "a", 50.0)
    ranking.put("quiet", quiet, "a", 10.0)
    assert ranking.pick(59.0, {"a": 0.0}) == ("busy", None)
    assert ranking.pick(60.0, {"a": 0.0}) == ("quiet", None)
    ranking.remove("quiet")
    ranking.put("late", late, "a", 60.0)
    assert ranking.pick(60.0, {"a": 0.0}) == ("late", None)


def test_equal_rounded_waits_go_to_the_smallest_id() -> None:
    """Two first polls overdue whose waits began apart but round to the same wait: the smallest
    id goes first, as in the reference (which sees only the rounded wait)."""
    ranking: Ranking[str] = Ranking(60.0)
    ranking.put("p2", PipelinePlan(waiting_since=0.0), "a", -math.inf)
    ranking.put("p1", PipelinePlan(waiting_since=1e-300), "a", -math.inf)
    assert ranking.pick(100.0, {"a": 0.0}) == ("p1", None)


def test_risks_tied_now_are_compared_again_later() -> None:
    """Equal risks now, the tie to the older poll; the other rises faster and wins later."""
    tournament = RiskTournament()
    tournament.add("slow", 1.0, 0.0, 1, 50.0)
    tournament.add("fast", 2.0, 25.0, 1, 50.0)
    assert tournament.best(50.0) == "slow"
    assert tournament.best(50.5) == "fast"


def test_nothing_due_tells_the_earliest_time_one_could_go() -> None:
    """The wait is the earliest due time, not before the source may send."""
    ranking: Ranking[str] = Ranking(60.0)
    plan = PipelinePlan(last_poll=0.0, rate_lps=1.0, window=100, samples=1, polls=2)
    ranking.put("p", plan, "a", 50.0)
    assert ranking.pick(10.0, {"a": 10.0}) == (None, 50.0)
    assert ranking.pick(10.0, {"a": 70.0}) == (None, 70.0)
    assert ranking.pick(10.0, {"a": None}) == (None, None)


def test_the_ceiling_must_be_positive() -> None:
    """A ceiling of 0 would make every pipeline overdue at once: refused."""
    with pytest.raises(ValueError, match="ceiling_s"):
        Ranking(0.0)
    with pytest.raises(ValueError, match="ceiling_s"):
        Ranking[str](60.0).reconfigure(-1.0)


@settings(max_examples=500, deadline=None)
@given(
    st.tuples(st.floats(1e-3, 1e4), st.floats(0.0, 50.0), st.integers(1, 1000)),
    st.tuples(st.floats(1e-3, 1e4), st.floats(0.0, 50.0), st.integers(1, 1000)),
    st.floats(50.0, 100.0),
)
def test_a_certificate_never_outlives_its_winner(
    first: tuple[float, float, int], second: tuple[float, float, int], now: float
) -> None:
    """Up to the time the root's certificate names, the winner is the reference's: a certificate
    promises the whole time until the margin-widened lines meet, never beyond the real crossing
    (checked at the certificate, at the float before it and halfway to it)."""
    tournament = RiskTournament()
    plans = {}
    for pid, (rate, last, window) in (("p0", first), ("p1", second)):
        plans[pid] = PipelinePlan(last_poll=last, rate_lps=rate, window=window, samples=1)
        tournament.add(pid, rate, last, window, now)
    winner = tournament.best(now)
    assert winner == most_at_risk(plans.items(), now)
    until = tournament._until[1]
    if math.isinf(until):
        return
    for at in (until, math.nextafter(until, -math.inf), (now + until) / 2):
        if at >= now:
            assert most_at_risk(plans.items(), at) == winner


def test_a_crossing_is_looked_at_a_few_times_not_once_per_halving() -> None:
    """Two risks that cross in 10 s, looked at every 10 ms: the pair is compared a handful of
    times, not again at each halving of the time left (about log2(1,000) times)."""
    tournament = RiskTournament()
    plans = {
        "old": PipelinePlan(last_poll=0.0, rate_lps=1.0, window=100, samples=1),
        "fast": PipelinePlan(last_poll=10.0, rate_lps=3.0, window=100, samples=1),
    }  # risks now / 100 and 3 (now - 10) / 100: they cross at 15
    for pid, plan in plans.items():
        assert plan.last_poll is not None and plan.window is not None
        tournament.add(pid, plan.rate_lps, plan.last_poll, plan.window, 10.0)
    computed = 0
    recompute = tournament._recompute

    def counting(node: int) -> bool:
        nonlocal computed
        computed += 1
        return recompute(node)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tournament, "_recompute", counting)
        for step in range(1, 1001):
            now = 10.0 + step * 0.01
            assert tournament.best(now) == most_at_risk(plans.items(), now)
    assert most_at_risk(plans.items(), 20.0) == "fast"
    assert computed <= 4
