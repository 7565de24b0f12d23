"""Commands for people at a terminal: `follower tail` (like stern) and `follower pipelines`.

Both reuse the daemon's pieces: the same configuration rules, client, runner and events; only
the presentation differs (`follower.sinks.terminal`).
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import anyio

from follower.api.client import PipelineApi, create_session
from follower.api.listing import list_all
from follower.clock import Clock
from follower.config import Config, Since
from follower.core.events import Event, LogEvent, PodAddedEvent, TailErrorEvent
from follower.core.model import PIPELINE_ID_RE, PipelineInfo, PipelineStatus
from follower.engine.poller import PollStats
from follower.engine.service import follow, make_api
from follower.errors import ApiError, NotFoundError, UnknownPipelineError
from follower.sinks import Sink
from follower.sinks.jsonlines import JsonLinesSink
from follower.sinks.terminal import PipelineRow, TerminalSink

STATUS_CONCURRENCY = 8


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


async def _check_unlisted(api: PipelineApi, ids: list[str], listed: list[PipelineInfo]) -> None:
    """An id the listing does not show must answer its status endpoint, or it is unknown."""
    known = {info.id for info in listed}
    for pipeline_id in ids:
        if pipeline_id in known:
            continue
        try:
            await api.status(pipeline_id)
        except NotFoundError:
            raise UnknownPipelineError(
                f"no pipeline with id {pipeline_id!r} is visible to this key (404)"
            ) from None


@dataclass(frozen=True, slots=True)
class PodFilter:
    """Which pods to show (`--pod`, `--exclude-pod`): any `include` matches (or there is none)
    and no `exclude` does. Events of the pipeline as a whole (no pod) are always shown."""

    include: tuple[re.Pattern[str], ...] = ()
    exclude: tuple[re.Pattern[str], ...] = ()

    def accepts(self, event: Event) -> bool:
        """Whether the event's pod (if it has one) is shown."""
        pod: str | None = getattr(event, "pod", None)
        if pod is None:
            return True
        if self.include and not any(pattern.search(pod) for pattern in self.include):
            return False
        return not any(pattern.search(pod) for pattern in self.exclude)


class FirstLook:
    """`--tail N`: of the pods in a pipeline's first answer, only the last N history lines.

    The tracker runs with `since = "start"`, so the first lines of each pod it sees are its whole
    current tail. For the pods of the pipeline's first answer (their `pod_added` events come in
    the pipeline's first batch that has any), the first batch holding their lines is history:
    only its last `lines` lines are kept (all with -1). A pod that appears later is new: all its
    lines are shown. Pure: it only looks at the events it is given.
    """

    def __init__(self, lines: int) -> None:
        self._lines = lines
        self._started: set[str] = set()
        self._pending: dict[str, set[str]] = {}

    def select(self, events: Sequence[Event]) -> list[Event]:
        """The events to show of one batch, in order."""
        if self._lines < 0:
            return list(events)
        starting: dict[str, set[str]] = {}
        for event in events:
            if isinstance(event, PodAddedEvent) and event.pipeline_id not in self._started:
                starting.setdefault(event.pipeline_id, set()).add(event.pod)
        self._pending.update(starting)
        self._started.update(starting)
        history, waiting = self._history(events)
        for pipeline_id, added in starting.items():  # an empty first tail has no history
            kept = {pod for (pid, pod) in history.keys() | waiting if pid == pipeline_id}
            self._pending[pipeline_id] = added & kept
        if not history:
            return list(events)
        shown: list[Event] = []
        for event in events:
            if isinstance(event, LogEvent) and (event.pipeline_id, event.pod) in history:
                key = (event.pipeline_id, event.pod)
                history[key] -= 1
                if history[key] >= self._lines:
                    continue  # older than the last `lines` of the history
            shown.append(event)
        for pipeline_id, pod in history:
            self._pending[pipeline_id].discard(pod)
        return shown

    def _history(
        self, events: Sequence[Event]
    ) -> tuple[dict[tuple[str, str], int], set[tuple[str, str]]]:
        """History lines per pending pod in this batch, and the pending pods in a tail error
        (their history comes once the error clears)."""
        history: dict[tuple[str, str], int] = {}
        waiting: set[tuple[str, str]] = set()
        for event in events:
            key = (event.pipeline_id, getattr(event, "pod", ""))
            if key[1] not in self._pending.get(event.pipeline_id, ()):
                continue
            if isinstance(event, LogEvent):
                history[key] = history.get(key, 0) + 1
            elif isinstance(event, TailErrorEvent):
                waiting.add(key)
        return history, waiting


class PeopleSink:
    """A `Sink` that shows only the chosen pods and the chosen history, then hands on."""

    def __init__(self, inner: Sink, pods: PodFilter, first_look: FirstLook) -> None:
        self._inner = inner
        self._pods = pods
        self._first_look = first_look

    async def write(self, events: Sequence[Event]) -> None:
        """Filter the batch and write what is left (nothing when nothing is)."""
        shown = self._first_look.select([e for e in events if self._pods.accepts(e)])
        if shown:
            await self._inner.write(shown)

    async def aclose(self) -> None:
        """Close the inner sink."""
        await self._inner.aclose()


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
    pods: PodFilter | None = None,
    history: int = -1,
) -> PollStats:
    """Follow `wanted` pipelines (ids or names) and print them for people, or as JSON.

    `history` is `--tail`: lines of each pod's current tail shown on the first look (-1: all).
    """
    async with create_session() as session:
        api = make_api(config, session, clock)
        listed = await list_all(api.list_page)
        ids, labels = resolve(wanted, listed)
        await _check_unlisted(api, ids, listed)
    inner: Sink
    if output == "json":
        inner = JsonLinesSink(sys.stdout.buffer)
    else:
        inner = TerminalSink(
            sys.stdout, environ=os.environ, is_tty=sys.stdout.isatty(), include=include,
            exclude=exclude, timestamps=timestamps, labels=labels, short_pods=True,
        )
    sink = PeopleSink(inner, pods or PodFilter(), FirstLook(history))
    since: Since = "now" if history == 0 else "start"
    followed = dataclasses.replace(
        config, pipelines=tuple(ids), since=since,
        discovery=dataclasses.replace(config.discovery, enabled=False),
    )
    return await follow(followed, sink=sink, clock=clock, stop=stop)


async def _status_or_none(api: PipelineApi, pipeline_id: str) -> PipelineStatus | None:
    try:
        return await api.status(pipeline_id)
    except ApiError:
        return None


async def pipeline_rows(config: Config, clock: Clock) -> list[PipelineRow]:
    """Every pipeline the key can see, with its runtime phase and ready/replicas."""
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
    return [PipelineRow.of(info, statuses.get(info.id)) for info in listed]
