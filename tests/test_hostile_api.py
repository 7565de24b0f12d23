"""A hostile API, met the way users meet it: real processes, or the runner against loopback.

Each test scripts the answers of `tests/hostile.py` per endpoint and checks what the follower
makes of them: the key never shows in any case, one bad part of an answer does not stop the rest,
a 404 is confirmed before a pipeline is dropped, listings are capped and never starve log polls,
`retry_in_s` is the real delay, and an interval that cannot be kept is said.
"""

from __future__ import annotations

import json
import random
import re
import signal
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from itertools import pairwise
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import orjson
import pytest
from aiohttp import web
from hostile import (
    Answer,
    envelope,
    failure,
    hostile_api,
    listing,
    logs,
    logs_path,
    ok,
    status,
    status_path,
)
from structlog.testing import capture_logs
from test_cli import env_with, follower
from test_security import count, eventually

from follower.api.secret import ServiceKey
from follower.config import Config
from follower.core.backoff import BackoffPolicy
from follower.core.budget import BudgetSettings
from follower.engine.runner import Runner
from follower.engine.service import follow
from follower.engine.settings import DiscoverySettings
from follower.testing import FakeClock, MemorySink, advance_to, first_of, settle

KEY = "sk-HostileKey-7f3A9c0d"
PIPE = "pipe_abc"


def leaks(text: str) -> bool:
    """The key in any case."""
    return KEY.casefold() in text.casefold()


def files_leaking(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file()
            and leaks(p.read_bytes().decode("utf-8", "replace"))]


@pytest.mark.parametrize("output", ["stdout", "file"])
async def test_the_key_in_any_field_of_any_endpoint_never_shows_in_any_case(
    tmp_path: Path, output: str
) -> None:
    """The key, in four spellings, in every field of every endpoint (names, projects, intent,
    phases, uids, start times, pod names, lines, error messages): `run` (stdout or event files,
    stderr, state, /metrics), `tail` and `pipelines` never show it, whatever its case."""
    lower, upper, swapped = KEY.lower(), KEY.upper(), KEY.swapcase()
    item = {"id": PIPE, "name": f"name-{lower}", "project": f"proj-{upper}",
            "status": f"running-{swapped}", "description": KEY}
    async with hostile_api() as api:
        api.script("/platform/pipeline-api/", failure(503, f"list down {swapped}"),
                   listing([item]))
        api.script(logs_path(PIPE),
                   failure(500, f"boom {swapped}"),
                   Answer(200, orjson.dumps({"data": None, "error": True,
                                             "error_message": f"envelope {upper}",
                                             "error_code": lower})),
                   logs({f"pod-{lower}": f"hello {upper}\nsecond {KEY}\n"}, uid=swapped),
                   ok({"uid": upper, "pods": []}))
        api.script(status_path(PIPE),
                   failure(502, f"gateway {lower}"),
                   status(f"FAILED-{KEY}", ready=0, uid=lower, start_time=upper))
        toml = tmp_path / "follower.toml"
        toml.write_text("[backoff]\ninitial_s = 0.05\nmax_s = 0.2\n[discovery]\ninterval_s = 5\n")
        state, out = tmp_path / "state.json", tmp_path / "out"
        to_files = ["--output", "file", "--output-dir", str(out)] if output == "file" else []
        texts: list[str] = []
        async with follower(
            "run", "--base-url", api.base_url, "--discover", "--interval", "0.2",
            "--config", str(toml), "--state-file", str(state), "--listen", "127.0.0.1:0",
            "--log-level", "debug", *to_files, env=env_with(GOLDRUSH_SERVICE_KEY=KEY),
        ) as run:
            await run.wait_for("ops_server_listening", where="stderr")
            if to_files:
                await eventually(lambda: count(out / "events.jsonl", '"pipeline_status"') > 0)
            else:
                await run.wait_for('"event":"pipeline_status"')
            match = re.search(r'"url": "(http://[^"]+)"', "\n".join(run.stderr))
            assert match is not None
            async with aiohttp.ClientSession() as session, session.get(
                match.group(1) + "/metrics"
            ) as response:
                texts.append(await response.text())
            await eventually(state.exists)
            run.process.send_signal(signal.SIGTERM)
            assert await run.exit_code() == 0
        texts += [run.everything()]
        written = (out / "events.jsonl").read_text().splitlines() if to_files else run.stdout
        kinds = {json.loads(line)["event"] for line in written if line}
        assert {"pipeline_added", "log", "api_error", "pipeline_status"} <= kinds
        api.script(logs_path(PIPE), logs({f"pod-{lower}": f"hello {upper}\nsecond {KEY}\n"}))
        async with follower("tail", PIPE, "--base-url", api.base_url, "--interval", "0.2",
                            "--since", "start", env=env_with(GOLDRUSH_SERVICE_KEY=KEY)) as tail:
            await tail.wait_for(" | ", count=2)
            tail.process.send_signal(signal.SIGINT)
            assert await tail.exit_code() == 0
        async with follower("pipelines", "--base-url", api.base_url,
                            env=env_with(GOLDRUSH_SERVICE_KEY=KEY)) as table:
            assert await table.exit_code() == 0
        texts += [tail.everything(), table.everything()]
    assert [i for i, text in enumerate(texts) if leaks(text)] == []
    assert files_leaking(tmp_path) == []
    assert "Traceback" not in "\n".join(texts)


