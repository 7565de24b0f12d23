"""The simulator served on loopback to a real aiohttp client, driven by a fake clock."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import anyio
import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import BaseTestServer, TestServer

from follower.simulator import text
from follower.simulator.app import CONTROL, PREFIX, RECORDER, create_app
from follower.simulator.cli import add_simulate_arguments, run_simulate, serve, settings_from_args
from follower.simulator.faults import MALFORMED, FaultSettings, TokenBucket
from follower.simulator.recorder import Span, merge_span
from follower.simulator.world import SimSettings, World
from follower.testing import FakeClock

ROOT = str(Path(__file__).resolve().parent.parent)
KEY = "test-service-key"
DEFAULT_WORLD = SimSettings()
NO_FAULTS = FaultSettings()
AUTH = {"Authorization": f"Bearer {KEY}"}
POD_NAME = re.compile(r"pipeline-[a-z0-9-]{1,58}[bcdfghjklmnpqrstvwxz2456789]{5}")
TAIL_ERROR = re.compile(
    r'unable to upgrade connection: container not found \("worker"\)'
    r'|container "worker" in pod "\S+" is waiting to start: (ContainerCreating|PodInitializing)'
    r'|previous terminated container "worker" in pod "\S+" not found'
    r'|pods "\S+" not found'
)


@dataclass
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def data(self) -> Any:
        envelope = self.json()
        assert envelope["error"] is False, envelope
        return envelope["data"]


@dataclass
class Sim:
    world: World
    app: web.Application
    clock: FakeClock
    server: BaseTestServer
    session: ClientSession

    async def get(self, path: str, headers: Mapping[str, str] = AUTH, **query: Any) -> Reply:
        url = self.server.make_url(PREFIX + path)
        async with self.session.get(url, headers=headers, params=query) as response:
            return Reply(response.status, response.headers, await response.read())

    async def logs(self, pipeline_id: str) -> dict[str, str]:
        reply = await self.get(f"{pipeline_id}/logs/")
        assert reply.status == 200
        return {pod["pod"]: pod["logs"] for pod in reply.data["pods"]}


@asynccontextmanager
async def simulator(
    settings: SimSettings = DEFAULT_WORLD, faults: FaultSettings = NO_FAULTS
) -> AsyncIterator[Sim]:
    clock = FakeClock()
    world = World(settings, clock.monotonic(), clock.wall())
    app = create_app(world, clock, KEY, faults)
    async with TestServer(app, host="127.0.0.1") as server, ClientSession() as session:
        yield Sim(world, app, clock, server, session)


def tail_lines(logs: str) -> list[str]:
    assert logs == "" or logs.endswith("\n")
    return logs.splitlines()


# --- the API's shape -----------------------------------------------------------------------------


async def test_list_paginates_with_has_more_and_total_count() -> None:
    """Pages of 10 walk all 25 pipelines in order; has_more turns false on the last page."""
    async with simulator(SimSettings(pipelines=25)) as sim:
        ids: list[str] = []
        for number, more in ((1, True), (2, True), (3, False)):
            data = (await sim.get("", page_number=number, page_size=10)).data
            assert data["pagination"] == {
                "has_more": more,
                "page_number": number,
                "page_size": 10,
                "total_count": 25,
            }
            ids.extend(item["id"] for item in data["items"])
        assert ids == sim.world.pipeline_ids


async def test_list_past_the_end_is_an_empty_page() -> None:
    """A page beyond the last one has no items and no more pages."""
    async with simulator(SimSettings(pipelines=3)) as sim:
        data = (await sim.get("", page_number=4)).data
        assert data["items"] == []
        assert data["pagination"]["has_more"] is False
        assert data["pagination"]["total_count"] == 3


async def test_list_page_size_defaults_to_10_and_caps_at_100() -> None:
    """Without page_size a page holds 10 items; asking for 500 gives 100."""
    async with simulator(SimSettings(pipelines=150)) as sim:
        assert len((await sim.get("")).data["items"]) == 10
        data = (await sim.get("", page_size=500)).data
        assert len(data["items"]) == 100
        assert data["pagination"]["page_size"] == 100


async def test_list_rejects_a_bad_page_number() -> None:
    """page_number 0 or a non-number is a 400 error envelope."""
    async with simulator() as sim:
        for bad in ("0", "x"):
            reply = await sim.get("", page_number=bad)
            assert reply.status == 400
            assert reply.json()["error_code"] == "400"


async def test_pipeline_object_has_the_documented_fields() -> None:
    """GET {id}/ returns id, name, project, description, topic, destination_type, status, dates."""
    async with simulator() as sim:
        pipeline_id = sim.world.pipeline_ids[0]
        data = (await sim.get(f"{pipeline_id}/")).data
        assert data["id"] == pipeline_id
        assert re.fullmatch(r"pipe_[0-9a-f]{27}", pipeline_id)
        assert set(data) == {
            "id",
            "name",
            "project",
            "description",
            "topic",
            "destination_type",
            "status",
            "created_at",
            "updated_at",
        }
        assert data["status"] == "running"


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer wrong"}, 401),
        ({"Authorization": KEY}, 401),
        ({"Authorization": "Bearer cqt_regularapikey"}, 403),
    ],
)
async def test_auth_errors_are_error_envelopes(headers: dict[str, str], status: int) -> None:
    """A missing or wrong key is 401, a regular GoldRush API key is 403, both as envelopes."""
    async with simulator() as sim:
        reply = await sim.get("", headers=headers)
        assert reply.status == status
        assert reply.json() == {
            "data": None,
            "error": True,
            "error_message": reply.json()["error_message"],
            "error_code": str(status),
        }
        assert reply.json()["error_message"]


@pytest.mark.parametrize("suffix", ["", "status/", "logs/"])
async def test_unknown_pipeline_is_404(suffix: str) -> None:
    """Every per-pipeline endpoint answers an unknown id with a 404 envelope."""
    async with simulator() as sim:
        reply = await sim.get(f"pipe_0000000000000000000000000aa/{suffix}")
        assert reply.status == 404
        assert reply.json()["error_code"] == "404"


async def test_unknown_path_is_a_404_envelope() -> None:
    """A path outside the API is still answered with the envelope."""
    async with simulator() as sim:
        reply = await sim.get("nope/nothing/here/")
        assert reply.status == 404
        assert reply.json()["error"] is True
        assert sim.app[RECORDER].by_endpoint["other", "404"] == 1


# --- logs and status -----------------------------------------------------------------------------


async def test_logs_are_the_last_window_lines_of_the_truth() -> None:
    """Each pod's logs hold its last `window` true lines, newline-terminated."""
    settings = SimSettings(pipelines=2, pods=3, rate=3.0, window=5, line_style="unique")
    async with simulator(settings) as sim:
        pipeline_id = sim.world.pipeline_ids[1]
        assert set((await sim.logs(pipeline_id)).values()) == {""}
        sim.clock.advance(1.2)
        early = await sim.logs(pipeline_id)
        sim.clock.advance(10.0)
        late = await sim.logs(pipeline_id)
        now = sim.clock.monotonic()
        assert list(late) == sim.world.pod_names(pipeline_id, now)
        for pod, logs in late.items():
            assert POD_NAME.fullmatch(pod) and len(pod) <= 63
            truth = sim.world.lines(pipeline_id, pod, now)
            assert len(truth) == pytest.approx(3.0 * 11.2, abs=1.01)
            assert tail_lines(logs) == truth[-5:]
            assert 1 <= len(tail_lines(early[pod])) <= 5
            assert tail_lines(early[pod]) == truth[: len(tail_lines(early[pod]))]


