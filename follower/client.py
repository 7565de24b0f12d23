"""The HTTP client of the Pipeline REST API: requests, envelope parsing, error mapping.

This is the only module that touches aiohttp on the client side. Every aiohttp exception, HTTP
status and malformed body is translated into `follower.errors` at this boundary, through explicit
exception tuples (arq's `create_pool`), so the poll loop never sees an aiohttp type. Cancellation is
never caught. Every error message leaves through `PipelineApi._call`, which runs it through `redact`
and clips it, so neither the ServiceKey nor an unbounded server text can reach a log.

The body parsers (`parse_logs_body`, `parse_status_body`, `parse_list_body`) are pure functions
over bytes, so the wire format is table-tested without a server.
"""

from __future__ import annotations

import math
import re
import ssl
from collections.abc import Callable, Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Final, Protocol, TypedDict, TypeVar

import aiohttp
import orjson
import structlog
from aiohttp import hdrs
from yarl import URL

from follower import __version__
from follower.clock import Clock
from follower.errors import (
    ApiError,
    AuthError,
    EnvelopeError,
    ForbiddenError,
    MalformedResponseError,
    NetworkError,
    NotFoundError,
    ServerError,
    ThrottledError,
    UnexpectedStatusError,
)
from follower.model import (
    LogsSnapshot,
    PipelineInfo,
    PipelinePage,
    PipelineStatus,
    PodTail,
    validate_pipeline_id,
)
from follower.secret import ServiceKey, redact

DEFAULT_BASE_URL: Final = "https://api.covalenthq.com"
DEFAULT_USER_AGENT: Final = f"goldrush-follower/{__version__} aiohttp/{aiohttp.__version__}"
DEFAULT_TIMEOUT_S: Final = 10.0
DEFAULT_MAX_RESPONSE_BYTES: Final = 8 * 1024 * 1024
MAX_RETRY_AFTER_S: Final = 3600.0
"""A longer Retry-After is cut to this: a typo or a hostile proxy must not park us for days."""

MAX_MESSAGE_CHARS: Final = 300
_ERROR_BODY_MAX_BYTES: Final = 64 * 1024  # of a non-2xx body we only want `error_message`
_READ_CHUNK_BYTES: Final = 64 * 1024
_DNS_CACHE_TTL_S: Final = 300
# A bearer token is visible ASCII (RFC 6750 token68 is narrower); anything else would be a header
# injection or an aiohttp ValueError whose text could carry the key.
_HEADER_SAFE_KEY: Final = re.compile(r"[\x21-\x7e]+")
_DELTA_SECONDS: Final = re.compile(r"[0-9]+(?:\.[0-9]+)?")

# The timeouts (asyncio.TimeoutError, aiohttp.ServerTimeoutError) are caught before these so they
# get their own message. asyncio.CancelledError is a BaseException and is never caught.
NETWORK_ERRORS: Final = (
    aiohttp.ClientConnectorError,  # DNS, refused, unreachable, TLS handshake and certificate
    aiohttp.ServerDisconnectedError,  # closed before or during the response
    aiohttp.ClientOSError,  # reset by peer and other socket errors
    aiohttp.ClientConnectionError,  # the rest of the connection family (reset while writing, ...)
    aiohttp.ClientPayloadError,  # body cut short, broken chunking or compression
    aiohttp.ClientResponseError,  # unparsable status line or headers (raise_for_status is off)
    ssl.SSLError,  # TLS errors raised by the transport after the handshake
    ConnectionError,  # a reset/refused/aborted socket error that aiohttp did not wrap
)

_STATUS_ERRORS: Final[Mapping[int, type[ApiError]]] = {
    401: AuthError,
    403: ForbiddenError,
    404: NotFoundError,
    429: ThrottledError,
}

_log = structlog.get_logger(__name__)
_T = TypeVar("_T")


class TailSource(Protocol):
    """What the poll loop needs from the API; `PipelineApi` is the real one."""

    async def logs(self, pipeline_id: str) -> LogsSnapshot:
        """The current tail of every pod of the pipeline."""
        ...

    async def status(self, pipeline_id: str) -> PipelineStatus:
        """The runtime phase of the pipeline."""
        ...

    async def list_page(self, page_number: int, page_size: int) -> PipelinePage:
        """One page (1-based) of the pipelines the key can see."""
        ...


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