# --- the runner in-process, on fake time, against the scripted API --------------------------------


@dataclass
class Followed:
    """What a run in fake time produced."""

    sink: MemorySink
    logs: list[dict[str, Any]]
    runner: Runner

    def kind(self, kind: str) -> list[Any]:
        return self.sink.of_kind(kind)

    def diagnostics(self, event: str) -> list[dict[str, Any]]:
        return [entry for entry in self.logs if entry["event"] == event]


async def follow_in_fake_time(
    config: Config, clock: FakeClock, done: Callable[[Followed], bool], *, limit_s: float = 600.0,
    step_s: float = 1.0,
) -> Followed:
    """Run the real assembly (`follow`) on `clock`, a step at a time, until `done` or `limit_s`
    of fake time; stop it; what it wrote and logged."""
    stop, started, finished = anyio.Event(), anyio.Event(), anyio.Event()
    sink = MemorySink()
    runners: list[Runner] = []

    def got(runner: Runner) -> None:
        runners.append(runner)
        started.set()

    async def run() -> None:
        await follow(config, sink=sink, clock=clock, stop=stop, rng=random.Random(1),
                     on_runner=got)
        finished.set()

    with capture_logs() as logs, anyio.fail_after(60):
        async with anyio.create_task_group() as group:
            group.start_soon(run)
            await started.wait()
            result = Followed(sink, logs, runners[0])
            ends = clock.monotonic() + limit_s
            while not (done(result) or finished.is_set()) and clock.monotonic() < ends:
                step = partial(advance_to, runners[0], clock, clock.monotonic() + step_s)
                await first_of(step, finished.wait)
            await first_of(lambda: settle(runners[0], clock), finished.wait)
            stop.set()
            while not finished.is_set():  # in-flight answers may be asleep on the fake clock
                deadline = clock.next_deadline()
                if deadline is not None:
                    clock.advance_to(deadline)
                await first_of(clock.change.wait, finished.wait)
    return result


def config_for(base_url: str, *pipelines: str, **fields: Any) -> Config:
    values: dict[str, Any] = {"interval_s": 1.0, "backoff": BackoffPolicy(max_s=2.0), **fields}
    return Config(key=ServiceKey(KEY), pipelines=pipelines, base_url=base_url, **values)


async def test_one_bad_pod_does_not_stop_the_other_pods() -> None:
    """A duplicate pod name and invalid UTF-8 in one pod's logs, in every answer: the good pod's
    lines keep flowing, the bad pod's lines come with U+FFFD, and each problem is reported once
    by an api_error naming the pod (and a diagnostic), not at every poll."""
    clock = FakeClock()
    polls = 0

    def answer(_: web.Request) -> Answer:
        nonlocal polls
        polls += 1
        good = "".join(f"good {i}\n" for i in range(1, polls + 1))
        body = envelope({"uid": None, "pods": [
            {"pod": "good", "logs": good}, {"pod": "bad", "logs": "bytes BAD here\n"},
            {"pod": "good", "logs": "again\n"}]})
        return Answer(200, body.replace(b"BAD", b"\xc3\x28\xff"))

    async with hostile_api(clock) as api:
        api.script(logs_path(PIPE), answer)
        run = await follow_in_fake_time(config_for(api.base_url, PIPE), clock,
                                        lambda r: polls >= 10)
    good = [e.message for e in run.kind("log") if e.pod == "good"]
    assert good == [f"good {i}" for i in range(1, polls + 1)]
    assert [e.message for e in run.kind("log") if e.pod == "bad"] == ["bytes \ufffd(\ufffd here"]
    errors = run.kind("api_error")
    assert sorted((e.pod, e.status) for e in errors) == [("bad", 200), ("good", 200)]
    assert all(e.error == "malformed_response" and e.retry_in_s is not None for e in errors)
    assert "appears twice" in next(e.message for e in errors if e.pod == "good")
    assert "UTF-8" in next(e.message for e in errors if e.pod == "bad")
    assert {d["pod"] for d in run.diagnostics("answer_part_unusable")} == {"good", "bad"}


