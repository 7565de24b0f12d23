"""Several sources (keys) in one process, end to end against two simulated APIs in one fake time.

Each source is its own group of pipelines behind its own key and rate limit: every line of both is
emitted once, a key never travels to the other source's API, each source spends its own budget,
and a refused key pauses only its own source.
"""

from __future__ import annotations

import dataclasses
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from harness import Harness, simulated
from test_cli import env_with, follower, served
from test_end_to_end import check_against_truth
from test_runner import A, B, C, ScriptedSource, logs

from follower.api.secret import ServiceKey
from follower.config import Config, SourceConfig
from follower.core.budget import BudgetSettings
from follower.core.events import LogEvent, PipelineAddedEvent
from follower.core.tail_errors import TailErrorMatcher
from follower.engine.runner import Runner
from follower.engine.settings import DiscoverySettings, RunSettings
from follower.engine.sources import Source, SourceSettings
from follower.simulator.app import CONTROL, RECORDER
from follower.simulator.faults import FaultSettings
from follower.simulator.world import SimSettings
from follower.testing import FakeClock, MemorySink, advance_to

KEY_A = "key-of-payments"
KEY_B = "key-of-analytics"
WORLD_A = SimSettings(pipelines=6, pods=2, rate=2.0, window=80, line_style="unique", seed=31)
WORLD_B = SimSettings(pipelines=4, pods=1, rate=3.0, window=80, line_style="unique", seed=32)


@asynccontextmanager
async def two_groups(
    faults_a: FaultSettings | None = None,
) -> AsyncIterator[tuple[Harness, Harness]]:
    """Two APIs, each accepting only its own key, served in the same fake time."""
    async with simulated(WORLD_A, world_age_s=5.0, key=KEY_A, faults=faults_a) as a:  # noqa: SIM117
        async with simulated(WORLD_B, world_age_s=5.0, key=KEY_B, clock=a.clock) as b:
            assert not set(a.world.pipeline_ids) & set(b.world.pipeline_ids)
            yield a, b


def two_sources(a: Harness, b: Harness, *, rps_a: float = 50.0, rps_b: float = 50.0) -> Config:
    """Source "payments" lists its pipelines; "analytics" discovers every pipeline it sees."""
    discovery = DiscoverySettings(interval_s=30.0)
    payments = SourceConfig(ServiceKey(KEY_A), a.base_url, SourceSettings(
        "payments", tuple(a.world.pipeline_ids), BudgetSettings(rps_a, 2), discovery,
    ))
    analytics = SourceConfig(ServiceKey(KEY_B), b.base_url, SourceSettings(
        "analytics", budget=BudgetSettings(rps_b, 2),
        discovery=dataclasses.replace(discovery, enabled=True),
    ))
    return Config(
        interval_s=1.0, discovery=discovery, extra_sources=(payments, analytics),
    )


async def test_two_sources_emit_every_line_of_both_groups_once() -> None:
    sink = MemorySink()
    async with two_groups() as (a, b):
        stats = await a.follow(two_sources(a, b), sink, steps=12)
        until = a.clock.monotonic()
        checked_a = check_against_truth(a.world, a.recorder, sink, until)
        checked_b = check_against_truth(b.world, b.recorder, sink, until)
        # Each API saw only its own key: no 401 anywhere, so a key never went to the other.
        refused = a.recorder.outcomes["401"] + b.recorder.outcomes["401"]
        listed_b = b.recorder.by_endpoint["list", "ok"]
        listed_a = a.recorder.requests["list"]
    assert refused == 0
    assert stats.polls_failed == 0
    assert checked_a > 6 * 2 * 2 * 10 and checked_b > 4 * 3 * 10
    followed = {e.pipeline_id for e in sink.events if isinstance(e, LogEvent)}
    assert followed == set(a.world.pipeline_ids) | set(b.world.pipeline_ids)
    added = {e.pipeline_id for e in sink.events if isinstance(e, PipelineAddedEvent)}
    assert added == set(b.world.pipeline_ids)  # discovered by "analytics"
    assert listed_b >= 1 and listed_a == 0  # only the discovering source lists


