"""The follower keeps running through every fault the simulator throws, and says what happened.

Each test runs the real follower against the simulator under a fake clock with one kind of fault
switched on, then checks that every line some successful poll showed was emitted exactly once, in
order, and that the fault surfaced as the documented event, never as a traceback or a bad line.
"""

from __future__ import annotations

from collections import Counter

import pytest
from harness import Harness, simulated

from follower.api.settings import HttpSettings
from follower.core.backoff import BackoffPolicy
from follower.core.events import ApiErrorEvent, GapEvent, LogEvent
from follower.engine.poller import PollStats
from follower.simulator.app import CONTROL
from follower.simulator.faults import FaultSettings
from follower.simulator.world import SimSettings
from follower.testing import MemorySink

WORLD = SimSettings(pipelines=4, pods=2, rate=2.0, window=100, line_style="unique", seed=8)


def assert_observed_exactly_once(sim: Harness, sink: MemorySink) -> int:
    emitted: dict[tuple[str, str], list[str]] = {}
    for event in sink.events:
        if isinstance(event, LogEvent):
            emitted.setdefault((event.pipeline_id, event.pod), []).append(event.message)
    total = 0
    for pipeline_id in sim.world.pipeline_ids:
        for pod in sim.recorder.observed_pods(pipeline_id):
            observed = sim.recorder.observed(pipeline_id, pod)
            assert emitted.get((pipeline_id, pod), []) == observed
            total += len(observed)
    truth = {line for p in sim.world.pipeline_ids
             for pod in sim.world.pod_names(p, sim.clock.monotonic())
             for line in sim.world.lines(p, pod, sim.clock.monotonic())}
    assert all(e.message in truth for e in sink.events if isinstance(e, LogEvent))
    return total


def error_kinds(sink: MemorySink) -> Counter[str]:
    return Counter(e.error for e in sink.events if isinstance(e, ApiErrorEvent))


async def run_with(
    faults: FaultSettings,
    steps: int = 40,
    world_age_s: float = 10.0,
    exact: bool = True,
    **config: object,
) -> tuple[Harness, MemorySink, PollStats]:
    sink = MemorySink()
    async with simulated(WORLD, world_age_s=world_age_s, faults=faults) as sim:
        stats = await sim.follow(sim.config(**config), sink, steps=steps)
        if exact:
            assert_observed_exactly_once(sim, sink)
        return sim, sink, stats


@pytest.mark.parametrize(
    ("faults", "kind"),
    [
        (FaultSettings(rate_429=0.3, retry_after_s=2.0, seed=1), "throttled"),
        (FaultSettings(rate_429=0.3, retry_after_s=None, seed=2), "throttled"),
        (FaultSettings(rate_5xx=0.3, seed=3), "server_error"),
        (FaultSettings(rate_malformed=0.3, seed=4), "malformed_response"),
        (FaultSettings(rate_envelope_error=0.3, seed=5), "envelope_error"),
    ],
    ids=["429-retry-after", "429-bare", "5xx", "malformed", "envelope-error"],
)
async def test_transient_faults_lose_and_repeat_nothing(faults: FaultSettings, kind: str) -> None:
    """Under 30% failing answers every observable line is emitted once, and errors are events."""
    _, sink, stats = await run_with(faults)
    kinds = error_kinds(sink)
    assert set(kinds) == {kind}
    assert kinds[kind] == stats.polls_failed > 0
    assert stats.polls_ok > 0


async def test_every_fault_at_once() -> None:
    """All transient faults together: still exact, and each kind is reported."""
    faults = FaultSettings(
        rate_429=0.1, rate_5xx=0.1, rate_malformed=0.1, rate_envelope_error=0.1, seed=9
    )
    _, sink, _ = await run_with(faults, steps=60)
    assert set(error_kinds(sink)) == {
        "throttled", "server_error", "malformed_response", "envelope_error"
    }


async def test_rate_limited_server_is_obeyed() -> None:
    """A server-side rate limit below the poll rate yields throttled events, never a crash."""
    _, sink, stats = await run_with(FaultSettings(rate_limit_rps=2.0), steps=20)
    assert error_kinds(sink)["throttled"] > 0
    assert stats.polls_ok > 0


async def test_slow_answers_are_waited_for() -> None:
    """Answers slower than the poll interval delay polls but lose nothing."""
    _, sink, _ = await run_with(FaultSettings(rate_slow=0.3, slow_s=3.0, seed=6))
    assert not error_kinds(sink)


async def test_bodies_over_the_cap_are_errors_not_lines() -> None:
    """A body larger than max_response_bytes is a malformed_response event, never partial lines."""
    _, sink, stats = await run_with(
        FaultSettings(), steps=3, world_age_s=60.0, exact=False,
        http=HttpSettings(max_response_bytes=2048),
    )
    assert error_kinds(sink) == Counter({"malformed_response": stats.polls_failed})
    assert not [e for e in sink.events if isinstance(e, LogEvent)]
    assert all("exceeds 2048 bytes" in e.message
               for e in sink.events if isinstance(e, ApiErrorEvent))


async def test_pipeline_deleted_mid_run_stops_only_that_pipeline() -> None:
    """A pipeline that starts answering 404 is looked at again, then dropped; the others go on."""
    sink = MemorySink()
    async with simulated(WORLD, world_age_s=10.0) as sim:
        gone = sim.world.pipeline_ids[0]

        def delete(step: int) -> None:
            if step == 5:
                sim.app[CONTROL].delete_pipeline(gone)

        stats = await sim.follow(sim.config(), sink, steps=15, on_step=delete)
        assert_observed_exactly_once(sim, sink)
    not_found = [e for e in sink.events if isinstance(e, ApiErrorEvent)]
    assert [(e.pipeline_id, e.error, e.retry_in_s) for e in not_found] == [
        (gone, "not_found", 2.0), (gone, "not_found", None)
    ]
    assert stats.pipelines_gone == [gone]
    late = [e for e in sink.events if isinstance(e, LogEvent) and e.pipeline_id != gone]
    assert late and late[-1].ts > not_found[0].ts


async def test_key_revoked_and_restored() -> None:
    """401 while the key is revoked; polling resumes when it works again, and nothing repeats."""
    sink = MemorySink()
    async with simulated(WORLD, world_age_s=10.0) as sim:
        control = sim.app[CONTROL]

        def flip(step: int) -> None:
            if step == 3:
                control.revoke_key()
            elif step == 8:
                control.restore_key()

        config = sim.config(backoff=BackoffPolicy(max_s=4.0))
        await sim.follow(config, sink, steps=30, on_step=flip)
        assert_observed_exactly_once(sim, sink)
    kinds = error_kinds(sink)
    assert set(kinds) == {"unauthorized"}
    last_error = max(e.ts for e in sink.events if isinstance(e, ApiErrorEvent))
    assert any(isinstance(e, LogEvent) and e.ts > last_error for e in sink.events)
    # 5-9 s of outage at 2 lines/s fits in a 100-line window: nothing was lost
    assert not [e for e in sink.events if isinstance(e, GapEvent)]
