"""Commands for people at a terminal: `follower tail` (like stern) and `follower pipelines`.

Both reuse the daemon's pieces: the same configuration rules, client, runner and events; only
the presentation differs (`follower.sinks.terminal`).
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys

import anyio

from follower.client import PipelineApi, create_session
from follower.clock import Clock
from follower.config import Config
from follower.discovery import list_all
from follower.errors import ApiError
from follower.model import PIPELINE_ID_RE, PipelineInfo, PipelineStatus
from follower.runner import RunStats
from follower.service import follow, make_api
from follower.sinks import Sink
from follower.sinks.jsonlines import JsonLinesSink
from follower.sinks.terminal import PipelineRow, TerminalSink, render_pipelines

STATUS_CONCURRENCY = 8


class UnknownPipelineError(Exception):
    """A name or id given to `follower tail` matches no pipeline the key can see."""


def resolve(wanted: list[str], listed: list[PipelineInfo]) -> tuple[list[str], dict[str, str]]:
    """Ids for `wanted` (each an id or an exact name) and a label (the name) per id."""
    by_name: dict[str, list[str]] = {}
    for info in listed:
        by_name.setdefault(info.name, []).append(info.id)
    ids: list[str] = []
    for item in wanted:
        if item in by_name:
            ids.extend(by_name[item])
        elif PIPELINE_ID_RE.fullmatch(item):
            ids.append(item)
        else:
            raise UnknownPipelineError(f"no pipeline named {item!r} is visible to this key")
    labels = {info.id: info.name for info in listed if info.id in ids}
    return list(dict.fromkeys(ids)), labels


async def tail(
    config: Config,
    wanted: list[str],
    *,
    stop: anyio.Event,
    clock: Clock,
    output: str,
    include: list[re.Pattern[str]],
    exclude: list[re.Pattern[str]],
    timestamps: bool,
) -> RunStats:
    """Follow `wanted` pipelines (ids or names) and print them for people, or as JSON."""
    async with create_session() as session:
        api = make_api(config, session, clock)
        needs_names = output == "text" or not all(PIPELINE_ID_RE.fullmatch(w) for w in wanted)
        listed = await list_all(api.list_page) if needs_names else []
    ids, labels = resolve(wanted, listed)
    sink: Sink
    if output == "json":
        sink = JsonLinesSink(sys.stdout.buffer)
    else:
        sink = TerminalSink(
            sys.stdout, environ=os.environ, is_tty=sys.stdout.isatty(), include=include,
            exclude=exclude, timestamps=timestamps, labels=labels,
        )
    followed = dataclasses.replace(config, pipelines=tuple(ids), discover=False)
    return await follow(followed, sink=sink, clock=clock, stop=stop)


async def _status_or_none(api: PipelineApi, pipeline_id: str) -> PipelineStatus | None:
    try:
        return await api.status(pipeline_id)
    except ApiError:
        return None


async def pipelines_table(config: Config, clock: Clock) -> str:
    """The table of every pipeline the key can see, with its runtime phase and ready/replicas."""
    async with create_session() as session:
        api = make_api(config, session, clock)
        listed = await list_all(api.list_page)
        statuses: dict[str, PipelineStatus | None] = {}
        limiter = anyio.CapacityLimiter(STATUS_CONCURRENCY)

        async def fetch(pipeline_id: str) -> None:
            async with limiter:
                statuses[pipeline_id] = await _status_or_none(api, pipeline_id)

        async with anyio.create_task_group() as group:
            for info in listed:
                group.start_soon(fetch, info.id)
    return render_pipelines(PipelineRow.of(info, statuses.get(info.id)) for info in listed)
