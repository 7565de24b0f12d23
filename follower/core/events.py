"""The events the follower writes: one class per kind, and `to_wire()` for the sinks.

Events are plain immutable values (frozen dataclasses; `LogEvent`, built some hundred times per
poll, is a plain one that nothing assigns to); a sink turns them into bytes with `to_wire()`, or
for a plain log line with the template of `follower.sinks.encoding` that gives the same bytes.
They never pass through structlog, so no log level or processor can drop or reshape data. The
values they are made from (ids, timestamps, cut lines) are `follower.core.model`; every kind has
a JSON Schema in follower/schema/.

Size: over 300 lines because it is the catalogue of the kinds, one short class each, read side
by side with the schema files; splitting it would scatter what `Event` and `EVENT_KINDS` list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Final

from follower.core.model import (
    SCHEMA_VERSION,
    GapReason,
    JsonValue,
    Level,
    Wire,
    event_id,
    format_ts,
    seq_prefix,
)


def _wire(event: str, ts: str, pipeline_id: str, event_id: str, **fields: JsonValue) -> Wire:
    """The fields every event has, around the kind's own, in the order people read them."""
    return {
        "ts": ts,
        "event": event,
        "pipeline_id": pipeline_id,
        **fields,
        "id": event_id,
        "schema": SCHEMA_VERSION,
    }


@dataclass(slots=True, unsafe_hash=True)
class LogEvent:
    """One new line of a pod's output; `seq` counts the pod's lines from 1, without holes.

    `truncated`: the line was longer than the line limit and `message` is its head plus a marker
    (see `cut_line`). `level`, `line_ts` and `fields` come from the opt-in enrichment
    (`follower.core.enrich`) and are left out of the wire form when not set.

    `partial`: a provisional snapshot of a line still being written (the tail's last segment had
    no newline and did not change for `partial_flush_s`, or its pod left, or the follower
    stopped). `seq` is then the number the line will have once complete, and the complete line
    follows later as an ordinary event with its own id. `digest` names the snapshot's text.

    `epoch` names the pod's sequence space: a random token drawn whenever the follower cannot
    prove that `seq` continues a space it saw (a pod first seen, or whose checkpointed tail no
    longer lines up after a restart). None: a space from before epochs (a version 1-2
    checkpoint), whose ids keep their old form.

    Immutable by convention, not frozen: a frozen dataclass sets each of its 12 fields through
    `object.__setattr__`, which made building one 4x dearer, and a busy poll builds a hundred
    (`LineSettings.event`; a run of plain ones is a `follower.core.batch.LogRun`, which builds
    them only when read). Nothing assigns to one once built; equality, hash and repr are
    those of the frozen class it was. The encoder writes one whose optional fields are unset
    from a template (`follower.sinks.encoding`), byte for byte what `to_wire()` gives.
    """

    kind: ClassVar[str] = "log"
    ts: float
    pipeline_id: str
    pod: str
    seq: int
    message: str
    truncated: bool = False
    level: Level | None = None
    line_ts: str | None = None
    fields: dict[str, JsonValue] | None = field(default=None, hash=False)
    epoch: str | None = None
    partial: bool = False
    digest: int = 0

    @property
    def id(self) -> str:
        """`{pipeline_id}/{pod}/{epoch}/{seq}`, `.../{seq}/partial/{digest}` for a snapshot.

        Never one id for two lines: within an epoch `seq` only counts on, an epoch is new
        whenever continuity is not proven, and a line delivered again after a crash from a
        checkpoint that lines up gets the same epoch and seq, hence the same id.
        """
        prefix = seq_prefix(self.pipeline_id, self.pod, self.epoch)  # the hot path
        if self.partial:
            return f"{prefix}/{self.seq}/partial/{self.digest:016x}"
        return f"{prefix}/{self.seq}"

    def to_wire(self) -> Wire:
        wire: Wire = {  # the hot path: a literal, not _wire()'s keyword arguments
            "ts": format_ts(self.ts),
            "event": self.kind,
            "pipeline_id": self.pipeline_id,
            "pod": self.pod,
            "seq": self.seq,
            "message": self.message,
            "id": self.id,
            "schema": SCHEMA_VERSION,
        }
        if self.truncated:
            wire["truncated"] = True
        if self.partial:
            wire["partial"] = True
        if self.level is not None:
            wire["level"] = self.level
        if self.line_ts is not None:
            wire["line_ts"] = self.line_ts
        if self.fields is not None:
            wire["fields"] = self.fields
        return wire