async def test_a_single_404_after_good_polls_is_a_blip_not_the_end() -> None:
    """`follower run` with one pipeline: one 404 between good answers no longer drops the
    pipeline (and exits 1): a second look confirms it first, and the lines go on."""
    async with hostile_api() as api:
        api.script(logs_path(PIPE), logs({"p": "one\n"}), failure(404, "not found"),
                   logs({"p": "one\ntwo\n"}))
        async with follower("run", "--base-url", api.base_url, "--pipeline", PIPE,
                            "--interval", "0.2", env=env_with(GOLDRUSH_SERVICE_KEY=KEY)) as run:
            await run.wait_for('"message":"two"')
            run.process.send_signal(signal.SIGTERM)
            assert await run.exit_code() == 0
    kinds = [e["event"] for e in run.events()]
    assert "pipeline_removed" not in kinds
    assert [e["retry_in_s"] for e in run.events() if e["event"] == "api_error"] == [2.0]


async def test_a_404_of_the_status_endpoint_while_waiting_is_looked_at_again() -> None:
    """Waiting for RUNNING (tail errors), one 404 of the status endpoint keeps the pipeline;
    the next look finds it RUNNING and its lines are read."""
    clock = FakeClock()
    waiting = "unable to upgrade connection: container not found (\"worker\")"
    async with hostile_api(clock) as api:
        api.script(logs_path(PIPE), logs({"p": waiting}), logs({"p": waiting}),
                   logs({"p": waiting}), logs({"p": "up\n"}))
        api.script(status_path(PIPE), failure(404), status("RUNNING"))
        run = await follow_in_fake_time(config_for(api.base_url, PIPE), clock,
                                        lambda r: bool(r.kind("log")), limit_s=120)
    assert [e.message for e in run.kind("log")] == ["up"]
    assert not run.kind("pipeline_removed")


async def test_a_confirmed_404_drops_the_pipeline_and_discovery_keeps_running() -> None:
    """Two 404s in a row, the second after the confirmation delay: `pipeline_removed`; in
    discovery mode the follower keeps running (and listing) with nothing to follow."""
    clock = FakeClock()
    async with hostile_api(clock) as api:
        api.script("/platform/pipeline-api/", listing([{"id": PIPE, "name": "n"}]),
                   listing([]))
        api.script(logs_path(PIPE), failure(404))
        config = config_for(
            api.base_url, discovery=DiscoverySettings(enabled=True, interval_s=30.0)
        )
        run = await follow_in_fake_time(
            config, clock, lambda r: len(api.asked("/platform/pipeline-api/")) >= 3,
            limit_s=200)
        asked = [t for r, t in zip(api.requests, api.times, strict=True)
                 if r.path == logs_path(PIPE)]
    assert [e.reason for e in run.kind("pipeline_removed")] == ["not_found"]
    assert len(asked) == 2 and asked[1] - asked[0] == 2.0
    assert [e.retry_in_s for e in run.kind("api_error")] == [2.0, None]


@pytest.mark.parametrize("answer", [
    failure(429, "slow down", **{"Retry-After": "7"}),
    failure(429, "slow down"),
    failure(401, "who are you"),
    failure(503, "down", **{"Retry-After": "3"}),
], ids=["429-retry-after", "429", "401", "503-retry-after"])
async def test_retry_in_s_is_when_the_next_request_really_goes(answer: Answer) -> None:
    """The api_error of a 429 or a 401 says when the pipeline is really asked again (the budget's
    pause, the key's probe), not 0.0."""
    clock = FakeClock()
    async with hostile_api(clock) as api:
        api.script(logs_path(PIPE), logs({"p": "a\n"}), answer, logs({"p": "a\nb\n"}))
        config = config_for(api.base_url, PIPE, budget=BudgetSettings(1.0))
        run = await follow_in_fake_time(config, clock,
                                        lambda r: len(r.kind("log")) >= 2, limit_s=120,
                                        step_s=0.25)
        times = api.times
    [error] = run.kind("api_error")
    assert len(times) == 3
    assert error.retry_in_s == pytest.approx(times[2] - times[1], abs=0.26)
    assert error.retry_in_s > 0.5


