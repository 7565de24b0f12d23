"""Throughput: the follower's CPU per 1,000 polls and per 100,000 lines, against a bare client.

    PYTHONPATH=. python bench/throughput.py [--pipelines 100] [--polls 20000] [--new-per-poll 50]

A server process (this script with `--serve`) answers logs requests from the simulator's world:
the k-th request for pipeline p gets p's tail at world time t0 + k * step, so every request shows
`--new-per-poll` new lines in a `--window`-line tail, whatever order or pace the client keeps, and
two clients that make the same number of requests per pipeline receive byte-identical answers.
The server runs in its own process, so its CPU is not counted here.

Measured in this process with `time.process_time()` (user + system CPU):
- follower: the real `follow()` assembly (client, dispatcher, poller, tracker, differ, events),
  fixed 0.05 s interval and a budget far above what the CPU allows, so it polls as fast as it can;
  its sink encodes every event to JSON Lines and writes it to /dev/null (`JsonLinesSink`).
- simple: a simple correct follower (`run_simple`) on the floor's requests: it splits each tail,
  diffs it against the pod's previous one by suffix and prefix, and writes a JSON event per new
  line to /dev/null, and does nothing else (whole runs only): a yardstick for what emitting the
  same lines costs beyond the floor, without the daemon's duties (limits, partial lines, tail
  errors, ids that survive restarts, checkpoints, metrics, scheduling).
- floor: a bare client on the same session settings (`create_session`, same headers, same number
  of requests in flight) that fetches the same answers, per pipeline as many as the follower
  did, and parses each with `orjson.loads`, and does nothing else.

With `--steady`, the follower's rounds count only the polls after every pod was first seen:
a first poll emits a whole tail (200 lines a pod), and at 1,000 pipelines the first thousand
polls of a round are a fifth of it, so the whole-run figure mixes a start-up cost into the cost
of following. Comparing `--new-per-poll 50` with `--new-per-poll 1` under `--steady` splits the
steady cost into a part per poll and a part per line.

The rounds alternate follower, floor and simple follower; the best round of each is reported
(the one least disturbed by other load on the machine). Exits 1 when the follower needs more than
`--max-ratio` (1.5) times the floor's CPU for the same answers.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import functools
import io
import logging
import os
import pstats
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import aiohttp
import anyio
import anyio.to_thread
import orjson
import structlog
from aiohttp import hdrs, web

from follower.api.client import create_session
from follower.api.parse import parse_logs_body
from follower.api.secret import ServiceKey
from follower.api.settings import HttpSettings
from follower.clock import SystemClock
from follower.config import Config
from follower.core.budget import BudgetSettings
from follower.core.events import Event
from follower.core.model import LogsSnapshot, format_ts
from follower.core.schedule import ScheduleSettings
from follower.core.tail_errors import TailErrorMatcher
from follower.core.tracker import PipelineTracker
from follower.engine.runner import Runner
from follower.engine.service import follow
from follower.simulator import wire
from follower.simulator.app import PREFIX
from follower.simulator.world import SimSettings, World
from follower.sinks.jsonlines import JsonLinesSink, encode

KEY = "throughput-bench-key"
ROOT = Path(__file__).resolve().parent.parent


# --- the server process ------------------------------------------------------------------------


def world_settings(ns: argparse.Namespace) -> SimSettings:
    return SimSettings(
        pipelines=ns.pipelines, pods=ns.pods, rate=ns.rate, window=ns.window,
        line_style="realistic", seed=ns.seed,
    )


def serve(ns: argparse.Namespace) -> None:
    """Answer the k-th logs request of each pipeline with its tail at t0 + k * step."""
    world = World(world_settings(ns), start=0.0, wall_at_start=1_790_000_000.0)
    step = ns.new_per_poll / ns.rate
    t0 = ns.window / ns.rate + 1.0  # tails already full at the first request
    counts = dict.fromkeys(world.pipeline_ids, 0)

    async def logs(request: web.Request) -> web.Response:
        pipeline_id = request.match_info["pipeline_id"]
        k = counts[pipeline_id]
        counts[pipeline_id] = k + 1
        when = t0 + k * step
        pods = [{"pod": pod, "logs": text} for pod, text in world.logs(pipeline_id, when)]
        body = wire.dumps(wire.ok({"uid": world.uid(pipeline_id), "pods": pods}))
        return web.Response(body=body, content_type="application/json")

    async def get_counts(_: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(counts), content_type="application/json")

    async def reset(_: web.Request) -> web.Response:
        for pipeline_id in counts:
            counts[pipeline_id] = 0
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get(PREFIX + "{pipeline_id}/logs/", logs)
    app.router.add_get("/counts", get_counts)
    app.router.add_post("/reset", reset)

    async def main() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        print(f"PORT {runner.addresses[0][1]}", flush=True)
        await anyio.sleep_forever()

    anyio.run(main)


@contextmanager
def answer_server(*flags: str) -> Iterator[str]:
    """This script's answer server (`--serve` and `flags`) in a child process; yields its base
    URL. bench/memory.py uses it too."""
    args = [sys.executable, str(Path(__file__).resolve()), "--serve", *flags]
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, PYTHONPATH=path)
    process = subprocess.Popen(args, stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"server did not start: {line!r}")
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def server_process(ns: argparse.Namespace) -> contextlib.AbstractContextManager[str]:
    """The answer server for this run's settings."""
    return answer_server(
        "--pipelines", str(ns.pipelines), "--pods", str(ns.pods), "--rate", str(ns.rate),
        "--window", str(ns.window), "--new-per-poll", str(ns.new_per_poll), "--seed", str(ns.seed),
    )