async def test_status_is_running_with_all_replicas_ready() -> None:
    """Without restarts the status is RUNNING and ready equals replicas."""
    async with simulator(SimSettings(pods=3)) as sim:
        pipeline_id = sim.world.pipeline_ids[0]
        data = (await sim.get(f"{pipeline_id}/status/")).data
        assert data["status"] == "RUNNING"
        assert data["replicas"] == data["ready"] == 3
        assert data["uid"] == sim.world.uid(pipeline_id)
        assert data["uid"].startswith("covalent-")


async def test_restart_resets_the_tail_under_the_same_name() -> None:
    """After a restart the pod keeps its name and its tail holds only the new incarnation."""
    settings = SimSettings(pods=1, rate=2.0, window=1000, restart_every_s=20.0, line_style="unique")
    async with simulator(settings) as sim:
        pipeline_id = sim.world.pipeline_ids[0]
        sim.clock.advance(15.0)
        (pod,) = await sim.logs(pipeline_id)
        start = sim.clock.monotonic()
        restart = sim.world.restarts(pipeline_id, 0, start + 40.0)[0]
        sim.clock.advance(restart - start + 5.0)
        logs = await sim.logs(pipeline_id)
        now = sim.clock.monotonic()
        assert list(logs) == [pod]
        truth = sim.world.lines(pipeline_id, pod, now)
        tail = tail_lines(logs[pod])
        assert 0 < len(tail) < len(truth)
        assert tail == truth[-len(tail) :]
        assert all(line.startswith("line 1.") for line in tail)
        assert sim.world.pod_names(pipeline_id, now) == [pod]


