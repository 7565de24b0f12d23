"""The Pipeline API's wire format: the documented JSON shapes and pure parsers over bytes.

Kept apart from the HTTP client so the format is read (and table-tested) without a server: each
parser returns model values or raises `MalformedResponseError` naming the path of what is wrong
(`data.pods[2].logs: expected a string, got int`), or `EnvelopeError` for `error: true`. Every
string a parser returns has the key masked, in any letter case (`_Reader`).

The shapes read: every answer is an envelope `{data, error, error_message, error_code}`; the
`data` of logs is `{uid, pods: [{pod, logs}]}`, of status `{uid, status, replicas, ready,
start_time}` (only `status` required), of the list `{items: [{id, name, project, status}],
pagination: {has_more, page_number, page_size, total_count}}` (pagination fields are guesses,
read only when well-typed).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Final

import orjson
import structlog

from follower.api.secret import Masker, ServiceKey, masker_of
from follower.core.model import (
    LogsSnapshot,
    PipelineInfo,
    PipelinePage,
    PipelineStatus,
    PodProblem,
    PodTail,
    validate_pipeline_id,
)
from follower.errors import EnvelopeError, MalformedResponseError

_log = structlog.get_logger(__name__)


# --- bodies --------------------------------------------------------------------------------------


class _Reader:
    """Reads the strings of one body: each is checked, repaired if the body had to be, masked.

    The one way a string leaves a parser, so no field of any endpoint escapes the mask (the key in
    any case, `follower.api.secret.Masker`). `repaired`: the body was not valid UTF-8 (or held a
    lone surrogate escape) and was decoded with U+FFFD in place of what could not be read.
    """

    __slots__ = ("mask", "repaired")

    def __init__(self, mask: Masker, repaired: bool) -> None:
        self.mask = mask
        self.repaired = repaired

    def text(self, value: object, path: str) -> str:
        text = _string(value, path)
        if self.repaired:
            text = _SURROGATE.sub(REPLACEMENT, text)
        return self.mask(text)

    def optional_text(self, value: object, path: str) -> str | None:
        return None if value is None else self.text(value, path)


REPLACEMENT: Final = "\ufffd"
_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def _open(raw: bytes, key: ServiceKey | None) -> tuple[object, _Reader]:
    """The envelope's `data` and the reader of its strings."""
    document, repaired = _load_json(raw)
    reader = _Reader(masker_of(key), repaired)
    return _data(document, reader.mask), reader



def _data(document: object, mask: Masker | None = None) -> object:
    envelope = _object(document, "body")
    error = envelope.get("error")
    if error is not None and not isinstance(error, bool):
        raise _wrong_type("error", "a bool", error)
    if error:
        message = envelope.get("error_message")
        text = message if isinstance(message, str) and message else "error without a message"
        code = envelope.get("error_code")
        if isinstance(code, str | int) and not isinstance(code, bool):
            text += f" (error_code {code})"
        raise EnvelopeError(text if mask is None else mask(text))  # the client masks it again
    if "data" not in envelope:
        raise _missing("data")
    return envelope["data"]


def _load_json(raw: bytes) -> tuple[object, bool]:
    """The parsed body, and whether it had to be repaired (invalid UTF-8, lone surrogates).

    One pod's bad bytes must not cost every pod its lines: such a body is decoded with U+FFFD in
    place of what is not UTF-8 (and, failing orjson, read by the standard library, which keeps
    lone surrogate escapes for `_Reader` to replace).
    """
    try:
        return orjson.loads(raw), False
    except orjson.JSONDecodeError as exc:  # it holds the whole body as `.doc`: do not chain it
        reason = str(exc)
    if "UTF-8" in reason or "surrogate" in reason:
        text = raw.decode("utf-8", "replace")
        try:
            return orjson.loads(text), True
        except orjson.JSONDecodeError as exc:
            reason = str(exc)
        if "surrogate" in reason:
            try:
                return json.loads(text), True
            except (ValueError, RecursionError) as exc:
                reason = type(exc).__name__ if isinstance(exc, RecursionError) else str(exc)
    raise MalformedResponseError(f"body is not JSON: {reason}")


