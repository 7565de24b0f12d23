"""The real follower against the simulator on loopback, checked line by line against the truth."""

from __future__ import annotations

from collections import defaultdict

from harness import simulated

from follower.config.tree import PodSettings
from follower.core.events import Event, GapEvent, LogEvent, TailErrorEvent
from follower.core.tracker import Since
from follower.engine.poller import PollStats
from follower.simulator.recorder import Recorder
from follower.simulator.world import SimSettings, World
from follower.testing import MemorySink


async def run_follower(
    settings: SimSettings,
    *,
    interval_s: float,
    steps: int,
    since: Since = "start",
    world_age_s: float = 0.0,
    pod_grace_s: float = 60.0,
) -> tuple[World, Recorder, MemorySink, PollStats, float]:
    """Serve `settings`, follow every pipeline for `steps` intervals of fake time, then stop."""
    sink = MemorySink()
    async with simulated(settings, world_age_s=world_age_s) as sim:
        config = sim.config(
            interval_s=interval_s, since=since, pods=PodSettings(grace_s=pod_grace_s)
        )
        stats = await sim.follow(config, sink, steps=steps)
        return sim.world, sim.recorder, sink, stats, sim.clock.monotonic()


def per_pod(events: list[Event]) -> dict[tuple[str, str], list[Event]]:
    grouped: dict[tuple[str, str], list[Event]] = defaultdict(list)
    for event in events:
        pod = getattr(event, "pod", None)
        if pod is not None:
            grouped[event.pipeline_id, pod].append(event)
    return grouped


def check_against_truth(world: World, recorder: Recorder, sink: MemorySink, until: float) -> int:
    """Every observable line exactly once and in order; every hole in the truth behind a gap.

    Lines after a pod's last observed line were not in any tail yet (or scrolled out of a replaced
    pod's last tail) and no client could have seen them; `observed()` already excludes them.

    Returns the number of lines checked.
    """
    checked = 0
    grouped = per_pod(sink.events)
    for pipeline_id in world.pipeline_ids:
        for pod in recorder.observed_pods(pipeline_id):
            events = grouped[pipeline_id, pod]
            emitted = [e.message for e in events if isinstance(e, LogEvent)]
            assert emitted == recorder.observed(pipeline_id, pod), (pipeline_id, pod)
            seqs = [e.seq for e in events if isinstance(e, LogEvent)]
            assert seqs == list(range(1, len(seqs) + 1))
            truth = world.lines(pipeline_id, pod, until)
            position = {line: index for index, line in enumerate(truth)}
            assert len(position) == len(truth), "the e2e world must write unique lines"
            # Before a pod's first tail, and after a gap, the next line may be anywhere later: an
            # incarnation that lived and died between two polls left no tail for anyone to see.
            expected_next: int | None = None
            last = -1
            for event in events:
                if isinstance(event, GapEvent):
                    expected_next = None
                elif isinstance(event, LogEvent):
                    at = position[event.message]
                    assert at == expected_next or (expected_next is None and at > last), (
                        f"{pod}: line {at} follows line {last} with no gap between"
                    )
                    expected_next, last = at + 1, at
            checked += len(emitted)
    return checked


async def test_twenty_pipelines_two_pods_with_restarts_and_tail_errors() -> None:
    """20x2 pods, restarts, tail errors: every observable line once, in order, gaps flagged."""
    settings = SimSettings(
        pipelines=20,
        pods=2,
        rate=4.0,
        window=50,
        restart_every_s=25.0,
        tail_error_s=3.0,
        line_style="unique",
        seed=11,
    )
    world, recorder, sink, stats, until = await run_follower(settings, interval_s=1.0, steps=90)
    checked = check_against_truth(world, recorder, sink, until)
    assert checked > 20 * 2 * 200
    tail_error_texts = {e.error for e in sink.events if isinstance(e, TailErrorEvent)}
    assert tail_error_texts, "the tail-error phases were never seen"
    messages = {e.message for e in sink.events if isinstance(e, LogEvent)}
    assert not any(text in message for text in tail_error_texts for message in messages)
    restarts = sum(
        len(world.restarts(pipeline_id, replica, until))
        for pipeline_id in world.pipeline_ids
        for replica in range(settings.pods)
    )
    gaps = [e for e in sink.events if isinstance(e, GapEvent)]
    # Every hole is behind a gap (checked above). A restart is one gap when both incarnations
    # showed lines; one before a pod's first lines, one still starting at the end, or two
    # between two looks (while the pipeline waits for RUNNING on the status endpoint) make none
    # or one for two.
    assert 0.75 * restarts <= len(gaps) <= restarts
    assert stats.polls_failed == 0


async def test_replaced_pods_are_added_and_removed() -> None:
    """Pods replaced under new names: pod_added/pod_removed, each name's lines once and in order."""
    settings = SimSettings(
        pipelines=4,
        pods=2,
        rate=3.0,
        window=40,
        restart_every_s=15.0,
        replace_on_restart=True,
        tail_error_s=2.0,
        line_style="unique",
        seed=3,
    )
    world, recorder, sink, _, until = await run_follower(
        settings, interval_s=1.0, steps=60, pod_grace_s=5.0
    )
    check_against_truth(world, recorder, sink, until)
    added = [e for e in sink.events if e.kind == "pod_added"]
    removed = [e for e in sink.events if e.kind == "pod_removed"]
    assert len(removed) > 0
    assert len(added) == sum(len(world.pod_names(p, until)) for p in world.pipeline_ids)


async def test_since_now_skips_the_first_tails() -> None:
    """--since now: nothing that was in the first tails is emitted; everything after is."""
    settings = SimSettings(pipelines=3, pods=1, rate=5.0, window=100, line_style="unique", seed=1)
    world, recorder, sink, _, _ = await run_follower(
        settings, interval_s=1.0, steps=5, since="now", world_age_s=10.0
    )
    for pipeline_id in world.pipeline_ids:
        for pod in recorder.observed_pods(pipeline_id):
            emitted = [
                e.message for e in sink.events
                if isinstance(e, LogEvent) and e.pipeline_id == pipeline_id and e.pod == pod
            ]
            observed = recorder.observed(pipeline_id, pod)
            first_tail = len(observed) - len(emitted)
            assert first_tail >= 45  # ten seconds at five lines a second were written before
            assert len(emitted) >= 20
            assert emitted == observed[first_tail:]
