"""How fast events leave the follower: encoding, stdout (to /dev/null and to a pipe) and files.

Run from the project root: `PYTHONPATH=. python bench/sink.py`. Prints three tables: the cost of
encoding one event (to_wire() and orjson against the stdlib's json.dumps of the same dicts, and
the sinks' encoder `pieces()`, which writes plain log lines from a template), events per second
through the stdout sink, and events per second through the file sink for each fsync mode and
layout, with rotation. Batches are one poll's worth of events (200) and figures
are the best of several runs, the run least disturbed by the rest of the machine.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import BinaryIO

import anyio
import orjson

from follower.clock import SystemClock
from follower.core.events import Event, GapEvent, LogEvent, TailErrorEvent
from follower.core.model import DEFAULT_MAX_LINE_BYTES
from follower.sinks.encoding import pieces
from follower.sinks.files import FileSink, FsyncMode, Layout
from follower.sinks.jsonlines import JsonLinesSink

REPEAT = 5
BATCH = 200
RANDOM = random.Random(20261128)
LEVELS = ("DEBUG", "INFO", "INFO", "INFO", "WARN", "ERROR")
PIPELINES = [f"pipe_{RANDOM.getrandbits(100):025x}" for _ in range(8)]


def log_line(index: int) -> str:
    """A realistic log line of about 100 bytes."""
    return (
        f"2026-11-28T12:{index // 60000 % 60:02d}:{index // 1000 % 60:02d}.{index % 1000:03d}Z "
        f"{RANDOM.choice(LEVELS):5} [transform-worker-{RANDOM.randrange(8)}] processed batch "
        f"{index} in {RANDOM.randrange(1, 999)} ms rows={RANDOM.randrange(1, 5000)} status=ok"
    )


def make_events(count: int) -> list[Event]:
    """Mostly log lines over 8 pipelines, one poll's timestamp per batch, a lifecycle event now
    and then (what a busy follower writes)."""
    events: list[Event] = []
    for index in range(count):
        pipeline_id = PIPELINES[index % len(PIPELINES)]
        ts = 1_800_000_000.0 + index // BATCH
        pod = f"pipeline-{pipeline_id[5:17]}-worker-{index % 3}"
        if index % 500 == 499:
            events.append(GapEvent(ts, pipeline_id, pod, index, "no_overlap"))
        elif index % 700 == 699:
            events.append(TailErrorEvent(ts, pipeline_id, pod, "container not found", 5.0))
        else:
            events.append(LogEvent(ts, pipeline_id, pod, index + 1, log_line(index)))
    return events


def best(function: Callable[[], object]) -> float:
    """Seconds of the fastest of REPEAT runs of `function`."""
    fastest = float("inf")
    for _ in range(REPEAT):
        started = time.perf_counter()
        function()
        fastest = min(fastest, time.perf_counter() - started)
    return fastest


# --- encoding ------------------------------------------------------------------------------------


def bench_encoding(events: Sequence[Event]) -> None:
    """ns per event: to_wire(), then orjson vs json.dumps of the same dicts."""
    wires = [event.to_wire() for event in events]
    average = sum(len(orjson.dumps(w)) + 1 for w in wires) // len(wires)
    print(f"Encoding one event ({len(events)} events, {average} bytes a line on average)")
    rows = {
        "to_wire()": lambda: [event.to_wire() for event in events],
        "orjson.dumps(dict)": lambda: [orjson.dumps(w) for w in wires],
        "json.dumps(dict).encode()": lambda: [
            json.dumps(w, ensure_ascii=False, separators=(",", ":")).encode() for w in wires
        ],
        "orjson.dumps(to_wire())": lambda: [orjson.dumps(e.to_wire()) for e in events],
        "json.dumps(to_wire())": lambda: [
            json.dumps(e.to_wire(), ensure_ascii=False, separators=(",", ":")).encode()
            for e in events
        ],
        "pieces() (sinks' encoder)": lambda: list(pieces(events, DEFAULT_MAX_LINE_BYTES)),
    }
    seconds = {name: best(function) for name, function in rows.items()}
    print(f"  {'step':28} {'ns/event':>9} {'events/s':>12}")
    for name, took in seconds.items():
        print(f"  {name:28} {took / len(events) * 1e9:9.0f} {len(events) / took:12,.0f}")
    ratio = seconds["json.dumps(dict).encode()"] / seconds["orjson.dumps(dict)"]
    print(f"  orjson is {ratio:.1f}x json.dumps on the same dicts; "
          f"{seconds['json.dumps(to_wire())'] / seconds['orjson.dumps(to_wire())']:.1f}x "
          "with to_wire() included")
    print()


# --- sinks ---------------------------------------------------------------------------------------


async def write_all(
    write: Callable[[Sequence[Event]], Awaitable[None]], events: Sequence[Event]
) -> None:
    for start in range(0, len(events), BATCH):
        await write(events[start : start + BATCH])


def sink_rate(make: Callable[[], tuple[Callable[[Sequence[Event]], Awaitable[None]],
                                        Callable[[], Awaitable[None]]]],
              events: Sequence[Event]) -> float:
    """Events per second through the sink `make()` returns (write, close), best of REPEAT."""

    def once() -> None:
        write, close = make()

        async def run() -> None:
            await write_all(write, events)
            await close()

        anyio.run(run)

    return len(events) / best(once)


def bench_stdout(events: Sequence[Event]) -> None:
    """The stdout sink into /dev/null, and into a pipe that `cat` drains."""
    print(f"stdout sink (JsonLinesSink), batches of {BATCH}")
    with open(os.devnull, "wb") as devnull:
        rate = sink_rate(lambda: _json_sink(devnull), events)
    print(f"  {'/dev/null':28} {rate:12,.0f} events/s")
    reader = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    assert reader.stdin is not None
    try:
        rate = sink_rate(lambda: _json_sink(reader.stdin), events)  # type: ignore[arg-type]
    finally:
        reader.stdin.close()
        reader.wait()
    print(f"  {'pipe to cat >/dev/null':28} {rate:12,.0f} events/s")
    print()


def _json_sink(
    stream: BinaryIO,
) -> tuple[Callable[[Sequence[Event]], Awaitable[None]], Callable[[], Awaitable[None]]]:
    sink = JsonLinesSink(stream)
    return sink.write, sink.aclose


def bench_files(events: Sequence[Event]) -> None:
    """The file sink into a temporary folder: each fsync mode, both layouts, rotating at 16 MiB."""
    total = sum(len(orjson.dumps(e.to_wire())) + 1 for e in events)
    print(f"file sink (FileSink), batches of {BATCH}, {total / 2**20:.0f} MiB per run, "
          "rotation at 16 MiB, max_files 5")
    print(f"  {'fsync':9} {'layout':13} {'events/s':>12} {'MiB/s':>8}")
    for fsync, layout in (
        ("never", "single"), ("never", "per-pipeline"), ("interval", "single"),
        ("interval", "per-pipeline"), ("always", "single"), ("always", "per-pipeline"),
    ):
        with tempfile.TemporaryDirectory() as folder:

            def make(
                fsync: FsyncMode = fsync, layout: Layout = layout, folder: str = folder
            ) -> tuple[Callable[[Sequence[Event]], Awaitable[None]], Callable[[], Awaitable[None]]]:
                sink = FileSink(
                    Path(folder), clock=SystemClock(), layout=layout, fsync=fsync,
                    max_bytes=16 * 2**20, max_files=5,
                )
                return sink.write, sink.aclose

            rate = sink_rate(make, events)
        print(f"  {fsync:9} {layout:13} {rate:12,.0f} {rate * total / len(events) / 2**20:8.1f}")
    print()


def main() -> None:
    events = make_events(100_000)
    print(f"Python {sys.version.split()[0]}, orjson {orjson.__version__}, {os.cpu_count()} CPUs\n")
    bench_encoding(events[:20_000])
    bench_stdout(events)
    bench_files(events)


if __name__ == "__main__":
    main()