def endless_pages(request: web.Request) -> Answer:
    """Every page full of new pipelines, and `has_more` always true."""
    number = int(request.query["page_number"])
    size = int(request.query.get("page_size", "100"))
    items = [{"id": f"pipe_{number:05d}x{i:04d}", "name": f"p{number}-{i}"} for i in range(size)]
    return listing(items, has_more=True)


async def test_an_endless_listing_is_capped_said_and_never_starves_log_polls() -> None:
    """`has_more` always true: the listing stops at discovery.max_pages (was 1,000 pages, then
    100,000 pipelines), says so, follows what it read from the first page on (log polls start at
    once, were none in 45 s), and takes at most half the tokens while it lasts."""
    clock = FakeClock()
    async with hostile_api(clock) as api:
        api.script("/platform/pipeline-api/", endless_pages)
        api.default = logs({"p": "line\n"})
        start = clock.monotonic()
        config = config_for(api.base_url, interval_s=None, budget=BudgetSettings(10.0),
                            discovery=DiscoverySettings(enabled=True, page_size=50, max_pages=20))
        run = await follow_in_fake_time(config, clock, lambda r: False, limit_s=10.0)
        sent = [(r.path.endswith("/logs/"), t - start)
                for r, t in zip(api.requests, api.times, strict=True)]
    pages = [t for is_logs, t in sent if not is_logs]
    polls = [t for is_logs, t in sent if is_logs]
    assert len(pages) == 20 and len(run.kind("pipeline_added")) == 1000
    [said] = run.diagnostics("discovery_truncated")
    assert (said["pages"], said["pipelines"]) == (20, 1000)
    assert polls and polls[0] <= 0.5
    assert len([t for t in polls if t <= pages[-1]]) >= len(pages) - 2


async def test_the_pipeline_cap_stops_a_listing_mid_page() -> None:
    """discovery.max_pipelines: no more are read (nor followed) than the cap."""
    clock = FakeClock()
    async with hostile_api(clock) as api:
        api.script("/platform/pipeline-api/", endless_pages)
        api.default = logs({"p": "line\n"})
        config = config_for(api.base_url, discovery=DiscoverySettings(
            enabled=True, page_size=50, max_pipelines=120))
        run = await follow_in_fake_time(config, clock, lambda r: False, limit_s=5.0)
    assert len(api.asked("/platform/pipeline-api/")) == 3
    assert len(run.kind("pipeline_added")) == 120
    assert run.diagnostics("discovery_truncated")[0]["pipelines"] == 120


async def test_a_refused_page_size_is_made_smaller_then_left_out() -> None:
    """The maximum page_size is undocumented: a 422 or 400 retries with a quarter of it, then
    without page_size, from page 1."""
    clock = FakeClock()

    def picky(request: web.Request) -> Answer:
        size = request.query.get("page_size")
        if size is not None:
            return failure(422 if int(size) > 25 else 400, "page_size too large")
        return listing([{"id": PIPE, "name": "n"}])

    async with hostile_api(clock) as api:
        api.script("/platform/pipeline-api/", picky)
        api.script(logs_path(PIPE), logs({"p": "line\n"}))
        config = config_for(api.base_url, discovery=DiscoverySettings(enabled=True))
        run = await follow_in_fake_time(config, clock, lambda r: bool(r.kind("log")), limit_s=5.0)
    asked = api.asked("/platform/pipeline-api/")
    assert [r.query.get("page_size") for r in asked] == ["100", "25", None]
    assert [r.query["page_number"] for r in asked] == ["1", "1", "1"]
    assert [e.pipeline_id for e in run.kind("pipeline_added")] == [PIPE]


@pytest.mark.parametrize(("second_start", "reason"), [
    ("2026-05-02T10:00:00Z", "restarted"), ("2026-05-02T09:14:07Z", "no_overlap")])
