"""Restarts with a state file: nothing repeated, nothing lost, gaps where the window lost lines."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from harness import Harness, simulated

from follower.core.events import GapEvent, LogEvent
from follower.engine import checkpoint
from follower.simulator.world import SimSettings
from follower.testing import MemorySink

WORLD = SimSettings(pipelines=5, pods=2, rate=3.0, window=50, line_style="unique", seed=21)


def lines_by_pod(sink: MemorySink) -> dict[tuple[str, str], list[str]]:
    emitted: dict[tuple[str, str], list[str]] = {}
    for event in sink.events:
        if isinstance(event, LogEvent):
            emitted.setdefault((event.pipeline_id, event.pod), []).append(event.message)
    return emitted


def assert_exactly_observed(sim: Harness, sink: MemorySink) -> None:
    emitted = lines_by_pod(sink)
    for pipeline_id in sim.world.pipeline_ids:
        for pod in sim.recorder.observed_pods(pipeline_id):
            assert emitted[pipeline_id, pod] == sim.recorder.observed(pipeline_id, pod)


async def test_clean_restart_repeats_and_loses_nothing(tmp_path: Path) -> None:
    """Stop, 5 s down (inside the window), start: every observable line exactly once, no gap."""
    state = tmp_path / "state.json"
    sink = MemorySink()
    async with simulated(WORLD, world_age_s=5.0) as sim:
        config = sim.config(state_file=state)
        await sim.follow(config, sink, steps=10)
        sim.clock.advance(5.0)
        await sim.follow(config, sink, steps=10)
        assert_exactly_observed(sim, sink)
    assert not [e for e in sink.events if isinstance(e, GapEvent)]
    seqs = Counter((e.pipeline_id, e.pod, e.seq) for e in sink.events if isinstance(e, LogEvent))
    assert max(seqs.values()) == 1  # sequence numbers carry on across the restart


async def test_long_downtime_shows_as_gap(tmp_path: Path) -> None:
    """Down longer than the window holds: the first poll after the restart flags a gap per pod."""
    state = tmp_path / "state.json"
    sink = MemorySink()
    async with simulated(WORLD) as sim:
        config = sim.config(state_file=state)
        await sim.follow(config, sink, steps=5)
        sim.clock.advance(60.0)  # 180 lines per pod against a 50-line window
        second = MemorySink()
        await sim.follow(config, second, steps=3)
    gaps = [e for e in second.events if isinstance(e, GapEvent)]
    assert len(gaps) == 5 * 2
    assert {g.reason for g in gaps} == {"no_overlap"}
    last_seq = {(e.pipeline_id, e.pod): e.seq for e in sink.events if isinstance(e, LogEvent)}
    assert all(g.after_seq == last_seq[g.pipeline_id, g.pod] for g in gaps)


async def test_reset_state_starts_every_pod_with_a_gap(tmp_path: Path) -> None:
    """--reset-state ignores the saved state and marks each pod's first tail with a gap."""
    state = tmp_path / "state.json"
    async with simulated(WORLD, world_age_s=5.0) as sim:
        config = sim.config(state_file=state)
        await sim.follow(config, MemorySink(), steps=3)
        second = MemorySink()
        await sim.follow(config, second, steps=1, reset_state=True)
    reasons = Counter(e.reason for e in second.events if isinstance(e, GapEvent))
    assert reasons == {"state_reset": 10}


async def test_state_of_pipelines_no_longer_followed_is_dropped(tmp_path: Path) -> None:
    """After a restart with fewer pipelines, the saved state holds only the followed ones."""
    state = tmp_path / "state.json"
    async with simulated(WORLD) as sim:
        await sim.follow(sim.config(state_file=state), MemorySink(), steps=2)
        kept = tuple(sim.world.pipeline_ids[:2])
        await sim.follow(sim.config(state_file=state, pipelines=kept), MemorySink(), steps=2)
    saved = checkpoint.load(state)
    assert saved is not None
    assert set(saved) == set(kept)
    assert all(len(pipeline.pods) == 2 for pipeline in saved.values())