def parse_logs_body(
    pipeline_id: str, raw: bytes, *, mask: ServiceKey | None = None
) -> LogsSnapshot:
    """A logs body as a snapshot; `logs: null` reads as "".

    One bad part does not cost the others their lines: a pod name seen twice keeps its first
    entry, a pod whose `logs` is not a string reads as an empty tail (its state is kept), an
    entry without a name is left out, and bytes that are not UTF-8 read as U+FFFD; each is named
    in `problems`. Only when no entry is usable is the answer malformed.

    `mask`: the key, replaced (in any case) in every string of the body, so no event carries it.
    """
    data, reader = _open(raw, mask)
    data = _object(data, "data")
    pods: list[PodTail] = []
    problems: list[PodProblem] = []
    seen: set[str] = set()
    readable = 0
    entries = _array(_field(data, "pods", "data"), "data.pods")
    for index, item in enumerate(entries):
        path = f"data.pods[{index}]"
        try:
            entry = _object(item, path)
            name = reader.text(_field(entry, "pod", path), f"{path}.pod")
        except MalformedResponseError as exc:
            problems.append(PodProblem(None, exc.message))
            continue
        if name in seen:
            problems.append(PodProblem(name, f"{path}.pod: the pod name appears twice; "
                                             "the first entry is kept"))
            continue
        seen.add(name)
        try:
            logs = reader.optional_text(entry.get("logs"), f"{path}.logs") or ""
            readable += 1
        except MalformedResponseError as exc:
            problems.append(PodProblem(name, exc.message))
            logs = ""  # an empty tail: the pod's state is kept, nothing is emitted
        if reader.repaired and REPLACEMENT in logs:
            problems.append(PodProblem(name, f"{path}.logs: not valid UTF-8; what could not "
                                             "be read is U+FFFD in the lines"))
        pods.append(PodTail(pod=name, logs=logs))
    if problems and not readable:  # nothing to keep: the answer as a whole is unusable
        raise MalformedResponseError(problems[0].problem)
    uid = reader.optional_text(data.get("uid"), "data.uid")
    return LogsSnapshot(pipeline_id=pipeline_id, uid=uid, pods=tuple(pods),
                        problems=tuple(problems))


def parse_status_body(
    pipeline_id: str, raw: bytes, *, mask: ServiceKey | None = None
) -> PipelineStatus:
    """A status body; only `status` is required, `replicas` and `ready` are counts when present."""
    data, reader = _open(raw, mask)
    data = _object(data, "data")
    return PipelineStatus(
        pipeline_id=pipeline_id,
        uid=reader.optional_text(data.get("uid"), "data.uid"),
        status=reader.text(_field(data, "status", "data"), "data.status"),
        replicas=_optional_count(data.get("replicas"), "data.replicas"),
        ready=_optional_count(data.get("ready"), "data.ready"),
        start_time=_optional_or_none(reader, data.get("start_time")),
    )


def _optional_or_none(reader: _Reader, value: object) -> str | None:
    """An undocumented-enough field: read when it is a string, else ignored."""
    return reader.text(value, "") if isinstance(value, str) else None


def parse_list_counted(raw: bytes, *, mask: ServiceKey | None = None) -> tuple[PipelinePage, int]:
    """The page and how many items were skipped for an unsafe id (or one that holds the key).

    The pagination fields are not documented, so they are read when they have the expected type
    and ignored otherwise; the caller also stops on an empty page.
    """
    data, reader = _open(raw, mask)
    data = _object(data, "data")
    items: list[PipelineInfo] = []
    skipped = 0
    for index, item in enumerate(_array(_field(data, "items", "data"), "data.items")):
        path = f"data.items[{index}]"
        entry = _object(item, path)
        raw_id = _string(_field(entry, "id", path), f"{path}.id")
        pipeline_id = reader.text(raw_id, f"{path}.id")
        name = reader.text(_field(entry, "name", path), f"{path}.name")
        project = reader.optional_text(entry.get("project"), f"{path}.project")
        status = reader.optional_text(entry.get("status"), f"{path}.status")
        try:
            validate_pipeline_id(pipeline_id)
        except ValueError:
            skipped += 1
            continue
        if pipeline_id != raw_id:  # masked or repaired: not an id the API would know again
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


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _optional_count(value: object, path: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or not _is_count(value):
        raise _wrong_type(path, "a non-negative integer", value)
    return value
