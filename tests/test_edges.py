"""The edges real pods produce, met as a user meets them: a real `follower run` process against a
scripted API or the simulator. Lines still being written, pods missing from one answer, ids after
a crash, a restart without a state file and a reshard, and busy pods across clean restarts.

The property every test checks: an `id` names one line. A consumer that drops events by id must
never drop a line it has not seen.
"""

from __future__ import annotations

import dataclasses
import itertools
import signal
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import orjson
from aiohttp import web
from aiohttp.test_utils import TestServer
from test_cli import KEY, env_with, follower, run_args, served

from follower.clock import SystemClock
from follower.core import sharding
from follower.simulator.app import RECORDER
from follower.simulator.world import SimSettings

PIPE = "pipe_0123456789abcdef0123456789a"
Event = dict[str, object]


@asynccontextmanager
async def scripted(answers: Sequence[dict[str, str]]) -> AsyncIterator[str]:
    """A logs endpoint that serves `answers` (pod -> logs) one per request, the last for ever."""
    served_count = 0

    async def logs(request: web.Request) -> web.Response:
        nonlocal served_count
        assert request.headers.get("Authorization") == f"Bearer {KEY}"
        pods = answers[min(served_count, len(answers) - 1)]
        served_count += 1
        body = {"uid": "u", "pods": [{"pod": pod, "logs": text} for pod, text in pods.items()]}
        return web.json_response(
            {"data": body, "error": False, "error_message": None, "error_code": None}
        )

    app = web.Application()
    app.router.add_get("/platform/pipeline-api/{pipeline_id}/logs/", logs)
    async with TestServer(app, host="127.0.0.1") as server:
        yield str(server.make_url("")).rstrip("/")


def logs_of(events: list[Event]) -> list[Event]:
    return [e for e in events if e["event"] == "log"]


def assert_ids_name_one_line(events: list[Event]) -> None:
    """No id is given to two different lines (or to a snapshot and a line)."""
    named: dict[object, tuple[object, object, object]] = {}
    for event in logs_of(events):
        line = (event["pod"], event["message"], event.get("partial", False))
        assert named.setdefault(event["id"], line) == line, f"{event['id']} names two lines"


async def run_until(
    base_url: str, *extra: str, count: int, text: str = '"event":"log"', env: dict[str, str]
) -> list[Event]:
    """Run the follower until `count` stdout lines contain `text`, then SIGTERM it (exit 0)."""
    args = run_args(base_url, [PIPE], *extra)
    async with follower(*args, env=env) as run:
        await run.wait_for(text, count=count)
        run.process.send_signal(signal.SIGTERM)
        assert await run.exit_code() == 0
    assert "Traceback" not in run.everything()
    return run.events()


async def test_a_progress_line_is_emitted_once_complete_without_a_false_gap() -> None:
    """Tails whose last line grows poll after poll: every terminated line exactly once, with its
    final text, no gap, no repeat (today's main re-emitted the whole tail under new ids)."""
    head = "line0\nline1\nline2\n"
    answers = [{"p": head + "progress " + "#" * n} for n in range(1, 6)]
    answers.append({"p": head + "progress #####\nafter\n"})
    async with scripted(answers) as url:
        events = await run_until(url, "--no-state", count=5, env=env_with(GOLDRUSH_SERVICE_KEY=KEY))
    finals = [e["message"] for e in logs_of(events) if not e.get("partial")]
    assert finals == ["line0", "line1", "line2", "progress #####", "after"]
    assert not [e for e in events if e["event"] == "gap"]
    assert_ids_name_one_line(events)


async def test_a_quiet_open_line_reaches_consumers_as_a_partial_snapshot(tmp_path: Path) -> None:
    """An API that never ends `logs` with a newline: the quiet pod's last line arrives flagged
    partial within partial_flush_s, then once more, final, when a later line proves it done."""
    config = tmp_path / "follower.toml"
    config.write_text("[pods]\npartial_flush_s = 0.5\n", encoding="utf-8")
    quiet = [{"p": "a\nb"}] * 12
    async with scripted([*quiet, {"p": "a\nb\nc"}]) as url:
        events = await run_until(
            url, "--no-state", "--config", str(config), count=3,
            env=env_with(GOLDRUSH_SERVICE_KEY=KEY),
        )
    lines = [(e["message"], bool(e.get("partial"))) for e in logs_of(events)]
    assert lines[:3] == [("a", False), ("b", True), ("b", False)]
    snapshot, final = logs_of(events)[1:3]
    assert snapshot["id"] != final["id"] and snapshot["seq"] == final["seq"] == 2
    assert_ids_name_one_line(events)