async def test_restart_with_replacement_brings_a_new_pod_name() -> None:
    """With replace_on_restart a restarted pod comes back under a new name with a fresh tail."""
    settings = SimSettings(pods=1, restart_every_s=20.0, replace_on_restart=True)
    async with simulator(settings) as sim:
        pipeline_id = sim.world.pipeline_ids[0]
        sim.clock.advance(5.0)
        (old,) = await sim.logs(pipeline_id)
        restart = sim.world.restarts(pipeline_id, 0, 40.0 + sim.clock.monotonic())[0]
        sim.clock.advance(restart - sim.clock.monotonic() + 3.0)
        logs = await sim.logs(pipeline_id)
        now = sim.clock.monotonic()
        (new,) = logs
        assert new != old
        assert new[:-5] == old[:-5]
        assert tail_lines(logs[new]) == sim.world.lines(pipeline_id, new, now)
        assert sim.world.pod_names(pipeline_id, now) == [old, new]
        assert sim.world.lines(pipeline_id, old, now) == sim.world.lines(pipeline_id, old, restart)


async def test_tail_error_phase_says_deploying_and_returns_the_error_text() -> None:
    """While starting, logs hold a Kubernetes error with error:false and status is DEPLOYING."""
    settings = SimSettings(pods=2, tail_error_s=3.0)
    async with simulator(settings) as sim:
        pipeline_id = sim.world.pipeline_ids[0]
        sim.clock.advance(1.0)
        reply = await sim.get(f"{pipeline_id}/logs/")
        assert reply.json()["error"] is False
        for pod in reply.data["pods"]:
            assert TAIL_ERROR.fullmatch(pod["logs"]), pod["logs"]
        status = (await sim.get(f"{pipeline_id}/status/")).data
        assert (status["status"], status["ready"], status["replicas"]) == ("DEPLOYING", 0, 2)
        sim.clock.advance(3.0)
        status = (await sim.get(f"{pipeline_id}/status/")).data
        assert (status["status"], status["ready"]) == ("RUNNING", 2)
        for logs in (await sim.logs(pipeline_id)).values():
            assert not TAIL_ERROR.search(logs)
            assert tail_lines(logs)


# --- faults --------------------------------------------------------------------------------------


async def test_injected_429_carries_retry_after() -> None:
    """At rate 1.0 every request is a 429 envelope with the configured Retry-After."""
    async with simulator(faults=FaultSettings(rate_429=1.0, retry_after_s=2.5)) as sim:
        reply = await sim.get("")
        assert reply.status == 429
        assert reply.headers["Retry-After"] == "2.5"
        assert reply.json()["error_code"] == "429"
        sim.app[CONTROL].set_faults(FaultSettings(rate_429=1.0, retry_after_s=None))
        reply = await sim.get("")
        assert reply.status == 429
        assert "Retry-After" not in reply.headers