@dataclass(frozen=True, slots=True)
class GapEvent:
    """Lines of `pod` may have been missed between `after_seq` and the next log event.

    `no_overlap`: the new tail shares no line with the previous one (the pod restarted, or more
    lines arrived than the tail holds). `window_full`: a pod seen for the first time already
    filled its tail, so older lines may have scrolled out before we looked. `state_reset`: the
    follower was started with `--reset-state`, so what happened while it was away is unknown.
    `restarted`: the new tail shares no line with the previous one and the status endpoint's
    `start_time` changed in between: the worker restarted.
    """

    kind: ClassVar[str] = "gap"
    ts: float
    pipeline_id: str
    pod: str
    after_seq: int
    reason: GapReason
    epoch: str | None = None

    @property
    def id(self) -> str:
        """`{pipeline_id}/{pod}/{epoch}/gap/{after_seq}`: a line of the same epoch always follows a
        gap, so it is unique."""
        return f"{seq_prefix(self.pipeline_id, self.pod, self.epoch)}/{self.kind}/{self.after_seq}"

    def to_wire(self) -> Wire:
        return _wire(
            self.kind, format_ts(self.ts), self.pipeline_id, self.id,
            pod=self.pod, after_seq=self.after_seq, reason=self.reason,
        )


@dataclass(frozen=True, slots=True)
class TailErrorEvent:
    """The pod's `logs` held a runtime error (container waiting, gone, unreachable), not lines."""

    kind: ClassVar[str] = "tail_error"
    ts: float
    pipeline_id: str
    pod: str
    error: str
    retry_in_s: float

    @property
    def id(self) -> str:
        """`{pipeline_id}/{pod}/tail_error/{ts}`."""
        return event_id(self.pipeline_id, self.pod, self.kind, format_ts(self.ts))

    def to_wire(self) -> Wire:
        return _wire(
            self.kind, format_ts(self.ts), self.pipeline_id, self.id,
            pod=self.pod, error=self.error, retry_in_s=round(self.retry_in_s, 3),
        )


@dataclass(frozen=True, slots=True)
class PodAddedEvent:
    """A pod appeared in the pipeline's logs response."""

    kind: ClassVar[str] = "pod_added"
    ts: float
    pipeline_id: str
    pod: str

    @property
    def id(self) -> str:
        """`{pipeline_id}/{pod}/pod_added/{ts}`."""
        return event_id(self.pipeline_id, self.pod, self.kind, format_ts(self.ts))

    def to_wire(self) -> Wire:
        return _wire(self.kind, format_ts(self.ts), self.pipeline_id, self.id, pod=self.pod)


@dataclass(frozen=True, slots=True)
class PodRemovedEvent:
    """A pod left the logs response; lines it wrote after the last poll cannot be fetched."""

    kind: ClassVar[str] = "pod_removed"
    ts: float
    pipeline_id: str
    pod: str
    last_seq: int

    @property
    def id(self) -> str:
        """`{pipeline_id}/{pod}/pod_removed/{ts}`."""
        return event_id(self.pipeline_id, self.pod, self.kind, format_ts(self.ts))

    def to_wire(self) -> Wire:
        return _wire(
            self.kind, format_ts(self.ts), self.pipeline_id, self.id,
            pod=self.pod, last_seq=self.last_seq,
        )