async def test_a_pod_missing_from_one_answer_continues_where_it_left_off() -> None:
    """{p1: a b} -> {p2: x} -> {p1: b c d}: b is not repeated, c and d are p1's lines 3 and 4
    under ids never used before, and the blip makes no pod_removed/pod_added noise."""
    answers = [{"p1": "a\nb\n"}, {"p2": "x\n"}, {"p1": "b\nc\nd\n"}]
    async with scripted(answers) as url:
        events = await run_until(url, "--no-state", count=5, env=env_with(GOLDRUSH_SERVICE_KEY=KEY))
    p1 = [(e["seq"], e["message"]) for e in logs_of(events) if e["pod"] == "p1"]
    assert p1 == [(1, "a"), (2, "b"), (3, "c"), (4, "d")]
    assert [e["pod"] for e in events if e["event"] == "pod_added"] == ["p1", "p2"]
    assert not [e for e in events if e["event"] == "pod_removed"]
    assert_ids_name_one_line(events)


BUSY = SimSettings(pipelines=1, pods=1, rate=100.0, window=200, line_style="unique", seed=9)


async def test_sigkill_of_a_busy_pod_never_gives_one_id_to_two_lines(tmp_path: Path) -> None:
    """A pod at 100 lines/s, window 200, killed with SIGKILL then started after more than a
    window: the restarted follower finds no overlap with its checkpoint, and the numbers it
    gives on must not name lines the killed one already numbered (901 lines lost to an id
    deduplicating consumer on today's main)."""
    state = tmp_path / "state.json"
    config = tmp_path / "follower.toml"
    config.write_text("checkpoint_interval_s = 0.5\n", encoding="utf-8")
    async with served(settings=BUSY) as sim:
        ids = sim.world.pipeline_ids
        args = run_args(sim.base_url, ids, "--state-file", str(state), "--config", str(config))
        async with follower(*args) as run:
            await run.wait_for('"event":"log"', count=400)
            await run.wait_for_file(state)
            await run.wait_for('"event":"log"', count=600)
            run.process.kill()
            await run.exit_code()
        before = run.events()
        # Down for more than a window's worth of lines (the world runs on real time): the next
        # tail cannot line up with the checkpoint.
        await SystemClock().sleep(2.5)
        async with follower(*args) as run:
            await run.wait_for('"event":"gap"')
            await run.wait_for('"event":"log"', count=300)
            run.process.send_signal(signal.SIGTERM)
            assert await run.exit_code() == 0
        after = run.events()
    assert_ids_name_one_line(before + after)


async def test_sigkill_redelivery_keeps_the_ids_of_the_lines_it_repeats(tmp_path: Path) -> None:
    """Killed soon after a checkpoint and started at once: lines written again after the crash
    are delivered under the ids they had before it, so a consumer drops exactly those."""
    state = tmp_path / "state.json"
    config = tmp_path / "follower.toml"
    config.write_text("checkpoint_interval_s = 0.3\n", encoding="utf-8")
    settings = SimSettings(pipelines=1, pods=1, rate=20.0, window=200, line_style="unique")
    async with served(settings=settings) as sim:
        args = run_args(sim.base_url, sim.world.pipeline_ids, "--state-file", str(state),
                        "--config", str(config))
        async with follower(*args) as run:
            await run.wait_for('"event":"log"', count=120)
            await run.wait_for_file(state)
            run.process.kill()
            await run.exit_code()
        before = run.events()
        async with follower(*args) as run:
            await run.wait_for('"event":"log"', count=30)
            run.process.send_signal(signal.SIGTERM)
            assert await run.exit_code() == 0
        after = run.events()
    first = {e["message"]: e["id"] for e in logs_of(before)}
    repeated = [e for e in logs_of(after) if e["message"] in first]
    assert all(first[e["message"]] == e["id"] for e in repeated)
    assert not [e for e in after if e["event"] == "gap"]
    assert_ids_name_one_line(before + after)


