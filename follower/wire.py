"""The Pipeline API's wire format: the documented JSON shapes and pure parsers over bytes.

Kept apart from the HTTP client so the format is read (and table-tested) without a server: each
parser returns model values or raises `MalformedResponseError` naming the path of what is wrong
(`data.pods[2].logs: expected a string, got int`), or `EnvelopeError` for `error: true`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, TypedDict

import orjson
import structlog

from follower.errors import EnvelopeError, MalformedResponseError
from follower.model import (
    LogsSnapshot,
    PipelineInfo,
    PipelinePage,
    PipelineStatus,
    PodTail,
    validate_pipeline_id,
)
from follower.secret import ServiceKey, redact

_log = structlog.get_logger(__name__)


# --- the documented wire shapes (what the parsers check, for readers and for test bodies) -------


class PodWire(TypedDict):
    """One entry of `data.pods` in a logs answer."""

    pod: str
    logs: str | None


class LogsDataWire(TypedDict):
    """`data` of a logs answer."""

    uid: str | None
    pods: list[PodWire]


class StatusDataWire(TypedDict, total=False):
    """`data` of a status answer."""

    uid: str | None
    status: str  # the only required field
    replicas: int | None
    ready: int | None
    start_time: str | None


class PipelineItemWire(TypedDict, total=False):
    """One entry of `data.items` in a list answer (fields the follower reads)."""

    id: str  # required
    name: str  # required
    project: str | None
    status: str | None


class PaginationWire(TypedDict, total=False):
    """`data.pagination` of a list answer: every field is a guess, read only when well-typed."""

    has_more: bool | None
    page_number: int | None
    page_size: int | None
    total_count: int | None


class ListDataWire(TypedDict, total=False):
    """`data` of a list answer."""

    items: list[PipelineItemWire]  # required
    pagination: PaginationWire | None


class EnvelopeWire(TypedDict):
    """The envelope around every answer."""

    data: object
    error: bool
    error_message: str | None
    error_code: str | int | None


# --- bodies --------------------------------------------------------------------------------------


def parse_envelope(raw: bytes) -> object:
    """The envelope's `data`; EnvelopeError for `error: true`, MalformedResponseError if not one."""
    envelope = _object(_load_json(raw), "body")
    error = envelope.get("error")
    if error is not None and not isinstance(error, bool):
        raise _wrong_type("error", "a bool", error)
    if error:
        message = envelope.get("error_message")
        text = message if isinstance(message, str) and message else "error without a message"
        code = envelope.get("error_code")
        if isinstance(code, str | int) and not isinstance(code, bool):
            text += f" (error_code {code})"
        raise EnvelopeError(text)
    if "data" not in envelope:
        raise _missing("data")
    return envelope["data"]


def _load_json(raw: bytes) -> object:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:  # it holds the whole body as `.doc`: do not chain it
        reason = str(exc)
    raise MalformedResponseError(f"body is not JSON: {reason}")


def parse_logs_body(
    pipeline_id: str, raw: bytes, *, mask: ServiceKey | None = None
) -> LogsSnapshot:
    """A logs body as a snapshot; `logs: null` reads as "", a pod name seen twice is malformed.

    `mask`: the key, replaced wherever the body holds it (pod names, lines), so no event carries it.
    """
    data = _object(parse_envelope(raw), "data")
    pods: list[PodTail] = []
    seen: set[str] = set()
    for index, item in enumerate(_array(_field(data, "pods", "data"), "data.pods")):
        path = f"data.pods[{index}]"
        entry = _object(item, path)
        name = redact(_string(_field(entry, "pod", path), f"{path}.pod"), mask)
        if name in seen:
            raise MalformedResponseError(f"{path}.pod: the pod name appears twice")
        seen.add(name)
        logs = _optional_string(entry.get("logs"), f"{path}.logs")
        pods.append(PodTail(pod=name, logs=redact(logs or "", mask)))
    uid = _optional_string(data.get("uid"), "data.uid")
    return LogsSnapshot(pipeline_id=pipeline_id, uid=uid, pods=tuple(pods))


def parse_status_body(pipeline_id: str, raw: bytes) -> PipelineStatus:
    """A status body; only `status` is required, `replicas` and `ready` are counts when present."""
    data = _object(parse_envelope(raw), "data")
    return PipelineStatus(
        pipeline_id=pipeline_id,
        uid=_optional_string(data.get("uid"), "data.uid"),
        status=_string(_field(data, "status", "data"), "data.status"),
        replicas=_optional_count(data.get("replicas"), "data.replicas"),
        ready=_optional_count(data.get("ready"), "data.ready"),
    )


def parse_list_body(raw: bytes) -> PipelinePage:
    """A list body; items whose `id` is not a safe pipeline id are left out."""
    return parse_list_counted(raw)[0]


def parse_list_counted(raw: bytes) -> tuple[PipelinePage, int]:
    """The page and how many items were skipped for an unsafe id.

    The pagination fields are not documented, so they are read when they have the expected type
    and ignored otherwise; the caller also stops on an empty page.
    """
    data = _object(parse_envelope(raw), "data")
    items: list[PipelineInfo] = []
    skipped = 0
    for index, item in enumerate(_array(_field(data, "items", "data"), "data.items")):
        path = f"data.items[{index}]"
        entry = _object(item, path)
        pipeline_id = _string(_field(entry, "id", path), f"{path}.id")
        name = _string(_field(entry, "name", path), f"{path}.name")
        project = _optional_string(entry.get("project"), f"{path}.project")
        status = _optional_string(entry.get("status"), f"{path}.status")
        try:
            validate_pipeline_id(pipeline_id)
        except ValueError:
            skipped += 1
            continue
        items.append(PipelineInfo(id=pipeline_id, name=name, project=project, status=status))
    pagination = data.get("pagination")
    fields = pagination if isinstance(pagination, dict) else {}
    has_more = fields.get("has_more")
    total = fields.get("total_count")
    page = PipelinePage(
        items=tuple(items),
        has_more=has_more if isinstance(has_more, bool) else None,
        total_count=total if _is_count(total) else None,
    )
    return page, skipped


# --- checking JSON values, naming the path of what is wrong -------------------------------------

_JSON_TYPE_NAMES: Final[Mapping[type, str]] = {
    type(None): "null",
    bool: "bool",
    int: "int",
    float: "float",
    str: "string",
    list: "array",
    dict: "object",
}


def _wrong_type(path: str, expected: str, value: object) -> MalformedResponseError:
    got = _JSON_TYPE_NAMES.get(type(value), type(value).__name__)
    return MalformedResponseError(f"{path}: expected {expected}, got {got}")


def _missing(path: str) -> MalformedResponseError:
    return MalformedResponseError(f"{path}: missing")


def _field(obj: dict[str, object], name: str, path: str) -> object:
    if name not in obj:
        raise _missing(f"{path}.{name}")
    return obj[name]


def _object(value: object, path: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise _wrong_type(path, "an object", value)
    return value


def _array(value: object, path: str) -> list[object]:
    if not isinstance(value, list):
        raise _wrong_type(path, "an array", value)
    return value


def _string(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise _wrong_type(path, "a string", value)
    return value


def _optional_string(value: object, path: str) -> str | None:
    return None if value is None else _string(value, path)


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _optional_count(value: object, path: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or not _is_count(value):
        raise _wrong_type(path, "a non-negative integer", value)
    return value
