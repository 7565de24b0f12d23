"""Discovery and sharding end to end: every visible pipeline followed, by exactly one shard."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness import simulated
from test_runner import A, Answer, ScriptedSource, drive, logs

from follower.core.events import LogEvent, PipelineAddedEvent, PipelineRemovedEvent
from follower.core.model import LogsSnapshot, PipelineInfo, PipelinePage
from follower.core.sharding import ShardSettings
from follower.core.tail_errors import TailErrorMatcher
from follower.engine.journal import Journal, read
from follower.engine.runner import Runner
from follower.engine.settings import DiscoverySettings, RunSettings
from follower.engine.sources import Source, SourceSettings
from follower.simulator.app import CONTROL
from follower.simulator.world import SimSettings
from follower.testing import FakeClock, MemorySink

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


B = "pipe_b"
C = "pipe_c"


@dataclass
class ListedSource(ScriptedSource):
    """Also answers the list endpoint: each listing (a first page) takes the next of
    `listings` (the last for ever), one page, `has_more` false."""

    listings: list[list[str]] = field(default_factory=list)
    current: list[str] = field(default_factory=list)

    async def list_page(self, page_number: int, page_size: int) -> PipelinePage:
        if page_number == 1:
            self.current = self.listings.pop(0) if len(self.listings) > 1 else self.listings[0]
        items = tuple(PipelineInfo(p, p, None, "running") for p in self.current)
        return PipelinePage(items if page_number == 1 else (), False, None)


def growing(clock: FakeClock, pipeline_id: str) -> Callable[[], LogsSnapshot]:
    """A pod that writes a line a second: its tail is every line so far."""
    return lambda: logs(pipeline_id, "".join(
        f"{pipeline_id}-{n}\n" for n in range(int(clock.monotonic()) + 1)
    ))


async def discovered(
    listings: list[list[str]], seconds: int, journal: Journal | None = None
) -> MemorySink:
    clock = FakeClock(start=0.0)
    script: dict[str, list[Answer]] = {p: [growing(clock, p)] for p in (A, B, C)}
    source = ListedSource(clock, script, listings=listings)
    discovery = DiscoverySettings(enabled=True, interval_s=5.0)
    sink = MemorySink()
    runner = Runner(
        sources=[Source(source, SourceSettings(discovery=discovery))], sink=sink, clock=clock,
        settings=RunSettings(interval_s=1.0), matcher=TailErrorMatcher(), journal=journal,
    )
    await drive(runner, clock, [1.0] * seconds)
    return sink


async def test_a_pipeline_missing_from_one_listing_is_not_dropped() -> None:
    """An API that leaves a pipeline out of one listing (or answers one empty listing): a
    hiccup, not a deletion; the pipeline is polled on, with no pipeline_removed."""
    sink = await discovered([[A, B], [A], [A, B], [], [A, B]], seconds=22)
    assert not [e for e in sink.events if isinstance(e, PipelineRemovedEvent)]
    assert [e.pipeline_id for e in sink.events if isinstance(e, PipelineAddedEvent)] == [A, B]


async def test_a_pipeline_dropped_and_listed_again_goes_on_where_it_stopped() -> None:
    """Missing from two listings in a row, a pipeline is dropped; listed again, it goes on in
    the same epoch from the line after the last it wrote: no line written twice (before, its
    whole tail came again under new ids)."""
    sink = await discovered([[A, B], [A], [A], [A, B]], seconds=22)
    removed = [e.pipeline_id for e in sink.events if isinstance(e, PipelineRemovedEvent)]
    assert removed == [B]
    lines = [e for e in sink.events if isinstance(e, LogEvent) and e.pipeline_id == B]
    messages = [e.message for e in lines]
    assert len(messages) == len(set(messages))
    assert messages == sorted(messages, key=lambda m: int(m.split("-")[-1]))
    assert [e.seq for e in lines] == list(range(1, len(lines) + 1))
    assert len({e.epoch for e in lines}) == 1


async def test_a_pipeline_listed_again_is_journaled_as_no_checkpoint_holds_it(
    tmp_path: Path,
) -> None:
    """The dropped pipeline's state left the checkpoints: taken up again, its pods are recorded
    in the journal (numbering on from the seq it stopped at), so a crash before the next
    checkpoint cannot number its next lines in a new epoch."""
    path = tmp_path / "state.json.journal"
    sink = await discovered([[A, B], [A], [A], [A, B]], seconds=22, journal=Journal(path))
    dropped_at = next(i for i, e in enumerate(sink.events) if isinstance(e, PipelineRemovedEvent))
    last = max(e.seq for e in sink.events[:dropped_at]
               if isinstance(e, LogEvent) and e.pipeline_id == B)
    records = [(state.seq, state.replay_from) for _, pipeline_id, _, state in read(path)[1]
               if pipeline_id == B]
    assert records[0][1] == 1 and records[-1] == (last, last + 1)