async def test_injected_5xx_cycles_through_server_errors() -> None:
    """At rate 1.0 the answers cycle 500, 502, 503, 504, with HTML pages from the 'proxy'."""
    async with simulator(faults=FaultSettings(rate_5xx=1.0)) as sim:
        replies = [await sim.get("") for _ in range(4)]
        assert [r.status for r in replies] == [500, 502, 503, 504]
        assert replies[0].json()["error_code"] == "500"
        assert replies[1].body.startswith(b"<html>")
        assert sim.app[RECORDER].outcomes["5xx"] == 4


async def test_injected_envelope_error_is_a_200_with_error_true() -> None:
    """At rate 1.0 the answer is HTTP 200 whose envelope says error with code 500."""
    async with simulator(faults=FaultSettings(rate_envelope_error=1.0)) as sim:
        reply = await sim.get("")
        assert reply.status == 200
        assert reply.json() == {
            "data": None,
            "error": True,
            "error_message": "Internal server error",
            "error_code": "500",
        }


async def test_injected_malformed_answers_are_never_a_valid_logs_answer() -> None:
    """At rate 1.0 each variant (truncated, wrong types, missing fields...) breaks the shape."""
    async with simulator(SimSettings(rate=5.0), FaultSettings(rate_malformed=1.0)) as sim:
        pipeline_id = sim.world.pipeline_ids[0]
        sim.clock.advance(3.0)
        for _ in MALFORMED:
            reply = await sim.get(f"{pipeline_id}/logs/")
            assert reply.status == 200
            try:
                envelope = reply.json()
            except json.JSONDecodeError:
                continue
            pods = envelope.get("data", {}).get("pods") if "error" in envelope else None
            valid = isinstance(pods, list) and all(
                isinstance(p.get("pod"), str) and isinstance(p.get("logs"), str) for p in pods
            )
            assert not valid, envelope
        recorder = sim.app[RECORDER]
        assert recorder.outcomes["malformed"] == len(MALFORMED)
        assert recorder.observed_pods(pipeline_id) == []


async def test_injected_slow_answer_waits_on_the_clock() -> None:
    """A slow answer arrives only once the injected clock has advanced by slow_s."""
    async with simulator(faults=FaultSettings(rate_slow=1.0, slow_s=5.0)) as sim:
        pipeline_id = sim.world.pipeline_ids[0]
        replies: list[Reply] = []
        async with anyio.create_task_group() as group:
            group.start_soon(lambda: _append(replies, sim.get(f"{pipeline_id}/logs/")))
            await sim.clock.wait_for_sleepers(1)
            assert replies == []
            sim.clock.advance(5.0)
        assert replies[0].status == 200
        assert sim.app[RECORDER].slowed == 1
        assert sim.app[RECORDER].observed_pods(pipeline_id) != []


async def _append(replies: list[Reply], request: Any) -> None:
    replies.append(await request)


async def test_rate_limit_answers_429_above_the_budget() -> None:
    """With 2 requests/s allowed, the third request in one instant is a 429; time refills it."""
    async with simulator(faults=FaultSettings(rate_limit_rps=2.0)) as sim:
        statuses = [(await sim.get("")).status for _ in range(3)]
        assert statuses == [200, 200, 429]
        limited = await sim.get("")
        assert limited.headers["Retry-After"] == "1"
        sim.clock.advance(0.5)
        assert (await sim.get("")).status == 200
        assert (await sim.get("")).status == 429
        assert sim.app[RECORDER].outcomes["rate_limited"] == 3


def test_token_bucket_refills_at_its_rate() -> None:
    """The bucket grants `burst` at once, then a token per 1/rate seconds, and says the wait."""
    bucket = TokenBucket(4.0, burst=2.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.25]
    assert bucket.take(0.25) == 0.0
    assert bucket.take(0.25) == 0.25


