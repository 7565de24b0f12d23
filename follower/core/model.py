"""Value types read from the API, and what events are made of: ids, timestamps, cut lines.

The events themselves, one class per kind, are `follower.core.events`.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal, TypeAlias

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


_CACHED: Final = 32
"""Entries of the formatting caches below. They serve the events of one poll, which share a ts
and come pod by pod, while a few polls interleave at the sink; a poll rarely meets an entry of
an earlier one among a thousand pipelines, and 256 entries of each held ~0.14 MB."""


@functools.lru_cache(maxsize=_CACHED)  # every event of one poll shares its ts: format it once
def format_ts(epoch_s: float) -> str:
    """RFC 3339 UTC with milliseconds, the form Vector, Fluent Bit and Filebeat parse by default.

    Every poll has a ts of its own, and a datetime with seven formatted fields cost ~8 us of
    it: the date and time up to the second are formatted once per second instead, and the
    milliseconds taken from the microseconds `datetime.fromtimestamp` rounds to (half to even,
    carried into the second), so the text is the same (a property test holds the two together).
    """
    fraction, whole = math.modf(epoch_s)
    micros = round(fraction * 1e6)
    if micros >= 1_000_000:
        micros -= 1_000_000
        whole += 1.0
    elif micros < 0:
        micros += 1_000_000
        whole -= 1.0
    return f"{_second(int(whole))}.{micros // 1000:03d}Z"


@functools.lru_cache(maxsize=2)  # polls of one second share it; two spare a tick's turnover
def _second(epoch_s: int) -> str:
    """`YYYY-MM-DDTHH:MM:SS` (UTC) of a whole second."""
    moment = datetime.fromtimestamp(epoch_s, tz=UTC)
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:"
        f"{moment.minute:02d}:{moment.second:02d}"
    )


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


@functools.lru_cache(maxsize=_CACHED)  # a poll's lines come pod by pod: escape each pod once
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


def seq_prefix(pipeline_id: str, pod: str, epoch: str | None) -> str:
    """The start of a line's event id: pipeline, pod and, when known, its epoch."""
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