# --- the session ---------------------------------------------------------------------------------


def create_session(*, user_agent: str | None = None, limit: int = 100) -> aiohttp.ClientSession:
    """The one ClientSession of the process; call it inside the running loop and close it after.

    No cookies (the API is stateless and a cookie must not outlive a key), statuses are mapped by
    `PipelineApi` rather than raised, and DNS answers are cached for a few minutes.
    """
    connector = aiohttp.TCPConnector(limit=limit, ttl_dns_cache=_DNS_CACHE_TTL_S)
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        headers={hdrs.USER_AGENT: user_agent or DEFAULT_USER_AGENT},
        raise_for_status=False,
        auto_decompress=True,
    )


def api_root(base_url: str) -> URL:
    """`{base_url}/platform/pipeline-api/`; ValueError unless base_url is a plain http(s) URL."""
    url = URL(base_url)
    if url.user is not None or url.password is not None:
        raise ValueError("base_url must not contain credentials")  # and must not be echoed
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"base_url must be an absolute http(s) URL, got {base_url!r}")
    if url.query_string or url.fragment:
        raise ValueError(f"base_url must not have a query or a fragment, got {base_url!r}")
    return url.joinpath("platform", "pipeline-api", "")


class PipelineApi:
    """The Pipeline REST API over one shared session; implements `TailSource`.

    `key` is called before every request, so a rotated key file is picked up without a restart.
    Every request is bounded by `timeout_s` (connect to last byte) and `max_response_bytes`.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        key: Callable[[], ServiceKey],
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        clock: Clock,
        on_unauthorized: Callable[[], None] | None = None,
    ) -> None:
        """`on_unauthorized` is called on every 401 (the key holder re-reads its key file)."""
        if not (math.isfinite(timeout_s) and timeout_s > 0):
            raise ValueError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
        if max_response_bytes < 1:
            raise ValueError(f"max_response_bytes must be positive, got {max_response_bytes!r}")
        self._session = session
        self._root = api_root(base_url)
        self._key = key
        self._timeout_s = timeout_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._max_bytes = max_response_bytes
        self._clock = clock
        self._on_unauthorized = on_unauthorized

    async def logs(self, pipeline_id: str) -> LogsSnapshot:
        """GET `.../{id}/logs/`; ValueError for an unsafe id (sent nowhere), else ApiError."""
        url = self._pipeline_url(pipeline_id, "logs")
        key = self._key()  # an API echoing the key into a pod name or a line must not leak it
        return await self._call(url, lambda raw: parse_logs_body(pipeline_id, raw, mask=key))

    async def status(self, pipeline_id: str) -> PipelineStatus:
        """GET `.../{id}/status/`; ValueError for an unsafe id (sent nowhere), else ApiError."""
        url = self._pipeline_url(pipeline_id, "status")
        return await self._call(url, lambda raw: parse_status_body(pipeline_id, raw))

    async def list_page(self, page_number: int, page_size: int) -> PipelinePage:
        """GET `.../?page_number=&page_size=`; list items with an unsafe id are skipped."""
        for name, value in (("page_number", page_number), ("page_size", page_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        url = self._root.with_query(page_number=page_number, page_size=page_size)
        page, skipped = await self._call(url, _parse_list)
        if skipped:
            _log.warning("pipeline_list_items_skipped", page_number=page_number, skipped=skipped)
        return page

    def _pipeline_url(self, pipeline_id: str, leaf: str) -> URL:
        # The id is checked before anything else, so it is exactly one safe path segment.
        return self._root.joinpath(validate_pipeline_id(pipeline_id), leaf, "")

    async def _call(self, url: URL, parse: Callable[[bytes], _T]) -> _T:
        """Fetch and parse; the one exit of every ApiError, redacted and clipped on the way out."""
        key = self._key()
        try:
            if not _HEADER_SAFE_KEY.fullmatch(key.reveal()):
                raise AuthError("the service key is empty or has spaces or control characters")
            return parse(await self._fetch(url, key))
        except ApiError as exc:
            if isinstance(exc, AuthError) and self._on_unauthorized is not None:
                self._on_unauthorized()
            safe = clip(redact(exc.message, key))
            if safe == exc.message:
                raise
            cleaned = type(exc)(safe, status=exc.status, retry_after_s=exc.retry_after_s)
        raise cleaned  # outside the handler, so the unredacted error is not kept as __context__

    async def _fetch(self, url: URL, key: ServiceKey) -> bytes:
        """The 2xx body, capped; anything else raised as an ApiError.

        The NetworkError is raised outside the handler, so it has no `__context__`: aiohttp
        exceptions carry the request headers, and so the key, in their repr.
        """
        headers = {hdrs.AUTHORIZATION: f"Bearer {key.reveal()}", hdrs.ACCEPT: "application/json"}
        try:
            async with self._session.get(
                url, headers=headers, timeout=self._timeout, allow_redirects=False
            ) as response:
                if 200 <= response.status < 300:
                    return await read_capped(
                        response.content, response.content_length, self._max_bytes
                    )
                body = await _read_error_body(response)
                raise status_error(
                    response.status,
                    response.reason,
                    response.headers.get(hdrs.RETRY_AFTER),
                    body,
                    now_wall=self._clock.wall(),
                )
        except TimeoutError:
            failure = NetworkError(f"timed out after {self._timeout_s:g} s")
        except NETWORK_ERRORS as exc:
            failure = NetworkError(" ".join(f"{type(exc).__name__}: {exc}".split()))
        raise failure


# --- reading the body ----------------------------------------------------------------------------


class _ByteStream(Protocol):
    async def read(self, n: int = -1) -> bytes: ...


async def read_capped(stream: _ByteStream, declared: int | None, cap: int) -> bytes:
    """The whole body, or MalformedResponseError as soon as it is known to exceed `cap` bytes.

    A Content-Length above the cap is rejected before reading; otherwise at most cap+1 bytes are
    ever buffered, whatever the server sends or claims.
    """
    if declared is not None and declared > cap:
        raise _too_large(cap)
    buffer = bytearray()
    while chunk := await stream.read(min(_READ_CHUNK_BYTES, cap + 1 - len(buffer))):
        buffer += chunk
        if len(buffer) > cap:
            raise _too_large(cap)
    return bytes(buffer)


def _too_large(cap: int) -> MalformedResponseError:
    return MalformedResponseError(f"response body exceeds {cap} bytes")


async def _read_error_body(response: aiohttp.ClientResponse) -> bytes:
    """Best effort: the status already says what happened, the body may only add a message."""
    try:
        return await read_capped(response.content, response.content_length, _ERROR_BODY_MAX_BYTES)
    except (MalformedResponseError, TimeoutError, *NETWORK_ERRORS):
        return b""


# --- statuses ------------------------------------------------------------------------------------


def status_error(
    status: int, reason: str | None, retry_after: str | None, body: bytes, *, now_wall: float
) -> ApiError:
    """The ApiError for a non-2xx answer, with the envelope's `error_message` when there is one.

    Retry-After is honoured on 429 and, as RFC 9110 allows, on 503.
    """
    message = _envelope_message(body) or reason or "no reason given"
    if 300 <= status < 400:
        message += " (redirects are not followed)"
    delay = parse_retry_after(retry_after, now_wall=now_wall) if status in (429, 503) else None
    error_class = _STATUS_ERRORS.get(status)
    if error_class is None:
        error_class = ServerError if 500 <= status < 600 else UnexpectedStatusError
    return error_class(message, status=status, retry_after_s=delay)


def _envelope_message(body: bytes) -> str | None:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    message = document.get("error_message") if isinstance(document, dict) else None
    return message if isinstance(message, str) and message.strip() else None


def parse_retry_after(value: str | None, *, now_wall: float) -> float | None:
    """Seconds to wait from a Retry-After value (delta-seconds or HTTP-date), capped.

    None when absent, unparsable, negative, or a date that is not in the future (with clock skew a
    past date says nothing useful; the caller's own backoff applies).
    """
    text = (value or "").strip()
    if not text:
        return None
    if _DELTA_SECONDS.fullmatch(text):
        return min(float(text), MAX_RETRY_AFTER_S)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment.tzinfo is None:  # RFC 5322 "-0000": UTC with unknown origin
        moment = moment.replace(tzinfo=UTC)
    seconds = moment.timestamp() - now_wall
    return min(seconds, MAX_RETRY_AFTER_S) if seconds > 0 else None


def clip(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """`text` cut to `limit` characters, marked when cut; apply after redaction, never before."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
    return _parse_list(raw)[0]


def _parse_list(raw: bytes) -> tuple[PipelinePage, int]:
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