async def test_faults_are_reproducible_from_the_seed() -> None:
    """Two simulators with the same fault seed fail the same requests the same way."""

    async def statuses() -> list[int]:
        faults = FaultSettings(rate_429=0.2, rate_5xx=0.2, rate_envelope_error=0.2, seed=9)
        async with simulator(faults=faults) as sim:
            return [(await sim.get("")).status for _ in range(30)]

    first = await statuses()
    assert first == await statuses()
    assert len(set(first)) > 2


# --- runtime controls and the recorder ------------------------------------------------------------


async def test_revoked_key_is_401_from_the_next_request() -> None:
    """Revoking the key takes effect on the next request; restoring it brings back 200."""
    async with simulator() as sim:
        control = sim.app[CONTROL]
        assert (await sim.get("")).status == 200
        control.revoke_key()
        assert (await sim.get("")).status == 401
        control.add_key("rotated")
        assert (await sim.get("", headers={"Authorization": "Bearer rotated"})).status == 200
        control.restore_key()
        assert (await sim.get("")).status == 200


async def test_deleted_pipeline_is_404_and_leaves_the_list() -> None:
    """A deleted pipeline answers 404 everywhere and is no longer counted by the list."""
    async with simulator(SimSettings(pipelines=3)) as sim:
        gone = sim.world.pipeline_ids[1]
        sim.app[CONTROL].delete_pipeline(gone)
        assert (await sim.get(f"{gone}/logs/")).status == 404
        data = (await sim.get("")).data
        assert data["pagination"]["total_count"] == 2
        assert gone not in [item["id"] for item in data["items"]]


async def test_recorder_observed_is_what_some_poll_showed_in_truth_order() -> None:
    """observed() is the union of served windows in truth order, without lines no poll saw."""
    settings = SimSettings(pipelines=1, pods=1, rate=1.0, window=4, line_style="repetitive")
    async with simulator(settings) as sim:
        pipeline_id = sim.world.pipeline_ids[0]
        for step in (3.0, 2.0, 0.0, 20.0, 1.0):
            sim.clock.advance(step)
            await sim.logs(pipeline_id)
        recorder = sim.app[RECORDER]
        (pod,) = recorder.observed_pods(pipeline_id)
        truth = sim.world.lines(pipeline_id, pod, sim.clock.monotonic())
        assert len(truth) == 26
        # Polls at 3, 5, 5, 25 and 26 s showed lines [0, 3), [1, 5), [1, 5), [21, 25), [22, 26).
        indexes = [*range(5), *range(21, 26)]
        assert recorder.observed(pipeline_id, pod) == [truth[i] for i in indexes]
        assert recorder.observed_count(pipeline_id, pod) == len(indexes)
        assert recorder.observed_spans(pipeline_id, pod) == [(0, 0, 5), (0, 21, 26)]
        assert recorder.requests["logs"] == 5
        assert recorder.outcomes["ok"] == 5


@pytest.mark.parametrize(
    ("spans", "add", "expected"),
    [
        ([], (0, 0), []),
        ([], (2, 5), [(2, 5)]),
        ([(0, 3)], (3, 6), [(0, 6)]),
        ([(0, 3)], (5, 6), [(0, 3), (5, 6)]),
        ([(5, 6)], (0, 3), [(0, 3), (5, 6)]),
        ([(0, 2), (4, 6), (8, 9)], (1, 8), [(0, 9)]),
        ([(0, 2), (10, 12)], (4, 6), [(0, 2), (4, 6), (10, 12)]),
        ([(0, 10)], (2, 3), [(0, 10)]),
    ],
)
def test_merge_span_keeps_spans_sorted_and_disjoint(
    spans: list[Span], add: Span, expected: list[Span]
) -> None:
    """Adding a range merges it with every span it overlaps or touches."""
    merge_span(spans, *add)
    assert spans == expected


# --- the world -----------------------------------------------------------------------------------


