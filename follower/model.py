"""Value types read from the API and the events the follower writes.

Events are plain frozen values; a sink turns them into bytes with `to_wire()`. They never pass
through structlog, so no log level or processor can drop or reshape data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar, Final, Literal

SCHEMA_VERSION: Final = 1

# `pipe_` and hex in every documented example; we accept any letters, digits, `_` and `-` so an id
# can never carry `/`, `..`, `%`, `?`, whitespace or control characters into a URL path.
PIPELINE_ID_RE: Final = re.compile(r"pipe_[A-Za-z0-9_-]{1,128}")


def validate_pipeline_id(value: str) -> str:
    """Return `value` if it is a safe pipeline id, else raise ValueError saying what is valid."""
    if not PIPELINE_ID_RE.fullmatch(value):
        raise ValueError(
            f"invalid pipeline id {value!r}: expected 'pipe_' followed by 1-128 letters, "
            "digits, '_' or '-' (e.g. pipe_3e8678c5fc9e48a7bf9879ca729)"
        )
    return value

# --- what the API returns ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PodTail:
    """One pod's entry in a logs response: its name and the current tail of its output."""

    pod: str
    logs: str


@dataclass(frozen=True, slots=True)
class LogsSnapshot:
    """A parsed `GET /platform/pipeline-api/{id}/logs/` answer."""

    pipeline_id: str
    uid: str | None
    pods: tuple[PodTail, ...]


@dataclass(frozen=True, slots=True)
class PipelineStatus:
    """A parsed `GET /platform/pipeline-api/{id}/status/` answer (the runtime phase)."""

    pipeline_id: str
    uid: str | None
    status: str
    replicas: int | None
    ready: int | None


@dataclass(frozen=True, slots=True)
class PipelineInfo:
    """One item of the pipeline list; `status` is the user's intent (`running` or `paused`)."""

    id: str
    name: str
    project: str | None
    status: str | None


@dataclass(frozen=True, slots=True)
class PipelinePage:
    """One page of `GET /platform/pipeline-api/`."""

    items: tuple[PipelineInfo, ...]
    has_more: bool | None
    total_count: int | None


# --- what the follower writes --------------------------------------------------------------------


def format_ts(epoch_s: float) -> str:
    """RFC 3339 UTC with milliseconds, the form Vector, Fluent Bit and Filebeat parse by default."""
    moment = datetime.fromtimestamp(epoch_s, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


WireValue = str | int | float | bool | None
Wire = dict[str, WireValue]

GapReason = Literal["no_overlap", "window_full", "state_reset"]


@dataclass(frozen=True, slots=True)
class LogEvent:
    """One new line of a pod's output; `seq` counts the pod's lines from 1, without holes."""

    kind: ClassVar[str] = "log"
    ts: float
    pipeline_id: str
    pod: str
    seq: int
    message: str

    def to_wire(self) -> Wire:
        return {
            "ts": format_ts(self.ts),
            "event": self.kind,
            "pipeline_id": self.pipeline_id,
            "pod": self.pod,
            "seq": self.seq,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class GapEvent:
    """Lines of `pod` may have been missed between `after_seq` and the next log event.

    `no_overlap`: the new tail shares no line with the previous one (the pod restarted, or more
    lines arrived than the tail holds). `window_full`: a pod seen for the first time already
    filled its tail, so older lines may have scrolled out before we looked. `state_reset`: the
    follower was started with `--reset-state`, so what happened while it was away is unknown.
    """

    kind: ClassVar[str] = "gap"
    ts: float
    pipeline_id: str
    pod: str
    after_seq: int
    reason: GapReason

    def to_wire(self) -> Wire:
        return {
            "ts": format_ts(self.ts),
            "event": self.kind,
            "pipeline_id": self.pipeline_id,
            "pod": self.pod,
            "after_seq": self.after_seq,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class TailErrorEvent:
    """The pod's `logs` held a runtime error (container waiting, gone, unreachable), not lines."""

    kind: ClassVar[str] = "tail_error"
    ts: float
    pipeline_id: str
    pod: str
    error: str
    retry_in_s: float

    def to_wire(self) -> Wire:
        return {
            "ts": format_ts(self.ts),
            "event": self.kind,
            "pipeline_id": self.pipeline_id,
            "pod": self.pod,
            "error": self.error,
            "retry_in_s": round(self.retry_in_s, 3),
        }


@dataclass(frozen=True, slots=True)
class PodAddedEvent:
    """A pod appeared in the pipeline's logs response."""

    kind: ClassVar[str] = "pod_added"
    ts: float
    pipeline_id: str
    pod: str

    def to_wire(self) -> Wire:
        return {
            "ts": format_ts(self.ts),
            "event": self.kind,
            "pipeline_id": self.pipeline_id,
            "pod": self.pod,
        }


@dataclass(frozen=True, slots=True)
class PodRemovedEvent:
    """A pod left the logs response; lines it wrote after the last poll cannot be fetched."""

    kind: ClassVar[str] = "pod_removed"
    ts: float
    pipeline_id: str
    pod: str
    last_seq: int

    def to_wire(self) -> Wire:
        return {
            "ts": format_ts(self.ts),
            "event": self.kind,
            "pipeline_id": self.pipeline_id,
            "pod": self.pod,
            "last_seq": self.last_seq,
        }


@dataclass(frozen=True, slots=True)
class ApiErrorEvent:
    """A poll of the pipeline failed; `error` is the taxonomy kind, `retry_in_s` when we try again.

    `retry_in_s` is None when the follower stopped polling the pipeline (404).
    """

    kind: ClassVar[str] = "api_error"
    ts: float
    pipeline_id: str
    error: str
    status: int | None
    message: str
    retry_in_s: float | None

    def to_wire(self) -> Wire:
        return {
            "ts": format_ts(self.ts),
            "event": self.kind,
            "pipeline_id": self.pipeline_id,
            "error": self.error,
            "status": self.status,
            "message": self.message,
            "retry_in_s": None if self.retry_in_s is None else round(self.retry_in_s, 3),
        }


Event = LogEvent | GapEvent | TailErrorEvent | PodAddedEvent | PodRemovedEvent | ApiErrorEvent
EVENT_KINDS: Final = tuple(
    cls.kind
    for cls in (LogEvent, GapEvent, TailErrorEvent, PodAddedEvent, PodRemovedEvent, ApiErrorEvent)
)