# --- the two clients ---------------------------------------------------------------------------


@dataclass
class Round:
    """One measured run of a client."""

    cpu_s: float
    wall_s: float
    polls: int
    lines: int = 0
    events: int = 0
    bytes_in: int = 0


async def control(base_url: str, method: str, path: str) -> bytes:
    async with aiohttp.ClientSession() as session, session.request(
        method, base_url + path
    ) as response:
        return await response.read()


def quiet_logs() -> None:
    structlog.configure(
        processors=[structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


async def run_follower(
    base_url: str, pipeline_ids: list[str], polls: int, in_flight: int,
    profile: cProfile.Profile | None = None, *, warm_pods: int = 0,
) -> Round:
    """Follow every pipeline as fast as the CPU allows until `polls` logs polls succeeded.

    With `warm_pods`, the round counts only the `polls` polls after `warm_pods` pods were first
    seen (bench/scaling.py: past every pipeline's first poll, which emits a whole tail)."""
    await control(base_url, "POST", "/reset")
    config = Config(
        key=ServiceKey(KEY), pipelines=tuple(pipeline_ids), base_url=base_url,
        interval_s=0.05, schedule=ScheduleSettings(floor_s=0.05),
        budget=BudgetSettings(10_000.0, 100_000), http=HttpSettings(max_in_flight=in_flight),
    )
    stop = anyio.Event()
    runners: list[Runner] = []
    clock = SystemClock()

    mark: list[tuple[float, float, int, int, int]] = []  # (cpu, wall, polls, lines, events)
    # The watcher's own wake-ups are CPU of this process, charged to the follower: at 100 a
    # second they cost about 2% of a steady round, at 20 a second well under 1%.
    look_every_s = 0.05

    async def watch() -> None:
        while not runners or runners[0].stats.events.get("pod_added", 0) < warm_pods:
            await clock.sleep(look_every_s)
        stats = runners[0].stats
        if warm_pods:
            mark.append((time.process_time(), time.perf_counter(), stats.polls_ok,
                         stats.events.get("log", 0), sum(stats.events.values())))
            if profile is not None:  # a steady round's profile shows the steady polls only
                profile.enable()
        counted_from = stats.polls_ok
        while stats.polls_ok < counted_from + polls:
            await clock.sleep(look_every_s)
        stop.set()

    with open(os.devnull, "wb") as devnull:  # noqa: ASYNC230 - /dev/null does not block
        sink = JsonLinesSink(devnull)
        async with anyio.create_task_group() as group:
            group.start_soon(watch)
            if profile is not None and not warm_pods:
                profile.enable()
            wall, cpu = time.perf_counter(), time.process_time()
            started_cpu, started_wall = cpu, wall
            stats = await follow(
                config, sink=sink, clock=clock, stop=stop, rng=random.Random(1),
                on_runner=runners.append,
            )
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            if profile is not None:
                profile.disable()
    if stats.polls_failed:
        raise RuntimeError(f"{stats.polls_failed} polls failed")
    total = Round(cpu, wall, stats.polls_ok, stats.events.get("log", 0), sum(stats.events.values()))
    if not mark:
        return total
    cpu_at, wall_at, polls_at, lines_at, events_at = mark[0]
    return Round(
        total.cpu_s - (cpu_at - started_cpu), total.wall_s - (wall_at - started_wall),
        total.polls - polls_at, total.lines - lines_at, total.events - events_at,
    )


def request_order(counts: dict[str, int]) -> list[str]:
    """The pipelines to ask, `counts[p]` times each, round robin (so each one's requests are
    spread over the run), last first: a client pops from the end."""
    order: list[str] = []
    # Only the pipelines the follower polled: a zero count would never run down to zero.
    left = {pipeline_id: count for pipeline_id, count in counts.items() if count > 0}
    while left:
        for pipeline_id in list(left):
            order.append(pipeline_id)
            left[pipeline_id] -= 1
            if not left[pipeline_id]:
                del left[pipeline_id]
    order.reverse()
    return order


async def fetch_each(
    base_url: str, counts: dict[str, int], in_flight: int, answered: Callable[[str, bytes], None]
) -> tuple[float, float]:
    """Fetch each pipeline's answers as often as `counts` says, `in_flight` at a time, and give
    each body to `answered` with its pipeline id; the CPU and wall seconds this took (the two
    clients below share it, so they differ only in what they do with an answer)."""
    await control(base_url, "POST", "/reset")
    root = f"{base_url}{PREFIX}"
    order = request_order(counts)
    headers = {hdrs.AUTHORIZATION: f"Bearer {KEY}", hdrs.ACCEPT: "application/json"}
    timeout = aiohttp.ClientTimeout(total=10.0)
    session = create_session()
    wall, cpu = time.perf_counter(), time.process_time()
    try:

        async def worker() -> None:
            while order:
                pipeline_id = order.pop()
                async with session.get(
                    f"{root}{pipeline_id}/logs/", headers=headers, timeout=timeout,
                    allow_redirects=False,
                ) as response:
                    body = await response.read()
                answered(pipeline_id, body)

        async with anyio.create_task_group() as group:
            for _ in range(in_flight):
                group.start_soon(worker)
    finally:
        await session.close()
    return time.process_time() - cpu, time.perf_counter() - wall


async def run_floor(base_url: str, counts: dict[str, int], in_flight: int) -> Round:
    """Fetch each pipeline's answers as often as `counts` says and parse them; nothing else."""
    received = [0]

    def answered(_: str, body: bytes) -> None:
        orjson.loads(body)
        received[0] += len(body)

    cpu, wall = await fetch_each(base_url, counts, in_flight, answered)
    return Round(cpu, wall, sum(counts.values()), bytes_in=received[0])


def new_lines(old: list[str], new: list[str]) -> tuple[list[str], bool]:
    """The simple follower's differ: the lines of `new` after its longest start that is an end
    of `old` (the last old line found from the end, then the lines before it compared), and
    whether nothing lined up (a gap)."""
    if not old:
        return new, False
    last = old[-1]
    for index in range(len(new) - 1, -1, -1):
        if new[index] == last and index < len(old) and new[:index] == old[-index - 1 : -1]:
            return new[index + 1 :], False
    return new, True


class SimpleFollower:
    """A simple correct follower's work on one answer: per pod, split the tail into lines, diff
    them against the previous tail's (`new_lines`), and write each new line as a JSON event
    (`ts`, `event`, `pipeline_id`, `pod`, `seq`, `message`, `id`), and a `gap` where nothing
    lined up. No checkpoints, limits, partial lines, tail errors, metrics or scheduling: a
    yardstick for what emitting the same lines costs."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._clock = SystemClock()
        self._tails: dict[tuple[str, str], list[str]] = {}
        self._seqs: dict[tuple[str, str], int] = {}
        self.lines = 0

    def answered(self, pipeline_id: str, body: bytes) -> None:
        ts = format_ts(self._clock.wall())
        out: list[bytes] = []
        for pod in orjson.loads(body)["data"]["pods"]:
            name = pod["pod"]
            key = (pipeline_id, name)
            lines = pod["logs"].split("\n")
            if lines and not lines[-1]:
                lines.pop()
            added, gap = new_lines(self._tails.get(key, []), lines)
            self._tails[key] = lines
            seq = self._seqs.get(key, 0)
            if gap:
                out.append(orjson.dumps({
                    "ts": ts, "event": "gap", "pipeline_id": pipeline_id, "pod": name,
                    "after_seq": seq,
                }, option=orjson.OPT_APPEND_NEWLINE))
            for line in added:
                seq += 1
                out.append(orjson.dumps({
                    "ts": ts, "event": "log", "pipeline_id": pipeline_id, "pod": name,
                    "seq": seq, "message": line, "id": f"{pipeline_id}/{name}/{seq}",
                }, option=orjson.OPT_APPEND_NEWLINE))
            self._seqs[key] = seq
            self.lines += len(added)
        self._out.write(b"".join(out))


async def run_simple(base_url: str, counts: dict[str, int], in_flight: int) -> Round:
    """The floor's requests, each answer followed by a `SimpleFollower` writing to /dev/null."""
    with open(os.devnull, "wb") as devnull:  # noqa: ASYNC230 - /dev/null does not block
        simple = SimpleFollower(devnull)
        cpu, wall = await fetch_each(base_url, counts, in_flight, simple.answered)
    return Round(cpu, wall, sum(counts.values()), lines=simple.lines)


# --- where the follower's CPU goes ---------------------------------------------------------------


def answer_bodies(ns: argparse.Namespace, pipelines: int, answers: int) -> dict[str, list[bytes]]:
    """The bodies the server sends: the first `answers` of the first `pipelines` pipelines."""
    world = World(world_settings(ns), start=0.0, wall_at_start=1_790_000_000.0)
    step = ns.new_per_poll / ns.rate
    t0 = ns.window / ns.rate + 1.0
    bodies = {}
    for pipeline_id in world.pipeline_ids[:pipelines]:
        bodies[pipeline_id] = [
            wire.dumps(wire.ok({
                "uid": world.uid(pipeline_id),
                "pods": [{"pod": pod, "logs": text}
                         for pod, text in world.logs(pipeline_id, t0 + k * step)],
            }))
            for k in range(answers)
        ]
    return bodies


def cpu_of(function: Callable[[], object], repeat: int = 3) -> float:
    """CPU seconds of the fastest of `repeat` calls (the least disturbed by other load)."""
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        function()
        best = min(best, time.process_time() - started)
    return best


def breakdown(ns: argparse.Namespace, pipelines: int = 10, answers: int = 100) -> dict[str, float]:
    """CPU seconds per poll of the follower's pure steps, timed apart on the same answers.

    Each pipeline's answers go through the steps in order, as in a real run (the first answer of
    a pipeline emits its whole tail, the others `--new-per-poll` lines).
    """
    bodies = answer_bodies(ns, pipelines, answers)
    polls = pipelines * answers
    matcher = TailErrorMatcher()
    snapshots: dict[str, list[LogsSnapshot]] = {}
    batches: list[list[Event]] = []
    steps: dict[str, float] = {}
    steps["orjson.loads"] = cpu_of(
        lambda: [orjson.loads(body) for seq in bodies.values() for body in seq]
    )

    key = ServiceKey(KEY)

    def parse() -> None:  # masking the key in every string, as the client does
        for pipeline_id, seq in bodies.items():
            snapshots[pipeline_id] = [parse_logs_body(pipeline_id, b, mask=key) for b in seq]

    def apply() -> None:
        batches.clear()
        for pipeline_id, seq in snapshots.items():
            tracker = PipelineTracker(pipeline_id, "start", matcher)
            for index, snapshot in enumerate(seq):
                batches.append(tracker.apply(snapshot, 1_790_000_000.0 + index).events)

    steps["parse"] = cpu_of(parse)
    steps["apply"] = cpu_of(apply)
    steps["encode"] = cpu_of(lambda: [encode(batch) for batch in batches])

    async def write_all() -> None:
        with open(os.devnull, "wb") as devnull:  # noqa: ASYNC230 - /dev/null does not block
            sink = JsonLinesSink(devnull)
            for batch in batches:
                await sink.write(batch)

    async def hops() -> None:
        for _ in range(polls):
            await anyio.to_thread.run_sync(int)

    steps["write"] = cpu_of(lambda: anyio.run(write_all))
    steps["hop"] = cpu_of(lambda: anyio.run(hops))
    return {name: seconds / polls for name, seconds in steps.items()}


# --- main --------------------------------------------------------------------------------------


def add_answer_arguments(parser: argparse.ArgumentParser, *, pods: int) -> None:
    """The flags of the answers the server gives (`world_settings`, `server_process`) and of
    how many requests are in flight; bench/scaling.py takes them too."""
    parser.add_argument("--pods", type=int, default=pods, help=f"pods per pipeline ({pods})")
    parser.add_argument("--rate", type=float, default=10.0, help="lines/s per pod (10)")
    parser.add_argument("--window", type=int, default=200, help="tail lines (200)")
    parser.add_argument("--new-per-poll", type=int, default=50,
                        help="new lines per pod per answer (50)")
    parser.add_argument("--in-flight", type=int, default=8, help="requests in flight (8)")
    parser.add_argument("--seed", type=int, default=1)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipelines", type=int, default=100, help="default 100")
    add_answer_arguments(parser, pods=1)
    parser.add_argument("--polls", type=int, default=10_000, help="polls per round (10,000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each client (3)")
    parser.add_argument("--max-ratio", type=float, default=1.5, help="target (1.5)")
    parser.add_argument("--profile", action="store_true",
                        help="profile one extra follower round (with --steady, its steady polls "
                             "only) and print the top entries")
    parser.add_argument("--steady", action="store_true",
                        help="count the follower's polls after every pod's first poll only")
    parser.add_argument("--uvloop", action="store_true",
                        help="run both clients on uvloop (anyio's use_uvloop)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args()


def measure(
    ns: argparse.Namespace,
) -> tuple[Round, Round, Round | None, cProfile.Profile | None]:
    """Alternate follower, floor and simple follower rounds; return the best of each (the
    simple one only for a whole run: it counts its first polls too) and a profile if asked."""
    pipeline_ids = World(world_settings(ns), 0.0, 0.0).pipeline_ids
    follower_rounds: list[Round] = []
    floor_rounds: list[Round] = []
    simple_rounds: list[Round] = []
    profile = None
    options = {"use_uvloop": ns.uvloop}
    follower_round = functools.partial(
        run_follower, warm_pods=ns.pipelines * ns.pods if ns.steady else 0
    )
    with server_process(ns) as base_url:
        for index in range(ns.rounds):
            f = anyio.run(follower_round, base_url, pipeline_ids, ns.polls, ns.in_flight,
                          backend_options=options)
            counts = orjson.loads(anyio.run(control, base_url, "GET", "/counts"))
            b = anyio.run(run_floor, base_url, counts, ns.in_flight, backend_options=options)
            follower_rounds.append(f)
            floor_rounds.append(b)
            simple = ""
            if not ns.steady:
                c = anyio.run(run_simple, base_url, counts, ns.in_flight, backend_options=options)
                simple_rounds.append(c)
                simple = f"; simple {c.cpu_s:.2f} s CPU ({c.wall_s:.1f} s wall)"
            print(f"  round {index + 1}: follower {f.cpu_s:.2f} s CPU for {f.polls:,} polls "
                  f"({f.wall_s:.1f} s wall); floor {b.cpu_s:.2f} s CPU for {b.polls:,} "
                  f"({b.wall_s:.1f} s wall){simple}", flush=True)
        if ns.profile:
            profile = cProfile.Profile()
            anyio.run(follower_round, base_url, pipeline_ids, ns.polls, ns.in_flight, profile,
                      backend_options=options)
    best_f = min(follower_rounds, key=lambda r: r.cpu_s / r.polls)
    best_b = min(floor_rounds, key=lambda r: r.cpu_s / r.polls)
    best_c = min(simple_rounds, key=lambda r: r.cpu_s / r.polls) if simple_rounds else None
    return best_f, best_b, best_c, profile


def print_profile(profile: cProfile.Profile) -> None:
    for order, count in (("tottime", 25), ("cumulative", 40)):
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats(order).print_stats(count)
        print(f"\nprofile of one extra follower round, by {order} (top {count}):")
        print(out.getvalue())


def main() -> int:
    ns = parse_args()
    if ns.serve:
        serve(ns)
        return 0
    quiet_logs()
    print(f"throughput bench: {ns.pipelines} pipelines x {ns.pods} pod(s), {ns.window}-line "
          f"tails of realistic lines, {ns.new_per_poll} new lines per pod per answer, "
          f"{ns.in_flight} requests in flight, {ns.polls:,} polls per round, best of "
          f"{ns.rounds} rounds{', steady (after every first poll)' if ns.steady else ''}; "
          f"server in another process; CPU = time.process_time() of this "
          f"process; {os.cpu_count()} CPUs; loop {'uvloop' if ns.uvloop else 'asyncio'}\n")
    best_f, best_b, best_c, profile = measure(ns)
    f_per_poll = best_f.cpu_s / best_f.polls
    b_per_poll = best_b.cpu_s / best_b.polls
    lines_per_poll = best_f.lines / best_f.polls
    ratio = f_per_poll / b_per_poll
    print()
    print(f"  {'':44}{'follower':>12}{'floor':>12}")
    print(f"  {'CPU s per 1,000 polls':44}{f_per_poll * 1e3:12.3f}{b_per_poll * 1e3:12.3f}")
    if lines_per_poll:  # none with --new-per-poll 0 under --steady: the engine on its own
        print(f"  {'CPU s per 100,000 emitted lines':44}"
              f"{f_per_poll / lines_per_poll * 1e5:12.3f}"
              f"{b_per_poll / lines_per_poll * 1e5:12.3f}")
    print(f"  {'polls per CPU second':44}{1 / f_per_poll:12,.0f}{1 / b_per_poll:12,.0f}")
    print(f"  {'lines emitted per poll':44}{lines_per_poll:12.1f}{'':>12}")
    print(f"  {'events per poll (all kinds)':44}{best_f.events / best_f.polls:12.1f}{'':>12}")
    print(f"  {'answer bytes per poll':44}{'':>12}{best_b.bytes_in / best_b.polls:12,.0f}")
    print(f"  {'follower / floor CPU':44}{ratio:12.2f}  (target <= {ns.max_ratio:g})")
    if best_c is not None:
        c_per_poll = best_c.cpu_s / best_c.polls
        print("\n  the simple follower (split, suffix/prefix diff, a JSON event per line; none of")
        print("  the daemon's duties), on the floor's requests:")
        print(f"  {'CPU s per 1,000 polls':44}{c_per_poll * 1e3:12.3f}")
        print(f"  {'lines emitted per poll':44}{best_c.lines / best_c.polls:12.1f}")
        print(f"  {'simple / floor CPU':44}{c_per_poll / b_per_poll:12.2f}")
        print(f"  {'follower / simple CPU':44}{f_per_poll / c_per_poll:12.2f}")
    steps = breakdown(ns)
    rest = f_per_poll - steps["parse"] - steps["apply"] - steps["write"]
    rows = [
        ("follower, measured end to end", f_per_poll),
        ("  parse_logs_body (orjson, checks, masking)", steps["parse"]),
        ("  tracker.apply (split, diff, events)", steps["apply"]),
        ("  JsonLinesSink.write", steps["write"]),
        ("    of which encode (template or to_wire)", steps["encode"]),
        ("    of which to_thread.run_sync (empty)", steps["hop"]),
        ("  rest: HTTP, dispatcher, plan, event loop", rest),
        ("floor, measured end to end", b_per_poll),
        ("  orjson.loads", steps["orjson.loads"]),
        ("  rest: HTTP, event loop", b_per_poll - steps["orjson.loads"]),
    ]
    print("\n  where the CPU goes, us per poll (pure steps timed apart on the same answers,")
    print("  best of 3; 'rest' is the end-to-end figure minus the steps):")
    for name, seconds in rows:
        print(f"    {name:46}{seconds * 1e6:8.0f}")
    if profile is not None:
        print_profile(profile)
    met = ratio <= ns.max_ratio
    print("result:", "target met" if met else
          f"MISSED: follower uses {ratio:.2f}x the floor's CPU (target {ns.max_ratio:g}x)")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
