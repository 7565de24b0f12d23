"""`follower demo`: the embedded simulator and the real follower, in one process.

The follower finds the simulated pipelines through the list endpoint, as it would on the real API,
and follows them with the same assembly as `follower run`; only the sink differs (readable text by
default).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Literal

import anyio

from follower.api.client import create_session
from follower.api.secret import ServiceKey
from follower.clock import Clock
from follower.config import Config
from follower.engine.poller import PollStats
from follower.engine.service import follow, make_api
from follower.simulator.cli import serve
from follower.simulator.faults import FaultSettings
from follower.simulator.world import SimSettings
from follower.sinks import Sink
from follower.sinks.jsonlines import JsonLinesSink
from follower.sinks.terminal import TerminalSink

DEMO_KEY = "demo-service-key"

# Busy enough to watch, with a restart now and then so gaps, pod changes and tail errors show up,
# and the edges of real pods: lines caught half-written, progress bars, answers missing a pod.
DEMO_WORLD = SimSettings(
    pods=2,
    rate=1.5,
    window=60,
    restart_every_s=40.0,
    tail_error_s=3.0,
    backlog_s=20.0,  # the pods were already running: the first tails are not empty
    line_style="realistic",
    open_lines=True,
    progress_bars=True,
    vanish_ratio=0.05,
)


async def _list_all(config: Config, clock: Clock) -> dict[str, str]:
    """The simulated pipelines, id -> name, found through the list endpoint."""
    async with create_session() as session:
        page = await make_api(config, session, clock).list_page(1, 100)
    return {item.id: item.name for item in page.items}


async def demo(
    stop: anyio.Event,
    *,
    pipelines: int,
    output: Literal["text", "json"],
    clock: Clock,
) -> PollStats:
    """Serve a simulated API on a free loopback port and follow all of its pipelines."""
    world = dataclasses.replace(DEMO_WORLD, pipelines=pipelines)
    ready = anyio.Event()
    urls: list[str] = []

    def on_ready(url: str) -> None:
        urls.append(url)
        ready.set()

    async with anyio.create_task_group() as group:
        group.start_soon(
            lambda: serve(
                world, FaultSettings(), host="127.0.0.1", port=0, key=DEMO_KEY, clock=clock,
                ready=on_ready,
            )
        )
        await ready.wait()
        config = Config(key=ServiceKey(DEMO_KEY), pipelines=(), base_url=urls[0], interval_s=1.0)
        names = await _list_all(config, clock)
        print(f"demo: simulator on {urls[0]}, following {len(names)} pipelines "
              "(Ctrl-C to stop)", file=sys.stderr)
        config = dataclasses.replace(config, pipelines=tuple(names))
        sink: Sink
        if output == "text":
            sink = TerminalSink(
                sys.stdout, environ=os.environ, is_tty=sys.stdout.isatty(), labels=names
            )
        else:
            sink = JsonLinesSink(sys.stdout.buffer)
        stats = await follow(config, sink=sink, clock=clock, stop=stop)
        group.cancel_scope.cancel()
    return stats
