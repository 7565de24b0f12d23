"""The HTTP client of the Pipeline REST API: requests, envelope parsing, error mapping.

This is the only module that touches aiohttp on the client side. Every aiohttp exception, HTTP
status and malformed body is translated into `follower.errors` at this boundary, through explicit
exception tuples (arq's `create_pool`), so the poll loop never sees an aiohttp type. Cancellation is
never caught. Every error message leaves through `PipelineApi._call`, which runs it through `redact`
and clips it, and every string of a body is masked by its parser with the same `Masker`, so neither
the ServiceKey (in any letter case) nor an unbounded server text can reach a log or an event.

The body parsers are `follower.api.parse` (pure functions over bytes, importable without aiohttp).
"""

from __future__ import annotations

import math
import re
import ssl
from collections.abc import Callable, Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Final, Protocol, TypeVar

import aiohttp
import orjson
import structlog
from aiohttp import hdrs
from yarl import URL

from follower import __version__
from follower.api.parse import parse_list_counted, parse_logs_body, parse_status_body
from follower.api.secret import ServiceKey, redact
from follower.clock import Clock
from follower.core.model import (
    LogsSnapshot,
    PipelinePage,
    PipelineStatus,
    validate_pipeline_id,
)
from follower.errors import (
    ApiError,
    AuthError,
    ForbiddenError,
    MalformedResponseError,
    NetworkError,
    NotFoundError,
    ServerError,
    ThrottledError,
    UnexpectedStatusError,
)

__all__ = [
    "NETWORK_ERRORS",
    "PipelineApi",
    "TailSource",
    "api_root",
    "clip",
    "create_session",
    "parse_retry_after",
    "read_capped",
    "status_error",
]

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

    async def list_page(self, page_number: int, page_size: int | None) -> PipelinePage:
        """One page (1-based) of the pipelines the key can see (None: the API's page size)."""
        ...


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
        return await self._call(url, lambda raw, key: parse_logs_body(pipeline_id, raw, mask=key))

    async def status(self, pipeline_id: str) -> PipelineStatus:
        """GET `.../{id}/status/`; ValueError for an unsafe id (sent nowhere), else ApiError."""
        url = self._pipeline_url(pipeline_id, "status")
        return await self._call(
            url, lambda raw, key: parse_status_body(pipeline_id, raw, mask=key)
        )

    async def list_page(self, page_number: int, page_size: int | None) -> PipelinePage:
        """GET `.../?page_number=&page_size=` (no page_size when None: the API's default); list
        items with an unsafe id are skipped."""
        query = {"page_number": page_number}
        if page_size is not None:
            query["page_size"] = page_size
        for name, value in query.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        url = self._root.with_query(query)
        page, skipped = await self._call(url, lambda raw, key: parse_list_counted(raw, mask=key))
        if skipped:
            _log.warning("pipeline_list_items_skipped", page_number=page_number, skipped=skipped)
        return page

    def _pipeline_url(self, pipeline_id: str, leaf: str) -> URL:
        # The id is checked before anything else, so it is exactly one safe path segment.
        return self._root.joinpath(validate_pipeline_id(pipeline_id), leaf, "")

    async def _call(self, url: URL, parse: Callable[[bytes, ServiceKey], _T]) -> _T:
        """Fetch and parse; the one exit of every ApiError, redacted and clipped on the way out.

        The parser gets the key the request was sent with, to mask it in every string of the
        body (an API echoing it into a pod name, a line or a phase must not leak it).
        """
        key = self._key()
        try:
            if not _HEADER_SAFE_KEY.fullmatch(key.reveal()):
                raise AuthError("the service key is empty or has spaces or control characters")
            return parse(await self._fetch(url, key), key)
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