@dataclass(frozen=True, slots=True)
class ApiErrorEvent:
    """A poll of the pipeline failed; `error` is the taxonomy kind, `retry_in_s` when we try again.

    `retry_in_s` is None when the follower stopped polling the pipeline (404). `pod` is set when
    only that pod's part of an answer was unusable (a duplicate name, bytes not UTF-8): the other
    pods' lines were read.
    """

    kind: ClassVar[str] = "api_error"
    ts: float
    pipeline_id: str
    error: str
    status: int | None
    message: str
    retry_in_s: float | None
    pod: str | None = None

    @property
    def id(self) -> str:
        """`{pipeline_id}[/{pod}]/api_error/{ts}`."""
        if self.pod is not None:
            return event_id(self.pipeline_id, self.pod, self.kind, format_ts(self.ts))
        return event_id(self.pipeline_id, self.kind, format_ts(self.ts))

    def to_wire(self) -> Wire:
        pod: Wire = {} if self.pod is None else {"pod": self.pod}
        return _wire(
            self.kind, format_ts(self.ts), self.pipeline_id, self.id,
            **pod,
            error=self.error,
            status=self.status,
            message=self.message,
            retry_in_s=None if self.retry_in_s is None else round(self.retry_in_s, 3),
        )


@dataclass(frozen=True, slots=True)
class PipelineStatusEvent:
    """The runtime phase seen on the status endpoint changed (the first one seen counts).

    `status` is the phase as the API spells it (`RUNNING`, `DEPLOYING`, `PAUSED`, `FAILED`, ...),
    so a shipper can alert on `FAILED`.
    """

    kind: ClassVar[str] = "pipeline_status"
    ts: float
    pipeline_id: str
    status: str
    ready: int | None
    replicas: int | None

    @property
    def id(self) -> str:
        """`{pipeline_id}/pipeline_status/{ts}`."""
        return event_id(self.pipeline_id, self.kind, format_ts(self.ts))

    def to_wire(self) -> Wire:
        return _wire(
            self.kind, format_ts(self.ts), self.pipeline_id, self.id,
            status=self.status, ready=self.ready, replicas=self.replicas,
        )


@dataclass(frozen=True, slots=True)
class PipelineAddedEvent:
    """Discovery found a pipeline to follow (`name` as the list endpoint gave it)."""

    kind: ClassVar[str] = "pipeline_added"
    ts: float
    pipeline_id: str
    name: str | None

    @property
    def id(self) -> str:
        """`{pipeline_id}/pipeline_added/{ts}`."""
        return event_id(self.pipeline_id, self.kind, format_ts(self.ts))

    def to_wire(self) -> Wire:
        return _wire(self.kind, format_ts(self.ts), self.pipeline_id, self.id, name=self.name)


@dataclass(frozen=True, slots=True)
class PipelineRemovedEvent:
    """The follower stopped following a pipeline and freed its state.

    `reason`: `not_found` (the API answered 404), `not_listed` (discovery no longer lists it)
    or `not_configured` (a configuration reload removed it).
    """

    kind: ClassVar[str] = "pipeline_removed"
    ts: float
    pipeline_id: str
    reason: str

    @property
    def id(self) -> str:
        """`{pipeline_id}/pipeline_removed/{ts}`."""
        return event_id(self.pipeline_id, self.kind, format_ts(self.ts))

    def to_wire(self) -> Wire:
        return _wire(self.kind, format_ts(self.ts), self.pipeline_id, self.id, reason=self.reason)


Event = (
    LogEvent
    | GapEvent
    | TailErrorEvent
    | PodAddedEvent
    | PodRemovedEvent
    | ApiErrorEvent
    | PipelineStatusEvent
    | PipelineAddedEvent
    | PipelineRemovedEvent
)
EVENT_KINDS: Final = tuple(
    cls.kind
    for cls in (
        LogEvent, GapEvent, TailErrorEvent, PodAddedEvent, PodRemovedEvent, ApiErrorEvent,
        PipelineStatusEvent, PipelineAddedEvent, PipelineRemovedEvent,
    )
)