async def test_each_source_spends_its_own_budget() -> None:
    """"payments" needs 6 requests/s but may send 2; "analytics" gets all it needs meanwhile."""
    sink = MemorySink()
    steps = 20
    async with two_groups() as (a, b):
        await a.follow(two_sources(a, b, rps_a=2.0, rps_b=50.0), sink, steps=steps)
        sent_a = a.recorder.requests["logs"]
        sent_b = b.recorder.requests["logs"] + b.recorder.requests["list"]
    assert sent_a <= 2 + 2.0 * steps + 1  # its burst plus its rate, whatever the other does
    assert sent_a >= 2.0 * steps * 0.8  # and it does spend it
    assert sent_b >= 4 * (steps - 2)  # each of its 4 pipelines about every second


async def test_a_refused_key_pauses_only_its_own_source() -> None:
    sink = MemorySink()
    runners: list[Runner] = []
    async with two_groups() as (a, b):

        def revoke(step: int) -> None:
            if step == 3:
                a.app[CONTROL].revoke_key()

        config = two_sources(a, b)
        before_b = 0

        def watch(step: int) -> None:
            nonlocal before_b
            revoke(step)
            if step == 6:
                before_b = b.recorder.requests["logs"]

        await a.follow(config, sink, steps=14, on_step=watch, on_runner=runners.append)
        refused_a = a.recorder.outcomes["401"]
        after_b = b.recorder.requests["logs"] - before_b
    assert 1 <= refused_a <= 4  # one probe at a time, backing off, not one per pipeline
    assert after_b >= 4 * 7  # "analytics" went on polling every pipeline every second
    ready, reason = runners[0].readiness()
    assert not ready and "payments" in reason
    runners[0].refresh_metrics()
    exported = runners[0].metrics.render().decode()
    assert 'follower_source_key_rejected{source="payments"} 1.0' in exported
    assert 'follower_source_key_rejected{source="analytics"} 0.0' in exported
    assert 'follower_source_pipelines{source="analytics"} 4.0' in exported
    assert "follower_key_rejected 1.0" in exported


async def test_follower_run_with_two_sources_in_the_config_file(tmp_path: Path) -> None:
    """As a user runs it: keys from a file and from a variable, no GOLDRUSH_SERVICE_KEY; lines
    of both groups stream out; SIGTERM exits 0; neither key is printed."""
    key_file = tmp_path / "payments.key"
    key_file.write_text(KEY_A + "\n", encoding="utf-8")
    async with served(settings=WORLD_A, key=KEY_A) as a, served(settings=WORLD_B, key=KEY_B) as b:
        config = tmp_path / "follower.toml"
        config.write_text(f"""
[[sources]]
name = "payments"
base_url = "{a.base_url}"
service_key_file = "{key_file}"
pipelines = {list(a.world.pipeline_ids)!r}

[[sources]]
name = "analytics"
base_url = "{b.base_url}"
service_key_env = "ANALYTICS_KEY"
""".replace("'", '"'), encoding="utf-8")
        wanted = [*a.world.pipeline_ids, *b.world.pipeline_ids]
        args = ["run", "--config", str(config), "--interval", "0.2"]
        async with follower(*args, env=env_with(ANALYTICS_KEY=KEY_B)) as run:
            for pipeline_id in wanted:
                await run.wait_for(f'"pipeline_id":"{pipeline_id}"')
            run.process.send_signal(signal.SIGTERM)
            assert await run.exit_code() == 0
        refused = a.app[RECORDER].outcomes["401"] + b.app[RECORDER].outcomes["401"]
    assert refused == 0
    logged = {e["pipeline_id"] for e in run.events() if e["event"] == "log"}
    assert logged == set(wanted)
    assert KEY_A not in run.everything() and KEY_B not in run.everything()
    assert any('"sources":2' in line.replace(" ", "") for line in run.stderr)