def test_world_is_deterministic_per_seed() -> None:
    """The same settings and seed give the same ids, names and lines; another seed differs."""
    settings = SimSettings(pipelines=4, restart_every_s=30.0, replace_on_restart=True, seed=3)

    def snapshot(seed: int) -> list[object]:
        world = World(SimSettings(**{**_fields(settings), "seed": seed}), 100.0, 1.8e9)
        return [
            (world.info(p), world.status(p, 250.0), world.logs(p, 250.0), world.pod_names(p, 250.0))
            for p in world.pipeline_ids
        ]

    assert snapshot(3) == snapshot(3)
    assert snapshot(3) != snapshot(4)


def _fields(settings: SimSettings) -> dict[str, Any]:
    return {name: getattr(settings, name) for name in SimSettings.__dataclass_fields__}


def test_world_is_lazy_even_after_a_million_seconds() -> None:
    """logs() and status() at now = 1e6 s cost the same as at the start (no history replayed)."""
    settings = SimSettings(pipelines=5000, rate=50.0, restart_every_s=60.0, replace_on_restart=True)
    world = World(settings, 0.0, 1.8e9)
    began = time.perf_counter()
    for pipeline_id in world.pipeline_ids[:200]:
        logs = world.logs(pipeline_id, 1e6)
        world.status(pipeline_id, 1e6)
    assert time.perf_counter() - began < 5.0  # ~0.1 s on a laptop; replaying would take hours
    assert len(logs) == 2
    assert all(len(tail_lines(text_)) == 100 for _, text_ in logs)


@pytest.mark.parametrize(
    ("style", "distinct"), [("realistic", None), ("unique", None), ("repetitive", 3)]
)
def test_line_styles_are_unique_or_repetitive(
    style: Literal["realistic", "unique", "repetitive"], distinct: int | None
) -> None:
    """Realistic and unique lines never repeat within a pod; repetitive ones use three lines."""
    world = World(SimSettings(line_style=style, rate=20.0, restart_every_s=30.0), 0.0, 1.8e9)
    pipeline_id = world.pipeline_ids[0]
    pod = world.pod_names(pipeline_id, 0.0)[0]
    lines = world.lines(pipeline_id, pod, 200.0)
    assert len(lines) > 2000
    assert len(set(lines)) == (len(lines) if distinct is None else distinct)


def test_history_is_lines_cut_at_each_restart() -> None:
    """history() numbers a pod's lines per incarnation; joined, it is lines()."""
    world = World(SimSettings(rate=5.0, restart_every_s=30.0, progress_bars=True), 0.0, 1.8e9)
    pipeline_id = world.pipeline_ids[0]
    pod = world.pod_names(pipeline_id, 0.0)[0]
    history = world.history(pipeline_id, pod, 100.0)
    assert [number for number, _ in history] == list(range(len(history)))
    assert len(history) >= 3
    assert [line for _, lines in history for line in lines] == world.lines(pipeline_id, pod, 100.0)
    for number, lines in history:
        assert lines == world.segment(pipeline_id, 0, number, 0, len(lines))


def test_realistic_lines_look_like_an_indexer_with_timestamps() -> None:
    """A realistic line starts with an RFC 3339 microsecond timestamp and a level."""
    world = World(SimSettings(), 0.0, 1.8e9)
    for line in world.lines(
        world.pipeline_ids[0], world.pod_names(world.pipeline_ids[0], 0)[0], 60
    ):
        assert re.match(
            r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z (INFO |DEBUG|WARN |ERROR) \w+: ", line
        )


