"""The Pipeline API client against real aiohttp servers on loopback (and aioresponses for a few
transport errors that a loopback server cannot produce on demand)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from email.utils import formatdate
from typing import Any, Final

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.client_reqrep import ConnectionKey
from aiohttp.test_utils import TestServer
from aioresponses_compat import compat_aioresponses
from multidict import CIMultiDict, CIMultiDictProxy
from structlog.testing import capture_logs
from yarl import URL

from follower.api.client import (
    DEFAULT_USER_AGENT,
    MAX_MESSAGE_CHARS,
    MAX_RETRY_AFTER_S,
    PipelineApi,
    TailSource,
    create_session,
    parse_retry_after,
    read_capped,
)
from follower.api.parse import parse_list_counted, parse_logs_body, parse_status_body
from follower.api.secret import MASK, ServiceKey
from follower.core.model import LogsSnapshot, PipelineInfo, PipelinePage, PipelineStatus, PodTail
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
from follower.testing import FakeClock

KEY_TEXT: Final = "sk_live_9f8e7d6c5b4a39281706f5e4d3c2b1a0"
KEY: Final = ServiceKey(KEY_TEXT)
PIPE: Final = "pipe_3e8678c5fc9e48a7bf9879ca729"
UID: Final = "covalent-postgres-pipe-fa28e4ef28fa4f7b9ffc62e162d"
POD: Final = "pipeline-covalent-postgres-pipe-fa28e4ef28fa4f7b9ffc62e162dmlm2"
LOGS_DATA: Final[dict[str, object]] = {
    "uid": UID,
    "pods": [{"pod": POD, "logs": "INFO starting worker\nINFO connected to destination\n"}],
}
MOCK_BASE: Final = "http://api.invalid"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Serve = Callable[[Handler], Awaitable[str]]
RawServe = Callable[..., Awaitable[str]]


def envelope(
    data: object, *, error: bool = False, message: str | None = None, code: object = None
) -> bytes:
    """A body in the documented envelope."""
    return orjson.dumps(
        {"data": data, "error": error, "error_message": message, "error_code": code}
    )


class Canned:
    """A handler that gives one fixed answer and records every request it sees."""

    def __init__(
        self,
        status: int = 200,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        reason: str | None = None,
    ) -> None:
        self.status, self.body, self.headers, self.reason = status, body, headers, reason
        self.seen: list[tuple[str, CIMultiDictProxy[str]]] = []

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        self.seen.append((request.raw_path, request.headers))
        return web.Response(
            status=self.status, body=self.body, headers=self.headers, reason=self.reason
        )


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start aiohttp apps that answer every GET with a handler; return their base URL."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(handler: Handler) -> str:
            async def route(request: web.Request) -> web.StreamResponse:
                return await handler(request)  # aiohttp wants a coroutine function, not a callable

            app = web.Application()
            app.router.add_route("GET", "/{tail:.*}", route)
            server = await stack.enter_async_context(TestServer(app))
            return str(server.make_url("")).rstrip("/")

        yield start


@pytest.fixture
async def raw_serve() -> AsyncIterator[RawServe]:
    """Start TCP servers that read a request head, write raw bytes, then close or reset."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(payload: bytes, *, reset: bool = False) -> str:
            async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(payload)
                await writer.drain()
                if reset:  # SO_LINGER 0: close() sends RST instead of FIN
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.close()

            server = await asyncio.start_server(handle, "127.0.0.1", 0)
            stack.push_async_callback(server.wait_closed)
            stack.callback(server.close)
            port = server.sockets[0].getsockname()[1]
            return f"http://127.0.0.1:{port}"

        yield start


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """The process-wide session, as the daemon creates it."""
    async with create_session() as created:
        yield created


def make_api(
    session: aiohttp.ClientSession,
    base_url: str,
    *,
    key: Callable[[], ServiceKey] = lambda: KEY,
    clock: FakeClock | None = None,
    timeout_s: float = 5.0,
    max_response_bytes: int = 1024 * 1024,
) -> PipelineApi:
    """A client with test-friendly defaults."""
    return PipelineApi(
        session,
        base_url=base_url,
        key=key,
        timeout_s=timeout_s,
        max_response_bytes=max_response_bytes,
        clock=clock or FakeClock(),
    )


async def api_error(call: Coroutine[Any, Any, object]) -> ApiError:
    """The ApiError `call` raises."""
    with pytest.raises(ApiError) as info:
        await call
    return info.value


def all_text(error: BaseException) -> str:
    """Everything an error could show: its traceback, and str, repr and message of every exception
    it holds as cause or context (even a suppressed one, which a careless renderer might print)."""
    texts = list(traceback.format_exception(error))
    chained: BaseException | None = error
    while chained is not None:
        texts += [str(chained), repr(chained), getattr(chained, "message", "")]
        chained = chained.__cause__ or chained.__context__
    return "\n".join(texts)


