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
    PodAddedEvent,
    PodRemovedEvent,
    TailErrorEvent,
)


def _short(pipeline_id: str) -> str:
    return pipeline_id[:13]


def render(event: Event) -> str:
    """One line of text for `event`, without the newline."""
    match event:
        case LogEvent():
            return f"{_short(event.pipeline_id)}/{event.pod[-5:]} | {event.message}"
        case GapEvent():
            where = f"{_short(event.pipeline_id)}/{event.pod[-5:]}"
            return f"{where} [gap: lines may be missing here ({event.reason})]"
        case TailErrorEvent():
            where = f"{_short(event.pipeline_id)}/{event.pod[-5:]}"
            return f"{where} [tail error: {event.error}; retry in {event.retry_in_s:.1f}s]"
        case PodAddedEvent():
            return f"{_short(event.pipeline_id)}/{event.pod[-5:]} [pod added: {event.pod}]"
        case PodRemovedEvent():
            return f"{_short(event.pipeline_id)}/{event.pod[-5:]} [pod removed]"
        case ApiErrorEvent():
            return f"{_short(event.pipeline_id)} [api error: {event.error}: {event.message}]"


class TextSink:
    """Writes `render(event)` lines to a text stream."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    async def write(self, events: Sequence[Event]) -> None:
        self._stream.write("".join(render(event) + "\n" for event in events))
        self._stream.flush()

    async def aclose(self) -> None:
        self._stream.flush()
