"""Value types read from the API and the events the follower writes.

Events are plain frozen values; a sink turns them into bytes with `to_wire()`. They never pass
through structlog, so no log level or processor can drop or reshape data.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import ClassVar, Final, Literal, TypeAlias

SCHEMA_VERSION: Final = 1
"""The `schema` field of every event. Adding an optional field or a new event kind keeps the
version; renaming, removing or retyping a field, or changing what one means, bumps it."""

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
class PodProblem:
    """A part of a logs answer that could not be read as documented (the rest still is).

    `pod`: the pod it concerns, None for an entry without a readable name.
    """

    pod: str | None
    problem: str


@dataclass(frozen=True, slots=True)
class LogsSnapshot:
    """A parsed `GET /platform/pipeline-api/{id}/logs/` answer."""

    pipeline_id: str
    uid: str | None
    pods: tuple[PodTail, ...]
    problems: tuple[PodProblem, ...] = ()
    """Parts of the answer left out or repaired (a duplicate pod name, bytes not UTF-8)."""


@dataclass(frozen=True, slots=True)
class PipelineStatus:
    """A parsed `GET /platform/pipeline-api/{id}/status/` answer (the runtime phase)."""

    pipeline_id: str
    uid: str | None
    status: str
    replicas: int | None
    ready: int | None
    start_time: str | None = None
    """When the pipeline's worker started; a new value means it restarted."""


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


@functools.lru_cache(maxsize=256)  # every event of one poll shares its ts: format it once
def format_ts(epoch_s: float) -> str:
    """RFC 3339 UTC with milliseconds, the form Vector, Fluent Bit and Filebeat parse by default."""
    return format_datetime(datetime.fromtimestamp(epoch_s, tz=UTC))


def format_datetime(moment: datetime) -> str:
    """An aware datetime as RFC 3339 UTC with milliseconds (`2026-11-28T10:15:02.117Z`)."""
    moment = moment.astimezone(UTC)
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:"
        f"{moment.minute:02d}:{moment.second:02d}.{moment.microsecond // 1000:03d}Z"
    )


JsonValue: TypeAlias = str | int | float | bool | list["JsonValue"] | dict[str, "JsonValue"] | None
Wire: TypeAlias = dict[str, JsonValue]

GapReason = Literal["no_overlap", "window_full", "state_reset", "restarted"]
Level = Literal["trace", "debug", "info", "warn", "error", "fatal"]
"""A log line's level, normalised: WARNING is `warn`, CRITICAL is `fatal` (as OpenTelemetry maps
them)."""

# --- event ids -----------------------------------------------------------------------------------


def _id_part(part: str | int) -> str:
    # Pipeline ids cannot hold `/` or `%`; pod names come from the API, so escape them there too:
    # one id can then never be read as another's (`a/b` + `1` vs `a` + `b/1`).
    if isinstance(part, int):
        return str(part)
    if "/" in part or "%" in part:
        return part.replace("%", "%25").replace("/", "%2F")
    return part


@functools.lru_cache(maxsize=256)  # the lines of one poll come pod by pod: escape each pod once
def _pod_prefix(pipeline_id: str, pod: str) -> str:
    return f"{_id_part(pipeline_id)}/{_id_part(pod)}"


def event_id(pipeline_id: str, *parts: str | int) -> str:
    """A stable id from an event's own fields: `/`-joined, each part with `%` and `/` escaped.

    log: `{pipeline_id}/{pod}/{epoch}/{seq}`; gap: `{pipeline_id}/{pod}/{epoch}/gap/{after_seq}`;
    an event that happens at a moment: `{pipeline_id}[/{pod}]/{event}/{ts}`. See `LogEvent.id`
    for why an id never names two lines.
    """
    return "/".join([_id_part(pipeline_id), *map(_id_part, parts)])


EPOCH_ALPHABET: Final = "abcdefghijklmnopqrstuvwxyz234567"
EPOCH_CHARS: Final = 10
"""50 random bits: two sequence spaces of one pod name share an epoch with odds of about
n^2 / 2^51 for n spaces, 4e-13 for a thousand restarts of the same name."""


def epoch_from(random_bits: int) -> str:
    """An epoch (`EPOCH_CHARS` base32 letters) from at least 50 random bits."""
    chars = []
    for _ in range(EPOCH_CHARS):
        chars.append(EPOCH_ALPHABET[random_bits & 31])
        random_bits >>= 5
    return "".join(chars)


def _seq_prefix(pipeline_id: str, pod: str, epoch: str | None) -> str:
    prefix = _pod_prefix(pipeline_id, pod)
    return prefix if epoch is None else f"{prefix}/{epoch}"


# --- long lines ----------------------------------------------------------------------------------

DEFAULT_MAX_LINE_BYTES: Final = 16 * 1024
"""Half the 32 KiB line that Fluent Bit's tail buffer accepts by default, so that the JSON event
around a cut message (its escaping included, for ordinary text) still fits one shipper line."""
MIN_LINE_BYTES: Final = 64
"""The smallest limit `cut_line` accepts: room for the marker and some text."""


def _cut_marker(removed: int) -> str:
    return f"\u2026[cut {removed} bytes]"


def cut_line(line: str, max_bytes: int) -> tuple[str, bool]:
    """`line` if its UTF-8 fits `max_bytes`, else its head plus `…[cut N bytes]`, and whether cut.

    The result never exceeds `max_bytes` of UTF-8, is cut at a character boundary (never inside a
    multi-byte character) and N counts the bytes of `line` that were left out.
    """
    if max_bytes < MIN_LINE_BYTES:
        raise ValueError(f"max_bytes must be at least {MIN_LINE_BYTES}, got {max_bytes}")
    if len(line) <= max_bytes // 4:  # even 4-byte characters fit: skip the encoding
        return line, False
    data = line.encode("utf-8", "surrogatepass")
    if len(data) <= max_bytes:
        return line, False
    # Start from the shortest marker possible (the fewest bytes left out) and give up bytes of
    # the head until head and marker fit: the head is as long as the limit allows.
    keep = max_bytes - len(_cut_marker(len(data) - max_bytes).encode())
    while True:
        while data[keep] & 0xC0 == 0x80:  # a continuation byte: back off to the character start
            keep -= 1
        marker = _cut_marker(len(data) - keep)
        if keep + len(marker.encode()) <= max_bytes:
            return data[:keep].decode("utf-8", "surrogatepass") + marker, True
        keep -= 1  # the count gained a digit: make room for it


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


@dataclass(frozen=True, slots=True)
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
        prefix = _seq_prefix(self.pipeline_id, self.pod, self.epoch)  # the hot path
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
        return f"{_seq_prefix(self.pipeline_id, self.pod, self.epoch)}/{self.kind}/{self.after_seq}"

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