def free_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- happy paths ---------------------------------------------------------------------------------


async def test_logs_are_parsed_into_a_snapshot(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    """A documented logs answer becomes a LogsSnapshot of every pod's tail."""
    handler = Canned(body=envelope(LOGS_DATA))
    api: TailSource = make_api(session, await serve(handler))
    snapshot = await api.logs(PIPE)
    assert snapshot == LogsSnapshot(
        pipeline_id=PIPE,
        uid=UID,
        pods=(PodTail(pod=POD, logs="INFO starting worker\nINFO connected to destination\n"),),
    )
    assert handler.seen[0][0] == f"/platform/pipeline-api/{PIPE}/logs/"


async def test_every_request_carries_bearer_key_and_accept(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    """The key goes in an Authorization Bearer header, with Accept and the default User-Agent."""
    handler = Canned(body=envelope({"status": "RUNNING"}))
    await make_api(session, await serve(handler)).status(PIPE)
    headers = handler.seen[0][1]
    assert headers["Authorization"] == f"Bearer {KEY_TEXT}"
    assert headers["Accept"] == "application/json"
    assert headers["User-Agent"] == DEFAULT_USER_AGENT
    assert "Cookie" not in headers


async def test_key_is_read_again_for_every_request(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    """A rotated key is used from the next request on, without rebuilding the client."""
    handler = Canned(body=envelope({"status": "RUNNING"}))
    keys = iter([ServiceKey("sk_old"), ServiceKey("sk_new")])
    api = make_api(session, await serve(handler), key=lambda: next(keys))
    await api.status(PIPE)
    await api.status(PIPE)
    assert [headers["Authorization"] for _, headers in handler.seen] == [
        "Bearer sk_old",
        "Bearer sk_new",
    ]


async def test_status_is_parsed(serve: Serve, session: aiohttp.ClientSession) -> None:
    """The documented status answer becomes a PipelineStatus (start_time kept); extras ignored."""
    data = {"uid": UID, "status": "RUNNING", "replicas": 2, "ready": 1, "start_time": "x", "new": 1}
    handler = Canned(body=envelope(data))
    status = await make_api(session, await serve(handler)).status(PIPE)
    assert status == PipelineStatus(
        pipeline_id=PIPE, uid=UID, status="RUNNING", replicas=2, ready=1, start_time="x"
    )
    assert handler.seen[0][0] == f"/platform/pipeline-api/{PIPE}/status/"


async def test_list_page_sends_paging_and_skips_unsafe_ids(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    """list_page sends page_number and page_size, parses items and leaves out unsafe ids."""
    items = [
        {"id": PIPE, "name": "eth", "project": "p1", "status": "running", "topic": "t"},
        {"id": "../etc", "name": "hostile"},
        {"id": "pipe_b", "name": "base"},
    ]
    pagination = {"has_more": True, "page_number": 2, "page_size": 3, "total_count": 7}
    handler = Canned(body=envelope({"items": items, "pagination": pagination}))
    with capture_logs() as logs:
        page = await make_api(session, await serve(handler)).list_page(2, 3)
    assert page == PipelinePage(
        items=(
            PipelineInfo(id=PIPE, name="eth", project="p1", status="running"),
            PipelineInfo(id="pipe_b", name="base", project=None, status=None),
        ),
        has_more=True,
        total_count=7,
    )
    assert handler.seen[0][0] == "/platform/pipeline-api/?page_number=2&page_size=3"
    assert [entry["event"] for entry in logs] == ["pipeline_list_items_skipped"]
    assert logs[0]["skipped"] == 1


@pytest.mark.parametrize(
    ("suffix", "expected_prefix"),
    [("", ""), ("/", ""), ("/gateway", "/gateway"), ("/gateway/", "/gateway")],
)
async def test_base_url_may_have_trailing_slash_or_prefix(
    serve: Serve, session: aiohttp.ClientSession, suffix: str, expected_prefix: str
) -> None:
    """The API root is `{base_url}/platform/pipeline-api/` whatever the base's trailing slash."""
    handler = Canned(body=envelope(LOGS_DATA))
    await make_api(session, await serve(handler) + suffix).logs(PIPE)
    assert handler.seen[0][0] == f"{expected_prefix}/platform/pipeline-api/{PIPE}/logs/"


async def test_session_has_no_cookies_and_honours_limit_and_user_agent(
    serve: Serve,
) -> None:
    """create_session drops cookies, caps connections and sends a custom User-Agent."""
    handler = Canned(body=envelope({"status": "RUNNING"}), headers={"Set-Cookie": "s=1; Path=/"})
    async with create_session(user_agent="ops-probe/2", limit=7) as created:
        api = make_api(created, await serve(handler))
        await api.status(PIPE)
        await api.status(PIPE)
        assert isinstance(created.cookie_jar, aiohttp.DummyCookieJar)
        assert created.connector is not None
        assert created.connector.limit == 7
    assert "Cookie" not in handler.seen[1][1]
    assert handler.seen[0][1]["User-Agent"] == "ops-probe/2"


# --- statuses ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_class", "retryable"),
    [
        (401, AuthError, False),
        (403, ForbiddenError, False),
        (404, NotFoundError, False),
        (429, ThrottledError, True),
        (500, ServerError, True),
        (503, ServerError, True),
        (418, UnexpectedStatusError, False),
    ],
)
async def test_status_codes_map_to_the_taxonomy(
    serve: Serve,
    session: aiohttp.ClientSession,
    status: int,
    error_class: type[ApiError],
    retryable: bool,
) -> None:
    """Each non-2xx status raises its taxonomy class, carrying the status."""
    api = make_api(session, await serve(Canned(status=status, body=b"<html>oops</html>")))
    error = await api_error(api.logs(PIPE))
    assert type(error) is error_class
    assert error.status == status
    assert error.retryable is retryable
    assert error.retry_after_s is None
    assert error.message  # the reason phrase when the body is not an envelope


async def test_redirect_is_not_followed(serve: Serve, session: aiohttp.ClientSession) -> None:
    """A 3xx is an UnexpectedStatusError and the Location is never requested (nor sent the key)."""
    handler = Canned(status=302, headers={"Location": "/elsewhere/"})
    error = await api_error(make_api(session, await serve(handler)).logs(PIPE))
    assert isinstance(error, UnexpectedStatusError)
    assert error.status == 302
    assert "not followed" in error.message
    assert len(handler.seen) == 1


async def test_error_status_takes_the_envelope_message(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    """A JSON envelope on an error status lends its error_message to the exception."""
    body = envelope(None, error=True, message="Pipeline not found", code="404")
    error = await api_error(make_api(session, await serve(Canned(404, body))).logs(PIPE))
    assert isinstance(error, NotFoundError)
    assert error.message == "Pipeline not found"
    assert str(error) == "not_found: HTTP 404: Pipeline not found"


async def test_error_status_falls_back_to_the_reason_phrase(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    """Without an envelope the reason phrase is the message."""
    error = await api_error(make_api(session, await serve(Canned(403, b"denied"))).logs(PIPE))
    assert error.message == "Forbidden"


async def test_long_server_message_is_clipped(serve: Serve, session: aiohttp.ClientSession) -> None:
    """A long error_message is cut to MAX_MESSAGE_CHARS."""
    body = envelope(None, error=True, message="x" * 5000)
    error = await api_error(make_api(session, await serve(Canned(500, body))).logs(PIPE))
    assert len(error.message) == MAX_MESSAGE_CHARS
    assert error.message.endswith("…")


async def test_oversized_error_body_still_maps_the_status(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    """An error body too big to read still yields the status's error, with the reason phrase."""
    error = await api_error(make_api(session, await serve(Canned(500, b"x" * 200_000))).logs(PIPE))
    assert isinstance(error, ServerError)
    assert error.message == "Internal Server Error"


@pytest.mark.parametrize(
    ("status", "retry_after", "expected"),
    [
        (429, None, None),
        (429, "7", 7.0),
        (429, "HTTP-DATE+120", 120.0),
        (429, "soon", None),
        (429, "-3", None),
        (429, "86400", MAX_RETRY_AFTER_S),
        (503, "5", 5.0),
    ],
)
async def test_retry_after_is_carried_by_the_error(
    serve: Serve,
    session: aiohttp.ClientSession,
    status: int,
    retry_after: str | None,
    expected: float | None,
) -> None:
    """Retry-After (seconds or HTTP-date against the injected clock) becomes retry_after_s."""
    clock = FakeClock()
    if retry_after == "HTTP-DATE+120":
        retry_after = formatdate(clock.wall() + 120, usegmt=True)
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    api = make_api(session, await serve(Canned(status, headers=headers)), clock=clock)
    error = await api_error(api.logs(PIPE))
    assert error.status == status
    assert error.retry_after_s == expected


NOW: Final = 1_790_001_000.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("0", 0.0),
        (" 12 ", 12.0),
        ("1.5", 1.5),
        ("-1", None),
        ("1e3", None),
        ("NaN", None),
        ("tomorrow", None),
        ("9" * 400, MAX_RETRY_AFTER_S),
        (formatdate(NOW + 30, usegmt=True), 30.0),
        (formatdate(NOW + 30), 30.0),  # numeric zone "-0000"
        (formatdate(NOW + 10 * 86400, usegmt=True), MAX_RETRY_AFTER_S),
        (formatdate(NOW - 30, usegmt=True), None),
        (formatdate(NOW, usegmt=True), None),
        ("Wed, 99 Oct 2015 07:28:00 GMT", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    """Retry-After parses as delta-seconds or an HTTP-date, capped, None when unusable."""
    assert parse_retry_after(value, now_wall=NOW) == expected


# --- bodies --------------------------------------------------------------------------------------


def test_logs_body_tolerates_null_logs_missing_uid_and_extra_fields() -> None:
    """`logs: null` reads as "", a missing uid as None, and unknown fields are ignored."""
    raw = orjson.dumps(
        {"data": {"pods": [{"pod": "a", "logs": None, "restarts": 3}], "kind": "x"}, "extra": 1}
    )
    assert parse_logs_body(PIPE, raw) == LogsSnapshot(
        pipeline_id=PIPE, uid=None, pods=(PodTail(pod="a", logs=""),)
    )


def test_logs_body_with_no_pods_is_an_empty_snapshot() -> None:
    """A paused pipeline's `pods: []` is a valid, empty snapshot."""
    assert parse_logs_body(PIPE, envelope({"uid": UID, "pods": []})).pods == ()


def test_status_body_needs_only_status() -> None:
    """Only `status` is required in a status answer."""
    assert parse_status_body(PIPE, envelope({"status": "DEPLOYING", "replicas": None})) == (
        PipelineStatus(pipeline_id=PIPE, uid=None, status="DEPLOYING", replicas=None, ready=None)
    )


@pytest.mark.parametrize(
    ("pagination", "has_more", "total_count"),
    [
        (None, None, None),
        ({}, None, None),
        ({"has_more": False, "total_count": 0}, False, 0),
        ({"has_more": "yes", "total_count": "7"}, None, None),
        ({"has_more": 1, "total_count": -1}, None, None),
        ("weird", None, None),
    ],
)
def test_list_pagination_is_read_tolerantly(
    pagination: object, has_more: bool | None, total_count: int | None
) -> None:
    """Undocumented pagination fields are used when well-typed and ignored otherwise."""
    page = parse_list_counted(envelope({"items": [], "pagination": pagination}))[0]
    assert (page.has_more, page.total_count) == (has_more, total_count)


def test_list_body_without_pagination() -> None:
    """A list answer may omit pagination altogether."""
    page = parse_list_counted(envelope({"items": [{"id": PIPE, "name": "n"}]}))[0]
    assert page == PipelinePage(
        items=(PipelineInfo(id=PIPE, name="n", project=None, status=None),),
        has_more=None,
        total_count=None,
    )


def pods(*entries: object) -> bytes:
    """A logs envelope with these pod entries."""
    return envelope({"uid": UID, "pods": list(entries)})


MALFORMED_LOGS: Final = [
    (b'{"data": {"pods": [', "body is not JSON"),
    (b"", "body is not JSON"),
    (b"\xff\xfe", "body is not JSON"),
    (b"[1, 2]", "body: expected an object, got array"),
    (b'"ok"', "body: expected an object, got string"),
    (b'{"error": false}', "data: missing"),
    (b'{"data": {}, "error": "no"}', "error: expected a bool, got string"),
    (envelope(None), "data: expected an object, got null"),
    (envelope({"uid": UID}), "data.pods: missing"),
    (envelope({"pods": {}}), "data.pods: expected an array, got object"),
    (envelope({"uid": 5, "pods": []}), "data.uid: expected a string, got int"),
    (pods("x"), "data.pods[0]: expected an object, got string"),
    (pods({"logs": ""}), "data.pods[0].pod: missing"),
    (pods({"pod": 1, "logs": ""}), "data.pods[0].pod: expected a string, got int"),
    (pods({"pod": "a", "logs": ["x"]}), "data.pods[0].logs: expected a string, got array"),
    (pods({"pod": 1, "logs": ""}, {"pod": None}), "data.pods[0].pod: expected a string, got int"),
]


@pytest.mark.parametrize(("raw", "expected"), MALFORMED_LOGS)
def test_malformed_logs_body_names_the_path(raw: bytes, expected: str) -> None:
    """A logs body not in the documented shape raises MalformedResponseError naming the path."""
    with pytest.raises(MalformedResponseError) as info:
        parse_logs_body(PIPE, raw)
    assert expected in info.value.message


def test_one_bad_pod_entry_leaves_the_others_readable() -> None:
    """A duplicate name keeps its first entry, mistyped logs read as an empty tail, a nameless
    entry is left out, and each is named in `problems`; the good pods keep their lines."""
    raw = pods({"pod": "a", "logs": "1\n"}, {"pod": "b", "logs": 7}, {"pod": "a", "logs": "2\n"},
               {"logs": "x"}, "junk")
    snapshot = parse_logs_body(PIPE, raw)
    assert snapshot.pods == (PodTail("a", "1\n"), PodTail("b", ""))
    assert [(p.pod, p.problem.split(":")[0]) for p in snapshot.problems] == [
        ("b", "data.pods[1].logs"), ("a", "data.pods[2].pod"), (None, "data.pods[3].pod"),
        (None, "data.pods[4]")]


def test_bytes_that_are_not_utf8_in_one_pod_read_as_replacement_characters() -> None:
    """Invalid UTF-8 (or a lone surrogate escape) in one pod's logs: U+FFFD in its lines, the pod
    named in `problems`, the other pods untouched."""
    for bad in (b"\xc3\x28\xff", b"\\ud800"):
        raw = pods({"pod": "a", "logs": "ok\n"}, {"pod": "b", "logs": "x BAD y\n"})
        snapshot = parse_logs_body(PIPE, raw.replace(b"BAD", bad))
        assert snapshot.pods[0] == PodTail("a", "ok\n")
        assert snapshot.pods[1].logs.startswith("x \ufffd")
        assert "\ud800" not in snapshot.pods[1].logs
        assert [p.pod for p in snapshot.problems] == ["b"]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"uid": UID}, "data.status: missing"),
        ({"status": 3}, "data.status: expected a string, got int"),
        ({"status": "RUNNING", "replicas": "1"}, "data.replicas: expected a non-negative integer"),
        (
            {"status": "RUNNING", "ready": -1},
            "data.ready: expected a non-negative integer, got int",
        ),
        (
            {"status": "RUNNING", "ready": True},
            "data.ready: expected a non-negative integer, got bo",
        ),
        ({"status": "RUNNING", "replicas": 1.0}, "data.replicas: expected a non-negative integer"),
    ],
)
def test_malformed_status_body_names_the_path(data: object, expected: str) -> None:
    """A status body with a missing or mistyped field raises MalformedResponseError naming it."""
    with pytest.raises(MalformedResponseError) as info:
        parse_status_body(PIPE, envelope(data))
    assert expected in info.value.message


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"pagination": {}}, "data.items: missing"),
        ({"items": None}, "data.items: expected an array, got null"),
        ({"items": [{"id": PIPE, "name": "a"}, {"id": 42, "name": "b"}]}, "data.items[1].id: exp"),
        ({"items": [{"id": PIPE}]}, "data.items[0].name: missing"),
        ({"items": [{"id": PIPE, "name": "a", "project": 1}]}, "data.items[0].project: expected"),
        ({"items": [7]}, "data.items[0]: expected an object, got int"),
    ],
)
def test_malformed_list_body_names_the_path(data: object, expected: str) -> None:
    """A list body whose structure is wrong raises MalformedResponseError naming the path."""
    with pytest.raises(MalformedResponseError) as info:
        parse_list_counted(envelope(data))[0]
    assert expected in info.value.message