async def test_reload_changes_each_source_by_name_and_keeps_the_rest() -> None:
    """A reload swaps each running source's selection and budget by name: a pipeline dropped
    from one source is removed, one added to another is followed through that source; a source
    the running process does not have is ignored (it needs a restart)."""
    clock = FakeClock(start=0.0)
    d = "pipe_d"
    one = ScriptedSource(clock, {A: [logs(A, "a\n")], B: [logs(B, "b\n")]})
    two = ScriptedSource(clock, {C: [logs(C, "c\n")], d: [logs(d, "d\n")]})
    sink = MemorySink()
    runner = Runner(
        sources=[
            Source(one, SourceSettings("one", (A, B), BudgetSettings(5.0, 1))),
            Source(two, SourceSettings("two", (C,), BudgetSettings(burst=1))),
        ],
        sink=sink, clock=clock, settings=RunSettings(interval_s=0.25),
        matcher=TailErrorMatcher(),
    )
    stop = anyio.Event()
    async with anyio.create_task_group() as group:
        group.start_soon(runner.run, stop)
        await advance_to(runner, clock, 2.0)
        added, removed = await runner.reconfigure(
            RunSettings(interval_s=0.25),
            [SourceSettings("one", (A,), BudgetSettings(1.0, 1)),
             SourceSettings("two", (C, d), BudgetSettings(burst=1)),
             SourceSettings("three", (B,))],
            TailErrorMatcher(),
        )
        await advance_to(runner, clock, 6.0)
        stop.set()
    assert (added, removed) == ([d], [B])
    assert runner.followed == (A, C, d)
    assert d in two.calls and d not in one.calls  # polled through the source that lists it
    calls_b = one.calls[B]
    assert all(t <= 2.0 for t in calls_b)  # no longer polled after the reload
    after = [t for t in one.calls[A] if t > 2.0]
    assert len(after) <= 1 + 1.0 * 4 + 1  # "one" now spends 1 request/s (A wants 4/s)
    assert len([t for t in two.calls[C] if t > 2.0]) >= 4 * 4 - 1  # "two" kept its pace


def test_a_source_with_a_refused_key_waits_for_its_one_probe() -> None:
    """ready_at: the token time normally; the probe time (or later) once refused; None while the
    probe is out; the token time again once the key is accepted."""
    clock = FakeClock(start=0.0)
    source = Source(ScriptedSource(clock, {}), SourceSettings("s", budget=BudgetSettings(1.0, 1)))
    assert source.ready_at(0.0) == 0.0
    source.budget.take(0.0)
    assert source.ready_at(0.0) == 1.0
    assert source.reject_key(probe_at=5.0) is True
    assert source.reject_key(probe_at=9.0) is False  # reported once
    assert source.ready_at(2.0) == 9.0
    source.in_flight = 1
    assert source.ready_at(10.0) is None
    source.in_flight = 0
    assert source.accept_key() is True and source.accept_key() is False
    assert source.probe_attempts == 0 and source.ready_at(10.0) == 10.0


async def test_pipelines_and_tail_use_the_source_named(tmp_path: Path) -> None:
    """`--source NAME` lists (and tails) through that source's key and API, with no top-level
    key; an unknown name exits 2 naming the sources there are."""
    async with served(settings=WORLD_B, key=KEY_B) as b:
        config = tmp_path / "follower.toml"
        config.write_text(f"""
[[sources]]
name = "analytics"
base_url = "{b.base_url}"
service_key_env = "ANALYTICS_KEY"
""", encoding="utf-8")
        env = env_with(ANALYTICS_KEY=KEY_B)
        listing = ["pipelines", "--config", str(config), "--source", "analytics"]
        async with follower(*listing, env=env) as run:
            assert await run.exit_code() == 0
        first = b.world.pipeline_ids[0]
        tailing = ["tail", first, "--config", str(config), "--source", "analytics",
                   "--since", "start", "--output", "json"]
        async with follower(*tailing, env=env) as tailed:
            await tailed.wait_for(f'"pipeline_id":"{first}"')
            tailed.process.send_signal(signal.SIGINT)
            assert await tailed.exit_code() == 0
        async with follower("pipelines", "--config", str(config), "--source", "nope",
                            env=env) as wrong:
            assert await wrong.exit_code() == 2
    rows = [line.split()[0] for line in run.stdout[1:] if line]
    assert sorted(rows) == sorted(b.world.pipeline_ids)
    assert {e["pipeline_id"] for e in tailed.events() if e["event"] == "log"} == {first}
    assert "no source named 'nope'; the configuration has: 'analytics'" in wrong.everything()
    assert KEY_B not in run.everything() + tailed.everything() + wrong.everything()
