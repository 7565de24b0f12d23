"""Readable lines for people at a terminal: `pipeline/pod | message`, like stern.

Used by `follower demo`; lifecycle events are shown in brackets so they stand apart from log lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO

from follower.model import (
    ApiErrorEvent,
    Event,
    GapEvent,
    LogEvent,
    PipelineAddedEvent,
    PipelineRemovedEvent,
    PipelineStatusEvent,
    PodAddedEvent,
    PodRemovedEvent,
    TailErrorEvent,
)


def _short(pipeline_id: str) -> str:
    return pipeline_id[:13]


def render(event: Event) -> str:
    """One line of text for `event`, without the newline."""
    where = _short(event.pipeline_id)
    pod: str | None = getattr(event, "pod", None)
    if pod is not None:
        where += f"/{pod[-5:]}"
    if isinstance(event, LogEvent):
        return f"{where} | {event.message}"
    return f"{where} [{_describe(event)}]"


def _describe(event: Event) -> str:
    text = event.kind
    match event:
        case GapEvent():
            text = f"gap: lines may be missing here ({event.reason})"
        case TailErrorEvent():
            text = f"tail error: {event.error}; retry in {event.retry_in_s:.1f}s"
        case PodAddedEvent():
            text = f"pod added: {event.pod}"
        case PodRemovedEvent():
            text = "pod removed"
        case ApiErrorEvent():
            text = f"api error: {event.error}: {event.message}"
        case PipelineStatusEvent():
            text = f"status: {event.status}"
        case PipelineAddedEvent():
            text = f"pipeline added: {event.name}"
        case PipelineRemovedEvent():
            text = f"pipeline removed: {event.reason}"
    return text


class TextSink:
    """Writes `render(event)` lines to a text stream."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    async def write(self, events: Sequence[Event]) -> None:
        self._stream.write("".join(render(event) + "\n" for event in events))
        self._stream.flush()

    async def aclose(self) -> None:
        self._stream.flush()