def test_line_clock_tells_when_each_line_was_written() -> None:
    """Line i of an incarnation is in the tail from first + i * step on, and not a moment before."""
    world = World(SimSettings(pipelines=2, pods=2, rate=3.0, seed=5), start=100.0,
                  wall_at_start=1_000.0)
    pipeline_id = world.pipeline_ids[1]
    pod = world.windows(pipeline_id, 100.0)[1].pod
    first, step = world.line_clock(pipeline_id, pod, 0)
    assert step == pytest.approx(1 / world.rate(pipeline_id))
    for index in (0, 7, 40):
        written = first + index * step - 1_000.0 + 100.0  # wall to the world's monotonic clock
        assert world.windows(pipeline_id, written + 1e-6)[1].end == index + 1
        assert world.windows(pipeline_id, written - 1e-6)[1].end == index
    with pytest.raises(ValueError, match="not a pod"):
        world.line_clock(pipeline_id, "pipeline-other-x", 0)


def test_rate_skew_keeps_the_mean_rate() -> None:
    """Skewed per-pipeline rates average `rate`, with a few hot pipelines and a long cold tail."""
    world = World(SimSettings(pipelines=1000, rate=2.0, rate_skew=1.0), 0.0, 0.0)
    rates = sorted(world.rate(p) for p in world.pipeline_ids)
    assert sum(rates) / len(rates) == pytest.approx(2.0)
    assert rates[-1] > 100 * rates[0]
    flat = World(SimSettings(pipelines=10, rate=2.0), 0.0, 0.0)
    assert {flat.rate(p) for p in flat.pipeline_ids} == {2.0}


def test_pod_names_follow_kubernetes_generate_name() -> None:
    """Names are 'pipeline-' + uid cut to 58 characters plus 5 random characters, all distinct."""
    settings = SimSettings(pipelines=20, pods=3, restart_every_s=5.0, replace_on_restart=True)
    world = World(settings, 0.0, 0.0)
    names = [n for p in world.pipeline_ids for n in world.pod_names(p, 1000.0)]
    assert len(names) == len(set(names)) > 20 * 3 * 150
    for name in names[:500]:
        assert POD_NAME.fullmatch(name) and len(name) <= 63
        assert name[-5:] == text.encode_suffix(text.decode_suffix(name[-5:]) or 0)
    pipeline_id = world.pipeline_ids[0]
    assert world.lines(pipeline_id, "pipeline-not-a-pod-of-ours", 1000.0) == []


def test_settings_report_every_problem() -> None:
    """Invalid simulator settings raise one ValueError naming each bad field."""
    with pytest.raises(ValueError, match=r"pods.*rate.*window") as caught:
        SimSettings(pods=-1, rate=0.0, window=0)
    assert "pods" in str(caught.value)
    with pytest.raises(ValueError, match="rate_429"):
        FaultSettings(rate_429=1.5)


# --- the command line ----------------------------------------------------------------------------


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_simulate_arguments(parser)
    return parser.parse_args(argv)


def test_flags_become_settings() -> None:
    """Every simulate flag lands in SimSettings or FaultSettings."""
    ns = _parse(
        "--pipelines", "7", "--pods", "3", "--rate", "4", "--rate-skew", "1.1", "--window", "50",
        "--restart-every", "60", "--replace-on-restart", "--tail-error-seconds", "2",
        "--line-style", "unique", "--seed", "5", "--fault-429", "0.1", "--retry-after", "none",
        "--fault-5xx", "0.2", "--fault-slow", "0.3", "--slow-seconds", "9",
        "--fault-malformed", "0.4", "--fault-envelope-error", "0.5", "--rate-limit", "20",
    )  # fmt: skip
    settings, faults = settings_from_args(ns)
    assert settings == SimSettings(
        pipelines=7, pods=3, rate=4.0, rate_skew=1.1, window=50, restart_every_s=60.0,
        replace_on_restart=True, tail_error_s=2.0, line_style="unique", seed=5,
    )  # fmt: skip
    assert faults == FaultSettings(
        rate_429=0.1, retry_after_s=None, rate_5xx=0.2, rate_slow=0.3, slow_s=9.0,
        rate_malformed=0.4, rate_envelope_error=0.5, rate_limit_rps=20.0, seed=5,
    )  # fmt: skip
    assert (ns.host, ns.port, ns.key) == ("127.0.0.1", 8080, "sim-key")
    with pytest.raises(ValueError, match=r"pipelines.*rate_5xx"):
        settings_from_args(_parse("--pipelines", "-1", "--fault-5xx", "2"))