async def test_a_new_start_time_names_the_gap_a_restart(second_start: str, reason: str) -> None:
    """The status endpoint's start_time changed while the pods were down: the gap that follows
    is `restarted`, not a guess; the same start_time leaves it `no_overlap`."""
    clock = FakeClock()
    waiting = "unable to upgrade connection: container not found (\"worker\")"
    async with hostile_api(clock) as api:
        api.script(logs_path(PIPE), logs({"p": "a\nb\n"}), logs({"p": waiting}),
                   logs({"p": waiting}), logs({"p": waiting}), logs({"p": "x\ny\n"}))
        api.script(status_path(PIPE), status("DEPLOYING", start_time="2026-05-02T09:14:07Z"),
                   status("RUNNING", start_time=second_start))
        run = await follow_in_fake_time(config_for(api.base_url, PIPE), clock,
                                        lambda r: len(r.kind("log")) >= 4, limit_s=120)
    assert [(e.after_seq, e.reason) for e in run.kind("gap")] == [(2, reason)]


async def test_an_interval_that_slow_answers_cannot_keep_is_said_once() -> None:
    """Thirty pipelines answering in 8 s, `--interval 1`, 8 requests in flight: about one poll
    per pipeline every 30 s. An `interval_not_kept` diagnostic says so once, with the planned
    and achieved interval, the in-flight limit and the latency (was: silence), and /metrics
    carries both intervals."""
    clock = FakeClock()
    pipelines = [f"pipe_slow{i:02d}" for i in range(30)]
    async with hostile_api(clock) as api:
        api.default = Answer(200, envelope({"uid": None, "pods": [{"pod": "p", "logs": "x\n"}]}),
                             delay_s=8.0)
        config = config_for(api.base_url, *pipelines, interval_s=1.0)
        run = await follow_in_fake_time(config, clock, lambda r: False, limit_s=120.0)
        sent_in_25_s = sum(t - api.times[0] < 25.0 for t in api.times)
    assert sent_in_25_s <= 40  # the bound itself is not the bug: not saying so is
    [said] = run.diagnostics("interval_not_kept")
    assert said["planned_interval_s"] == pytest.approx(1.0, abs=0.1)
    assert said["achieved_interval_s"] >= 20.0
    assert (said["in_flight_limit"], said["cause"]) == (8, "latency")
    assert said["latency_s"] == pytest.approx(8.0, abs=0.5)
    assert "max_in_flight" in said["hint"]
    scraped = run.runner.metrics.render().decode()
    assert 'follower_poll_interval_seconds{kind="achieved"}' in scraped


async def test_a_403_stays_permanent_for_the_pipeline_and_is_never_taken_for_a_404() -> None:
    """403 ("not a ServiceKey or no access"): the pipeline is kept, asked again only after
    forbidden_retry_s (300 s), never dropped like a confirmed 404."""
    clock = FakeClock()
    async with hostile_api(clock) as api:
        api.script(logs_path(PIPE), logs({"p": "a\n"}), failure(403, "no access"),
                   failure(403, "no access"), logs({"p": "a\nb\n"}))
        run = await follow_in_fake_time(config_for(api.base_url, PIPE), clock,
                                        lambda r: len(r.kind("log")) >= 2, limit_s=900)
        times = api.times
    assert not run.kind("pipeline_removed")
    assert [e.retry_in_s for e in run.kind("api_error")] == [300.0, 300.0]
    assert [round(b - a) for a, b in pairwise(times[1:])] == [300, 300]


@pytest.mark.parametrize("command", [["pipelines"], ["tail", "p1-1"]])
async def test_an_endless_listing_ends_people_commands_with_one_line(command: list[str]) -> None:
    """`follower pipelines` and `tail NAME` on a listing that never ends: exit 1 with one line
    naming the cap and the key to raise, never a traceback."""
    async with hostile_api() as api:
        api.script("/platform/pipeline-api/", endless_pages)
        env = env_with(GOLDRUSH_SERVICE_KEY="hostile-key-0123456789")
        async with follower(*command, "--base-url", api.base_url, env=env) as run:
            assert await run.exit_code(within_s=60) == 1
    stderr = "\n".join(run.stderr)
    assert "Traceback" not in stderr
    assert "discovery.max_pages" in stderr and "did not end within" in stderr