async def test_lines_of_a_pod_first_seen_after_the_last_checkpoint_keep_their_ids(
    tmp_path: Path,
) -> None:
    """Killed before any checkpoint held the pod: the lines written again after the restart are
    delivered under the ids they had before the crash (a new epoch gave them new ids, so a
    consumer that drops by id kept both copies), and the lines after them go on in that epoch."""
    state = tmp_path / "state.json"
    config = tmp_path / "follower.toml"
    config.write_text("checkpoint_interval_s = 600\n", encoding="utf-8")
    answers = [{"p": "l1\nl2\n"}, {"p": "l1\nl2\nl3\n"}, {"p": "l1\nl2\nl3\nl4\n"}]
    env = env_with(GOLDRUSH_SERVICE_KEY=KEY)
    async with scripted(answers) as url:
        args = run_args(url, [PIPE], "--state-file", str(state), "--config", str(config))
        async with follower(*args, env=env) as run:
            await run.wait_for('"event":"log"', count=3)
            run.process.kill()
            await run.exit_code()
        before = run.events()
        async with follower(*args, env=env) as run:
            await run.wait_for('"message":"l4"')
            run.process.send_signal(signal.SIGTERM)
            assert await run.exit_code() == 0
        after = run.events()
    first = {e["message"]: e["id"] for e in logs_of(before)}
    assert {"l1", "l2", "l3"} <= set(first)
    again = {e["message"]: e["id"] for e in logs_of(after)}
    assert {"l1", "l2", "l3", "l4"} <= set(first) | set(again)
    assert all(first[message] == again[message] for message in set(first) & set(again))
    assert not [e for e in after if e["event"] == "gap"]
    assert_ids_name_one_line(before + after)


async def test_a_plain_run_keeps_its_place_in_the_default_state_directory(
    tmp_path: Path,
) -> None:
    """No --state-file: state goes to $XDG_STATE_HOME/goldrush-follower/state.json, so a plain
    `follower run` stopped and started neither repeats nor loses a line."""
    settings = SimSettings(pipelines=1, pods=2, rate=20.0, window=200, line_style="unique")
    env = env_with(GOLDRUSH_SERVICE_KEY=KEY, XDG_STATE_HOME=str(tmp_path / "xdg"))
    collected: list[Event] = []
    async with served(settings=settings) as sim:
        for _ in range(2):
            args = run_args(sim.base_url, sim.world.pipeline_ids)
            async with follower(*args, env=env) as run:
                await run.wait_for('"event":"log"', count=60)
                run.process.send_signal(signal.SIGTERM)
                assert await run.exit_code() == 0
            collected += run.events()
        recorder = sim.app[RECORDER]
        pipeline_id = sim.world.pipeline_ids[0]
        observed = [
            (pod, line)
            for pod in recorder.observed_pods(pipeline_id)
            for line in recorder.observed(pipeline_id, pod)
        ]
    assert (tmp_path / "xdg" / "goldrush-follower" / "state.json").exists()
    emitted = [(e["pod"], e["message"]) for e in logs_of(collected)]
    assert len(emitted) == len(set(emitted))  # no repeat
    assert set(observed) <= set(emitted)  # no loss
    assert not [e for e in collected if e["event"] == "gap"]


async def test_without_state_and_after_a_reshard_ids_are_never_reused(tmp_path: Path) -> None:
    """--no-state twice, then the pipeline moved to another shard's follower (a state file of
    its own): the same lines come again, each time under ids that name no other line."""
    settings = SimSettings(pipelines=2, pods=1, rate=20.0, window=200, line_style="unique")
    env = env_with(GOLDRUSH_SERVICE_KEY=KEY)
    collected: list[Event] = []
    async with served(settings=settings) as sim:
        ids = sim.world.pipeline_ids
        for extra in (["--no-state"], ["--no-state"], ["--state-file", str(tmp_path / "a.json")]):
            async with follower(*run_args(sim.base_url, ids, *extra), env=env) as run:
                await run.wait_for('"event":"log"', count=40)
                run.process.send_signal(signal.SIGTERM)
                assert await run.exit_code() == 0
            collected += run.events()
        for index in range(2):  # shard count 2: each pipeline moves to one of two followers
            if not sharding.select(ids, index, 2):
                continue
            shard = ["--shard-count", "2", "--shard-index", str(index),
                     "--state-file", str(tmp_path / f"shard-{index}.json")]
            async with follower(*run_args(sim.base_url, ids, *shard), env=env) as run:
                await run.wait_for('"event":"log"', count=20)
                run.process.send_signal(signal.SIGTERM)
                assert await run.exit_code() == 0
            collected += run.events()
    assert_ids_name_one_line(collected)
    seqs = [e["seq"] for e in logs_of(collected)]
    assert seqs.count(1) >= 4  # the numbering started again each time: the ids tell them apart


