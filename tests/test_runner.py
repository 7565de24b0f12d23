"""The poll loop under a fake clock: intervals, backoff, Retry-After, 404, shutdown, concurrency."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio
import pytest
from structlog.testing import capture_logs

from follower.core.backoff import BackoffPolicy
from follower.core.events import ApiErrorEvent, LogEvent, TailErrorEvent
from follower.core.model import LogsSnapshot, PipelinePage, PipelineStatus, PodTail
from follower.core.tail_errors import TailErrorMatcher
from follower.engine.checkpoint import Saved
from follower.engine.poller import PollStats
from follower.engine.runner import Runner
from follower.engine.settings import RunSettings
from follower.engine.sources import Source, SourceSettings
from follower.errors import (
    ApiError,
    AuthError,
    CheckpointError,
    NotFoundError,
    ServerError,
    ThrottledError,
)
from follower.testing import FakeClock, MemorySink, advance_to, first_of, settle

A = "pipe_a"
B = "pipe_b"
C = "pipe_c"
WAITING = 'container "worker" in pod "p1" is waiting to start: ContainerCreating'

Answer = LogsSnapshot | ApiError | Callable[[], LogsSnapshot]


def logs(pipeline: str, text: str, pod: str = "p1") -> LogsSnapshot:
    return LogsSnapshot(pipeline, None, (PodTail(pod, text),))


@dataclass
class ScriptedSource:
    """A TailSource that answers from a per-pipeline script and records when it was asked."""

    clock: FakeClock
    script: dict[str, list[Answer]]
    calls: dict[str, list[float]] = field(default_factory=dict)
    gate: anyio.Event | None = None
    in_flight: int = 0
    most_in_flight: int = 0
    phase: str = "RUNNING"
    status_calls: list[tuple[str, float]] = field(default_factory=list)

    async def logs(self, pipeline_id: str) -> LogsSnapshot:
        self.calls.setdefault(pipeline_id, []).append(self.clock.monotonic())
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.gate is not None:
                await self.gate.wait()
            answers = self.script[pipeline_id]
            answer = answers.pop(0) if len(answers) > 1 else answers[0]
        finally:
            self.in_flight -= 1
        if isinstance(answer, ApiError):
            raise answer
        return answer() if callable(answer) else answer

    async def status(self, pipeline_id: str) -> PipelineStatus:
        self.status_calls.append((pipeline_id, self.clock.monotonic()))
        return PipelineStatus(pipeline_id, None, self.phase, 1, 1)

    async def list_page(self, page_number: int, page_size: int) -> PipelinePage:
        raise NotImplementedError


def make_runner(
    source: ScriptedSource,
    sink: MemorySink,
    pipelines: tuple[str, ...] = (A,),
    **settings: object,
) -> Runner:
    base = {"interval_s": 5.0, "backoff": BackoffPolicy(initial_s=1.0, max_s=60.0)}
    base.update(settings)
    return Runner(
        sources=[Source(source, SourceSettings(pipelines=pipelines))],
        sink=sink,
        clock=source.clock,
        settings=RunSettings(**base),  # type: ignore[arg-type]
        matcher=TailErrorMatcher(),
        rng=random.Random(1),
    )


async def parked_with(runner: Runner, *, in_flight: int) -> None:
    """Wait until the dispatcher parks with `in_flight` requests outstanding."""
    while True:
        change = runner.change
        if runner.parked and runner.in_flight == in_flight:
            return
        await change.wait()


async def drive(runner: Runner, clock: FakeClock, steps: list[float]) -> PollStats:
    """Run the runner, letting fake time pass by each step (event by event), then stop it."""
    stop = anyio.Event()
    result: list[PollStats] = []
    finished = anyio.Event()

    async def run() -> None:
        result.append(await runner.run(stop))
        finished.set()

    async with anyio.create_task_group() as group:
        group.start_soon(run)
        for step in steps:
            await advance_to(runner, clock, clock.monotonic() + step)
        await settle(runner, clock)
        stop.set()
        await finished.wait()
    return result[0]


async def test_polls_on_the_interval_and_emits_new_lines() -> None:
    """Healthy polls happen every interval_s and emit only what is new."""
    clock = FakeClock(start=0.0)
    source = ScriptedSource(clock, {A: [logs(A, "a\n"), logs(A, "a\nb\n"), logs(A, "a\nb\n")]})
    sink = MemorySink()
    await drive(make_runner(source, sink), clock, [5.0, 5.0])
    assert source.calls[A] == [0.0, 5.0, 10.0]
    assert [e.message for e in sink.events if isinstance(e, LogEvent)] == ["a", "b"]


async def test_server_errors_back_off_then_recover() -> None:
    """5xx: api_error events, retries after a growing jittered delay, then a normal interval."""
    clock = FakeClock(start=0.0)
    error = ServerError("boom", status=503)
    source = ScriptedSource(clock, {A: [error, error, error, logs(A, "x\n")]})
    sink = MemorySink()
    with capture_logs() as logged:
        await drive(make_runner(source, sink), clock, [60.0, 60.0, 60.0])
    errors = [e for e in sink.events if isinstance(e, ApiErrorEvent)]
    assert [(e.error, e.status) for e in errors] == [("server_error", 503)] * 3
    assert all(e.retry_in_s is not None and 1.0 <= e.retry_in_s <= 60.0 for e in errors)
    assert [e.message for e in sink.events if isinstance(e, LogEvent)] == ["x"]
    names = [entry["event"] for entry in logged]
    assert names.count("poll_failing") == 1  # a transition, not a line per retry
    assert names.count("poll_recovered") == 1


async def test_retry_after_is_honoured() -> None:
    """429 with Retry-After: the next poll of that pipeline waits at least that long."""
    clock = FakeClock(start=0.0)
    source = ScriptedSource(
        clock, {A: [ThrottledError("slow down", status=429, retry_after_s=42.0), logs(A, "x\n")]}
    )
    sink = MemorySink()
    await drive(make_runner(source, sink), clock, [41.0, 2.0])
    first, second = source.calls[A]
    assert first == 0.0
    assert 42.0 <= second < 42.5  # the budget's pause, then its next token


async def test_not_found_stops_following_the_pipeline() -> None:
    """404 confirmed by a second look 2 s later: then an api_error without a retry, the pipeline
    is no longer polled, others go on."""
    clock = FakeClock(start=0.0)
    source = ScriptedSource(
        clock, {A: [NotFoundError("no such pipeline", status=404)], B: [logs(B, "b\n")]}
    )
    sink = MemorySink()
    stats = await drive(make_runner(source, sink, (A, B)), clock, [5.0, 5.0])
    assert source.calls[A] == [0.0, 2.0]
    assert len(source.calls[B]) == 3
    gone = [e for e in sink.events if isinstance(e, ApiErrorEvent)]
    assert [(e.pipeline_id, e.error, e.retry_in_s) for e in gone] == [
        (A, "not_found", 2.0), (A, "not_found", None)]
    assert stats.pipelines_gone == [A]


async def test_run_ends_when_every_pipeline_is_gone() -> None:
    """With every pipeline 404 (confirmed), run() returns by itself."""
    clock = FakeClock(start=0.0)
    source = ScriptedSource(clock, {A: [NotFoundError("gone", status=404)]})
    runner = make_runner(source, MemorySink())
    result: list[PollStats] = []
    finished = anyio.Event()

    async def run() -> None:
        result.append(await runner.run(anyio.Event()))
        finished.set()

    async with anyio.create_task_group() as group:
        group.start_soon(run)
        await first_of(lambda: advance_to(runner, clock, 10.0), finished.wait)
    assert finished.is_set() and result[0].pipelines_gone == [A]


async def test_tail_errors_back_off_and_are_reported() -> None:
    """Every pod in a tail error: tail_error events, growing delays, no log event, then lines."""
    clock = FakeClock(start=0.0)
    source = ScriptedSource(
        clock, {A: [logs(A, WAITING), logs(A, WAITING), logs(A, WAITING), logs(A, "up\n")]}
    )
    sink = MemorySink()
    await drive(make_runner(source, sink, interval_s=1.0), clock, [60.0, 60.0, 60.0])
    reported = [e for e in sink.events if isinstance(e, TailErrorEvent)]
    assert [e.error for e in reported] == [WAITING] * 3
    assert [pid for pid, _ in source.status_calls] == [A]  # then it waited for RUNNING
    assert [e.message for e in sink.events if isinstance(e, LogEvent)] == ["up"]
    assert all(WAITING not in e.message for e in sink.events if isinstance(e, LogEvent))


async def test_key_rejection_pauses_everything_but_one_probe() -> None:
    """401: one service_key_rejected diagnostic, then single probes until the key works again."""
    clock = FakeClock(start=0.0)
    denied = AuthError("invalid key", status=401)
    source = ScriptedSource(
        clock, {A: [denied, denied, denied, logs(A, "a\n")], B: [denied, logs(B, "b\n")]}
    )
    sink = MemorySink()
    with capture_logs() as logged:
        await drive(make_runner(source, sink, (A, B)), clock, [60.0] * 4)
    names = [entry["event"] for entry in logged]
    assert names.count("service_key_rejected") == 1
    assert names.count("service_key_accepted") == 1
    probes = sorted(t for calls in source.calls.values() for t in calls[:4])
    assert len([t for t in probes if 0.0 < t < probes[-1]]) >= 1
    assert {e.message for e in sink.events if isinstance(e, LogEvent)} == {"a", "b"}
    unauthorized = [e for e in sink.events if isinstance(e, ApiErrorEvent)]
    assert {e.error for e in unauthorized} == {"unauthorized"}


async def test_in_flight_requests_are_bounded() -> None:
    """No more than max_in_flight polls are outstanding at once."""
    clock = FakeClock(start=0.0)
    gate = anyio.Event()
    source = ScriptedSource(
        clock, {p: [logs(p, "x\n")] for p in (A, B, C)}, gate=gate
    )
    runner = make_runner(source, MemorySink(), (A, B, C), max_in_flight=2)
    stop = anyio.Event()
    async with anyio.create_task_group() as group:
        group.start_soon(runner.run, stop)
        await parked_with(runner, in_flight=2)  # the third waits for a slot
        assert source.in_flight == 2
        gate.set()
        await advance_to(runner, clock, 1.0)
        stop.set()
    assert source.most_in_flight == 2


async def test_a_worker_takes_the_next_due_pipeline_without_waking_the_dispatcher() -> None:
    """With one request in flight at a time and three pipelines due, each worker that finishes
    starts the next poll itself: the dispatcher is woken for none of them (it hands out only the
    first), and every pipeline is still polled once."""
    clock = FakeClock(start=0.0)
    source = ScriptedSource(clock, {p: [logs(p, "x\n")] for p in (A, B, C)})
    runner = make_runner(source, MemorySink(), (A, B, C), max_in_flight=1)
    parking = runner._parking  # counting its wake-ups is the point
    wakes: list[dict[str, list[float]]] = []
    wake = parking.wake

    def counted() -> None:
        wakes.append({p: list(c) for p, c in source.calls.items()})
        wake()

    parking.wake = counted  # type: ignore[method-assign]
    stop = anyio.Event()
    async with anyio.create_task_group() as group:
        group.start_soon(runner.run, stop)
        await parked_with(runner, in_flight=0)
        before_stop = list(wakes)
        stop.set()
    assert source.calls == {A: [0.0], B: [0.0], C: [0.0]}
    assert source.most_in_flight == 1
    # One wake-up: after the last poll, when no pipeline was left to take.
    assert before_stop == [{A: [0.0], B: [0.0], C: [0.0]}]


async def test_shutdown_lets_in_flight_polls_finish() -> None:
    """stop during a poll: no new poll starts, the in-flight one completes and its lines land."""
    clock = FakeClock(start=0.0)
    gate = anyio.Event()
    source = ScriptedSource(clock, {A: [logs(A, "last words\n")]}, gate=gate)
    sink = MemorySink()
    stop = anyio.Event()
    runner = make_runner(source, sink, shutdown_timeout_s=5.0)
    async with anyio.create_task_group() as group:
        group.start_soon(runner.run, stop)
        await parked_with(runner, in_flight=1)
        stop.set()
        await clock.wait_for_sleepers(1)  # the grace timer
        gate.set()
    assert [e.message for e in sink.events if isinstance(e, LogEvent)] == ["last words"]
    assert source.calls[A] == [0.0]


async def test_shutdown_cancels_polls_that_outlive_the_grace_period() -> None:
    """A poll still hanging when shutdown_timeout_s expires is cancelled and run() returns."""
    clock = FakeClock(start=0.0)
    source = ScriptedSource(clock, {A: [logs(A, "never\n")]}, gate=anyio.Event())
    sink = MemorySink()
    stop = anyio.Event()
    runner = make_runner(source, sink, shutdown_timeout_s=5.0)
    with capture_logs() as logged:
        async with anyio.create_task_group() as group:
            group.start_soon(runner.run, stop)
            await parked_with(runner, in_flight=1)
            stop.set()
            await clock.wait_for_sleepers(1)  # the grace timer
            clock.advance(5.0)
    assert sink.events == []
    assert "shutdown_grace_expired" in [entry["event"] for entry in logged]


@pytest.mark.parametrize("kind", ["log", "api_error"])
async def test_stats_count_events(kind: str) -> None:
    """The summary counters count what was written, by kind."""
    clock = FakeClock(start=0.0)
    answer: Answer = logs(A, "x\n") if kind == "log" else ServerError("x", status=500)
    source = ScriptedSource(clock, {A: [answer]})
    stats = await drive(make_runner(source, MemorySink()), clock, [])
    assert stats.events.get(kind) == 1


async def test_checkpoints_periodically_and_at_the_end() -> None:
    """A checkpoint every checkpoint_interval_s and at shutdown, each matching written events."""
    clock = FakeClock(start=0.0)
    texts = ["1\n", "1\n2\n", "1\n2\n3\n", "1\n2\n3\n4\n"]
    source = ScriptedSource(clock, {A: [logs(A, t) for t in texts]})
    sink = MemorySink()
    saved: list[tuple[float, int, int]] = []

    async def checkpointer(state: dict[str, Saved], mark: object) -> bool:
        written = [e.seq for e in sink.events if isinstance(e, LogEvent)]
        saved.append((clock.monotonic(), state[A].pods["p1"].seq, written[-1]))
        return True

    runner = Runner(
        sources=[Source(source, SourceSettings(pipelines=(A,)))],
        sink=sink,
        clock=clock,
        settings=RunSettings(interval_s=1.0, checkpoint_interval_s=2.0),
        matcher=TailErrorMatcher(),
        checkpointer=checkpointer,
    )
    await drive(runner, clock, [1.0, 1.0, 1.0])
    assert [at for at, _, _ in saved] == [2.0, 3.0]
    assert all(state_seq == written_seq for _, state_seq, written_seq in saved)
    assert saved[-1][1] == 4


async def test_a_last_checkpoint_that_cannot_be_saved_ends_the_run_with_an_error() -> None:
    """Stopped with the state file's folder gone: the events are written, but a supervisor
    must not read exit 0 as 'checkpointed', so the run ends with CheckpointError (exit 1)."""
    clock = FakeClock(start=0.0)
    source = ScriptedSource(clock, {A: [logs(A, "1\n")]})
    sink = MemorySink()

    async def checkpointer(state: dict[str, Saved], mark: object) -> bool:
        return False

    runner = Runner(
        sources=[Source(source, SourceSettings(pipelines=(A,)))], sink=sink, clock=clock,
        settings=RunSettings(interval_s=1.0, checkpoint_interval_s=60.0),
        matcher=TailErrorMatcher(), checkpointer=checkpointer,
    )
    with pytest.raises(ExceptionGroup) as raised:  # drive's task group wraps it
        await drive(runner, clock, [1.0])
    (error,) = raised.value.exceptions
    assert isinstance(error, CheckpointError) and error.exit_code == 1
    assert [e.message for e in sink.events if isinstance(e, LogEvent)] == ["1"]