async def test_malformed_body_from_server(serve: Serve, session: aiohttp.ClientSession) -> None:
    """A truncated body is malformed even when served with a JSON Content-Type."""
    handler = Canned(
        body=b'{"data": {"pods": [{"pod"', headers={"Content-Type": "application/json"}
    )
    error = await api_error(make_api(session, await serve(handler)).logs(PIPE))
    assert isinstance(error, MalformedResponseError)
    assert error.retryable


async def test_body_is_parsed_whatever_the_content_type(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    """A valid envelope served as text/html is parsed all the same."""
    handler = Canned(body=envelope(LOGS_DATA), headers={"Content-Type": "text/html"})
    assert (await make_api(session, await serve(handler)).logs(PIPE)).uid == UID


@pytest.mark.parametrize(
    ("message", "code", "expected"),
    [
        ("pipeline is being deleted", "409", "pipeline is being deleted (error_code 409)"),
        ("quota", 500, "quota (error_code 500)"),
        (None, None, "error without a message"),
    ],
)
async def test_envelope_error_on_2xx(
    serve: Serve, session: aiohttp.ClientSession, message: str | None, code: object, expected: str
) -> None:
    """`error: true` under a 2xx status raises EnvelopeError with error_message and error_code."""
    body = envelope(None, error=True, message=message, code=code)
    error = await api_error(make_api(session, await serve(Canned(body=body))).logs(PIPE))
    assert isinstance(error, EnvelopeError)
    assert error.message == expected


# --- size cap ------------------------------------------------------------------------------------

CAP: Final = 4096


def padded(size: int) -> bytes:
    """A valid logs envelope padded with JSON whitespace to exactly `size` bytes."""
    body = envelope(LOGS_DATA)
    return body + b" " * (size - len(body))


async def chunked(body: bytes, request: web.Request, chunk: int = 1000) -> web.StreamResponse:
    """Send `body` with chunked transfer encoding (no Content-Length)."""
    response = web.StreamResponse()
    response.enable_chunked_encoding()
    await response.prepare(request)
    for start in range(0, len(body), chunk):
        await response.write(body[start : start + chunk])
    await response.write_eof()
    return response


@pytest.mark.parametrize("use_chunked", [False, True], ids=["content-length", "chunked"])
async def test_body_of_exactly_the_cap_is_accepted(
    serve: Serve, session: aiohttp.ClientSession, use_chunked: bool
) -> None:
    """A body of exactly max_response_bytes is read and parsed."""

    async def handler(request: web.Request) -> web.StreamResponse:
        if use_chunked:
            return await chunked(padded(CAP), request)
        return web.Response(body=padded(CAP))

    api = make_api(session, await serve(handler), max_response_bytes=CAP)
    assert (await api.logs(PIPE)).uid == UID


@pytest.mark.parametrize("use_chunked", [False, True], ids=["content-length", "chunked"])
async def test_body_over_the_cap_is_rejected(
    serve: Serve, session: aiohttp.ClientSession, use_chunked: bool
) -> None:
    """One byte over max_response_bytes is a MalformedResponseError, announced or streamed."""

    async def handler(request: web.Request) -> web.StreamResponse:
        if use_chunked:
            return await chunked(padded(CAP + 1), request)
        return web.Response(body=padded(CAP + 1))

    api = make_api(session, await serve(handler), max_response_bytes=CAP)
    error = await api_error(api.logs(PIPE))
    assert isinstance(error, MalformedResponseError)
    assert error.message == f"response body exceeds {CAP} bytes"


async def test_endless_body_is_cut_off(serve: Serve, session: aiohttp.ClientSession) -> None:
    """A server streaming far more than the cap is cut off instead of read to the end."""

    async def handler(request: web.Request) -> web.StreamResponse:
        return await chunked(b"x" * (64 * 1024 * 1024), request, chunk=64 * 1024)

    api = make_api(session, await serve(handler), max_response_bytes=CAP)
    error = await api_error(api.logs(PIPE))
    assert error.message == f"response body exceeds {CAP} bytes"


class EndlessStream:
    """A body stream that never ends and records how much was asked of it."""

    def __init__(self) -> None:
        self.delivered = 0

    async def read(self, n: int = -1) -> bytes:
        assert n > 0, "read_capped must always bound its reads"
        self.delivered += n
        return b"x" * n


async def test_read_capped_never_buffers_more_than_cap_plus_one() -> None:
    """read_capped stops after cap+1 bytes of an endless stream."""
    stream = EndlessStream()
    with pytest.raises(MalformedResponseError):
        await read_capped(stream, None, 200_000)
    assert stream.delivered == 200_001


async def test_read_capped_rejects_a_large_content_length_before_reading() -> None:
    """A Content-Length above the cap is rejected without reading a byte."""
    stream = EndlessStream()
    with pytest.raises(MalformedResponseError):
        await read_capped(stream, 10_000, 9_999)
    assert stream.delivered == 0


# --- transport failures --------------------------------------------------------------------------


async def test_timeout_is_a_network_error(serve: Serve, session: aiohttp.ClientSession) -> None:
    """A server that never answers raises NetworkError after timeout_s."""
    never = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        await never.wait()
        raise AssertionError("unreachable")

    api = make_api(session, await serve(handler), timeout_s=0.2)
    error = await api_error(api.logs(PIPE))
    assert isinstance(error, NetworkError)
    assert error.message == "timed out after 0.2 s"


async def test_timeout_covers_reading_the_body(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    """A server that stalls in the middle of the body also times out."""
    never = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b'{"data": ')
        await never.wait()
        raise AssertionError("unreachable")

    api = make_api(session, await serve(handler), timeout_s=0.2)
    error = await api_error(api.logs(PIPE))
    assert isinstance(error, NetworkError)
    assert "timed out" in error.message


async def test_cancellation_propagates_untouched(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    """Cancelling a request in flight raises CancelledError, never an ApiError."""
    entered, never = asyncio.Event(), asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        entered.set()
        await never.wait()
        raise AssertionError("unreachable")

    api = make_api(session, await serve(handler), timeout_s=60)
    task = asyncio.ensure_future(api.logs(PIPE))
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_connection_refused_is_a_network_error(session: aiohttp.ClientSession) -> None:
    """A closed port raises NetworkError."""
    error = await api_error(make_api(session, f"http://127.0.0.1:{free_port()}").logs(PIPE))
    assert isinstance(error, NetworkError)
    assert error.status is None
    assert "ClientConnectorError" in error.message


@pytest.mark.parametrize(
    ("payload", "reset"),
    [
        (b"", False),
        (b"", True),
        (b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"data"', False),
        (b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"da', False),
        (b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"data"', True),
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", False),
    ],
    ids=["closed", "reset", "short-body", "short-chunk", "reset-in-body", "not-http"],
)
async def test_broken_connections_are_network_errors(
    raw_serve: RawServe, session: aiohttp.ClientSession, payload: bytes, reset: bool
) -> None:
    """A server that closes, resets, cuts the body short or speaks no HTTP raises NetworkError."""
    api = make_api(session, await raw_serve(payload, reset=reset))
    error = await api_error(api.logs(PIPE))
    assert isinstance(error, NetworkError)
    assert error.retryable


def connection_key() -> ConnectionKey:
    """The connection key aiohttp's connector errors are built from."""
    return ConnectionKey("api.invalid", 443, True, True, None, None, None)


@pytest.mark.parametrize(
    ("exception", "expected"),
    [
        (aiohttp.ClientConnectorError(connection_key(), OSError(111, "refused")), "Connector"),
        (
            aiohttp.ClientConnectorCertificateError(
                connection_key(), ssl.SSLCertVerificationError("certificate verify failed")
            ),
            "certificate",
        ),
        (aiohttp.ClientSSLError(connection_key(), OSError(1, "handshake")), "ClientSSLError"),
        (ssl.SSLError(1, "bad record mac"), "bad record mac"),
        (aiohttp.ClientPayloadError("Response payload is not completed"), "payload"),
        (aiohttp.ServerDisconnectedError(), "Server disconnected"),
        (aiohttp.ClientConnectionResetError("Cannot write to closing transport"), "closing"),
        (ConnectionResetError(104, "Connection reset by peer"), "reset by peer"),
        (aiohttp.ServerTimeoutError("read timeout"), "timed out after 5 s"),
        (TimeoutError(), "timed out after 5 s"),
    ],
)
async def test_transport_exceptions_map_to_network_error(
    session: aiohttp.ClientSession, exception: BaseException, expected: str
) -> None:
    """aiohttp, ssl and OS transport exceptions all become NetworkError with a useful message."""
    with compat_aioresponses() as mocked:
        mocked.get(f"{MOCK_BASE}/platform/pipeline-api/{PIPE}/logs/", exception=exception)
        error = await api_error(make_api(session, MOCK_BASE).logs(PIPE))
    assert type(error) is NetworkError
    assert expected in error.message
    assert error.__cause__ is None
    assert error.__context__ is None  # the aiohttp exception (headers, key) is not kept


async def test_compat_shim_builds_mocked_responses(session: aiohttp.ClientSession) -> None:
    """aioresponses with the compat response class serves a body aiohttp 3.14 can read."""
    url = f"{MOCK_BASE}/platform/pipeline-api/{PIPE}/status/"
    with compat_aioresponses() as mocked:
        mocked.get(url, body=envelope({"status": "RUNNING"}))
        status = await make_api(session, MOCK_BASE).status(PIPE)
    assert status.status == "RUNNING"


# --- hostile input and the key -------------------------------------------------------------------

HOSTILE_IDS: Final = [
    "../x",
    "pipe_a/../b",
    "pipe_a%2F",
    "pipe_a%2e%2e",
    "pipe_a\r\nX-Injected: 1",
    "pipe_a\n",
    "",
    "pipe_",
    "pipe_a/b",
    "pipe_a?x=1",
    "pipe_a#frag",
    "pipe_a b",
    "PIPE_a",
]


@pytest.mark.parametrize("pipeline_id", HOSTILE_IDS)
@pytest.mark.parametrize("method", ["logs", "status"])
async def test_hostile_pipeline_ids_are_rejected_before_any_request(
    serve: Serve, session: aiohttp.ClientSession, pipeline_id: str, method: str
) -> None:
    """An id that could escape its path segment raises ValueError before any request or key read."""
    handler = Canned(body=envelope(LOGS_DATA))
    key_reads: list[None] = []

    def key() -> ServiceKey:
        key_reads.append(None)
        return KEY

    api = make_api(session, await serve(handler), key=key)
    with pytest.raises(ValueError, match="invalid pipeline id"):
        await getattr(api, method)(pipeline_id)
    assert handler.seen == []
    assert key_reads == []


@pytest.mark.parametrize("bad", [0, -1, True, 2.0])
async def test_list_page_rejects_bad_paging(session: aiohttp.ClientSession, bad: Any) -> None:
    """page_number and page_size must be positive integers."""
    api = make_api(session, MOCK_BASE)
    with pytest.raises(ValueError, match="page_number"):
        await api.list_page(bad, 10)
    with pytest.raises(ValueError, match="page_size"):
        await api.list_page(1, bad)


@pytest.mark.parametrize(
    "base_url",
    ["ftp://api.example", "api.covalenthq.com", "http://", "https://h/?x=1", "https://h/#f"],
)
async def test_bad_base_url_is_a_value_error(session: aiohttp.ClientSession, base_url: str) -> None:
    """A base_url that is not a plain http(s) URL is a configuration error."""
    with pytest.raises(ValueError, match="base_url"):
        make_api(session, base_url)


async def test_base_url_with_credentials_is_rejected_without_echoing_them(
    session: aiohttp.ClientSession,
) -> None:
    """Credentials in base_url are refused and never repeated in the message."""
    with pytest.raises(ValueError, match="credentials") as info:
        make_api(session, "https://user:hunter2@api.example")
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    ("option", "value"),
    [("timeout_s", 0.0), ("timeout_s", float("nan")), ("max_response_bytes", 0)],
)
async def test_bad_limits_are_value_errors(
    session: aiohttp.ClientSession, option: str, value: Any
) -> None:
    """timeout_s and max_response_bytes must be positive."""
    with pytest.raises(ValueError, match=option):
        PipelineApi(
            session, base_url=MOCK_BASE, key=lambda: KEY, clock=FakeClock(), **{option: value}
        )


@pytest.mark.parametrize("text", ["", "sk_live abc", "sk_live_abc\r\nX-Injected: 1", "sk_é"])
async def test_unusable_key_is_an_auth_error_without_a_request(
    serve: Serve, session: aiohttp.ClientSession, text: str
) -> None:
    """A key that cannot go in a header raises AuthError before any request, without echoing it."""
    handler = Canned(body=envelope(LOGS_DATA))
    api = make_api(session, await serve(handler), key=lambda: ServiceKey(text))
    error = await api_error(api.logs(PIPE))
    assert isinstance(error, AuthError)
    assert handler.seen == []
    if text:
        assert text not in all_text(error)


def echo_key(status: int, *, where: str) -> Handler:
    """A handler that answers `status` and puts the caller's key in the body or reason phrase."""

    async def handler(request: web.Request) -> web.StreamResponse:
        key = request.headers["Authorization"].removeprefix("Bearer ")
        if where == "reason":
            return web.Response(status=status, reason=f"Bad key {key}", body=b"not json")
        if where == "clipped":
            message = (
                "y" * (MAX_MESSAGE_CHARS - 20) + key
            )  # clipping first would leave 19 chars of key
            return web.Response(status=status, body=envelope(None, error=True, message=message))
        if where == "code":
            body = envelope(None, error=True, message=f"key {key}", code=f"E-{key}")
            return web.Response(status=status, body=body)
        return web.Response(status=status, body=envelope(None, error=True, message=f"key {key}"))

    return handler


@pytest.mark.parametrize(
    ("status", "where"),
    [
        (401, "message"),
        (401, "reason"),
        (403, "message"),
        (404, "clipped"),
        (429, "message"),
        (500, "reason"),
        (503, "clipped"),
        (418, "message"),
        (200, "message"),
        (200, "code"),
        (200, "clipped"),
    ],
)
async def test_key_echoed_by_the_server_never_appears_in_errors(
    serve: Serve, session: aiohttp.ClientSession, status: int, where: str
) -> None:
    """Whatever the server echoes back, the key (or a clipped piece of it) is masked."""
    api = make_api(session, await serve(echo_key(status, where=where)))
    error = await api_error(api.logs(PIPE))
    text = all_text(error)
    assert KEY_TEXT[:12] not in text
    assert MASK in error.message


@pytest.mark.parametrize("reset", [False, True])
async def test_key_in_a_garbage_response_never_appears_in_errors(
    raw_serve: RawServe, session: aiohttp.ClientSession, reset: bool
) -> None:
    """A non-HTTP answer quoting the key raises a NetworkError with the key masked."""
    api = make_api(session, await raw_serve(f"{KEY_TEXT} what\r\n\r\n".encode(), reset=reset))
    error = await api_error(api.logs(PIPE))
    assert isinstance(error, NetworkError)
    assert KEY_TEXT[:12] not in all_text(error)


async def test_key_never_appears_in_mapped_transport_errors(
    session: aiohttp.ClientSession,
) -> None:
    """A transport exception quoting the key, or holding it in its request headers, is masked."""
    request_info = aiohttp.RequestInfo(
        url=URL(MOCK_BASE),
        method="GET",
        headers=CIMultiDictProxy(CIMultiDict(Authorization=f"Bearer {KEY_TEXT}")),
        real_url=URL(MOCK_BASE),
    )
    exceptions: list[BaseException] = [
        aiohttp.ClientPayloadError(f"payload broken near {KEY_TEXT}"),
        aiohttp.ClientResponseError(request_info, (), status=400, message="Bad status line"),
        TimeoutError(KEY_TEXT),
    ]
    for exception in exceptions:
        with compat_aioresponses() as mocked:
            mocked.get(f"{MOCK_BASE}/platform/pipeline-api/{PIPE}/logs/", exception=exception)
            error = await api_error(make_api(session, MOCK_BASE).logs(PIPE))
        assert isinstance(error, NetworkError)
        assert KEY_TEXT[:12] not in all_text(error), exception


async def test_key_never_appears_in_malformed_or_refused_errors(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    """Across malformed bodies, oversize bodies and refused connections, no error shows the key."""
    bodies = [raw for raw, _ in MALFORMED_LOGS] + [b"x" * (CAP + 1)]
    errors = []
    for raw in bodies:
        api = make_api(session, await serve(Canned(body=raw)), max_response_bytes=CAP)
        errors.append(await api_error(api.logs(PIPE)))
    refused = make_api(session, f"http://127.0.0.1:{free_port()}")
    errors.append(await api_error(refused.logs(PIPE)))
    for error in errors:
        assert KEY_TEXT not in all_text(error)