async def test_a_second_follower_on_the_same_state_file_is_refused(tmp_path: Path) -> None:
    """Two followers writing one state file would overwrite each other's checkpoints: the second
    exits 2 naming the file and the way out."""
    state = tmp_path / "state.json"
    async with served() as sim:
        args = run_args(sim.base_url, sim.world.pipeline_ids[:1], "--state-file", str(state))
        async with follower(*args) as first:
            await first.wait_for('"event":"log"')
            async with follower(*args) as second:
                assert await second.exit_code() == 2
            assert "another follower process is using it" in "\n".join(second.stderr)
            first.process.send_signal(signal.SIGTERM)
            assert await first.exit_code() == 0


RESTARTED = dataclasses.replace(BUSY, rate=60.0)
"""Busy enough that a 5 s wait after a start overflows the window (300 lines > 200), with room
for a loaded machine's latency at a 1 s poll interval (the fake-time bench runs 100 lines/s)."""


async def test_busy_pod_loses_nothing_across_clean_restarts(tmp_path: Path) -> None:
    """One busy pod, window 200, budget 10 req/s, adaptive: stopped and started again (the
    checkpoint carries what the scheduler learnt), no line is lost and there is no gap within a
    run; before, each start waited 5 s for a second look and lost lines behind a gap
    (bench/restarts.py). Only a start slower than the window (3.3 s of lines, which a loaded
    machine can take to start Python) may lose the lines written while no process ran, and then
    says so with a gap before its first line."""
    state = tmp_path / "state.json"
    env = env_with(GOLDRUSH_SERVICE_KEY=KEY)
    runs: list[list[Event]] = []
    async with served(settings=RESTARTED) as sim:
        args = ["run", "--base-url", sim.base_url, "--pipeline", sim.world.pipeline_ids[0],
                "--budget", "10", "--state-file", str(state)]
        for _ in range(3):
            async with follower(*args, env=env) as run:
                await run.wait_for('"event":"log"', count=500)
                run.process.send_signal(signal.SIGTERM)
                assert await run.exit_code() == 0
            runs.append(run.events())
        recorder = sim.app[RECORDER]
        pipeline_id = sim.world.pipeline_ids[0]
        pod = recorder.observed_pods(pipeline_id)[0]
        written = sim.world.lines(pipeline_id, pod, sim.world.start + 10_000)
        observed = recorder.observed(pipeline_id, pod)
    collected = [event for events in runs for event in events]
    emitted = [e["message"] for e in logs_of(collected)]
    assert len(emitted) == len(set(emitted))
    allowed: set[str] = set()  # lines written while no process ran, behind a start's gap
    for before, after in itertools.pairwise(runs):
        kinds = [e["event"] for e in after if e["event"] in ("gap", "log")]
        assert "gap" not in kinds[1:], "a gap within a run: the start waited too long"
        if kinds[:1] == ["gap"]:
            last, first = logs_of(before)[-1]["message"], logs_of(after)[0]["message"]
            allowed.update(written[written.index(last) + 1 : written.index(first)])
    first, last = written.index(emitted[0]), written.index(emitted[-1])
    missing = [line for line in written[first : last + 1] if line not in set(emitted)]
    assert set(missing) <= allowed, f"{len(missing)} lines lost of {last - first + 1}"
    assert set(observed) <= set(emitted)
    assert not [e for e in runs[0] if e["event"] == "gap"]
    saved = orjson.loads(state.read_bytes())
    plan = saved["pipelines"][pipeline_id]["plan"]
    assert plan["rate_lps"] > 30 and plan["window"] == 200
