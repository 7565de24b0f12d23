"""Discovery and sharding end to end: every visible pipeline followed, by exactly one shard."""

from __future__ import annotations

from harness import simulated

from follower.core.events import LogEvent, PipelineAddedEvent, PipelineRemovedEvent
from follower.core.sharding import ShardSettings
from follower.engine.settings import DiscoverySettings
from follower.simulator.app import CONTROL
from follower.simulator.world import SimSettings
from follower.testing import MemorySink

WORLD = SimSettings(pipelines=12, pods=1, rate=1.0, window=100, line_style="unique", seed=6)


async def test_discovery_follows_every_pipeline_and_drops_deleted_ones() -> None:
    """No pipeline listed: all are discovered through the paginated list; a deleted one is
    dropped at the next listing and its state freed."""
    sink = MemorySink()
    async with simulated(WORLD, world_age_s=5.0) as sim:
        gone = sim.world.pipeline_ids[3]

        def delete(step: int) -> None:
            if step == 4:
                sim.app[CONTROL].delete_pipeline(gone)

        config = sim.config(pipelines=(), discovery=DiscoverySettings(enabled=True, interval_s=5.0),
                            interval_s=1.0)
        await sim.follow(config, sink, steps=12, on_step=delete)
        listed = sim.recorder.by_endpoint["list", "ok"]
    added = [e.pipeline_id for e in sink.events if isinstance(e, PipelineAddedEvent)]
    assert sorted(added) == sorted(sim.world.pipeline_ids)
    removed = [
        (e.pipeline_id, e.reason) for e in sink.events if isinstance(e, PipelineRemovedEvent)
    ]
    assert len(removed) == 1 and removed[0][0] == gone
    followed = {e.pipeline_id for e in sink.events if isinstance(e, LogEvent)}
    assert followed == set(sim.world.pipeline_ids)
    assert listed >= 2  # re-listed on the interval


async def test_three_shards_split_the_pipelines_without_overlap() -> None:
    """Three followers with --shard-count 3 follow every pipeline exactly once between them."""
    owners: dict[str, list[int]] = {}
    async with simulated(WORLD, world_age_s=5.0) as sim:
        for index in range(3):
            sink = MemorySink()
            config = sim.config(shard=ShardSettings(index, 3))
            await sim.follow(config, sink, steps=2)
            for pipeline_id in {e.pipeline_id for e in sink.events if isinstance(e, LogEvent)}:
                owners.setdefault(pipeline_id, []).append(index)
    assert sorted(owners) == sorted(sim.world.pipeline_ids)
    assert all(len(shards) == 1 for shards in owners.values())
    assert {shards[0] for shards in owners.values()} == {0, 1, 2}