async def test_serve_listens_on_a_free_port_until_cancelled() -> None:
    """serve() with port 0 reports its URL once listening and answers real requests."""
    urls: list[str] = []
    ready = anyio.Event()

    def on_ready(url: str) -> None:
        urls.append(url)
        ready.set()

    async with anyio.create_task_group() as group:
        group.start_soon(
            lambda: serve(
                SimSettings(pipelines=2), FaultSettings(), host="127.0.0.1", port=0,
                key=KEY, clock=FakeClock(), ready=on_ready,
            )
        )  # fmt: skip
        await ready.wait()
        async with ClientSession() as session, session.get(urls[0] + PREFIX, headers=AUTH) as r:
            assert r.status == 200
            assert (await r.json())["data"]["pagination"]["total_count"] == 2
        group.cancel_scope.cancel()
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", urls[0])


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_simulate_command_prints_its_url_and_ends_cleanly_on_a_signal(signum: int) -> None:
    """`run_simulate` prints the URL and ids on stderr and exits 0 on Ctrl-C or SIGTERM."""
    code = (
        "import argparse, sys; from follower.simulator.cli import *; "
        "p = argparse.ArgumentParser(); add_simulate_arguments(p); "
        "sys.exit(run_simulate(p.parse_args(['--port', '0', '--pipelines', '3'])))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env
    )
    assert process.stderr is not None
    first = (await process.stderr.readline()).decode()
    assert re.match(r"simulator listening on http://127\.0\.0\.1:\d+", first), first
    process.send_signal(signum)
    rest = (await process.stderr.read()).decode()
    assert await process.wait() == 0
    ids = World(SimSettings(pipelines=3), 0.0, 0.0).pipeline_ids
    assert all(pipeline_id in rest for pipeline_id in ids)
    assert "Traceback" not in rest


async def test_slow_answer_to_a_client_that_gave_up_is_not_observed() -> None:
    """A slow answer whose client hung up meanwhile counts as client_gone, its lines unobserved."""
    clock = FakeClock()
    world = World(SimSettings(), clock.monotonic(), clock.wall())
    app = create_app(world, clock, KEY, FaultSettings(rate_slow=1.0, slow_s=5.0))
    runner = web.AppRunner(app)  # like serve(): handlers run on after a hang-up
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}{PREFIX}{world.pipeline_ids[0]}/logs/"
        clock.advance(10.0)
        async with ClientSession() as session, anyio.create_task_group() as group:
            group.start_soon(_fetch, session, url)
            await clock.wait_for_sleepers(1)
            group.cancel_scope.cancel()
        recorder = app[RECORDER]
        for _ in range(100):  # let the server read the hang-up (socket events, no time passes)
            await anyio.lowlevel.checkpoint()
        clock.advance(5.0)
        while not recorder.outcomes:
            await anyio.lowlevel.checkpoint()
        assert recorder.outcomes == {"client_gone": 1}
        assert recorder.observed_pods(world.pipeline_ids[0]) == []
    finally:
        await runner.cleanup()


async def _fetch(session: ClientSession, url: str) -> None:
    async with session.get(url, headers=AUTH) as response:
        await response.read()


def test_simulate_command_exits_3_when_the_port_is_taken(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A port already in use is exit code 3 with a message, not a traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert run_simulate(_parse("--port", str(port))) == 3
    assert "cannot listen on 127.0.0.1" in capsys.readouterr().err


def test_simulate_command_exits_2_on_bad_settings(capsys: pytest.CaptureFixture[str]) -> None:
    """Invalid flags are exit code 2 naming the problem, before anything listens."""
    assert run_simulate(_parse("--window", "0")) == 2
    assert run_simulate(_parse("--key", "cqt_abc")) == 2
    err = capsys.readouterr().err
    assert "window must be >= 1" in err
    assert "cqt_" in err
