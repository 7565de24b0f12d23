"""Fuzzing what the API may send: generated bodies, statuses and headers through the client's
parsers and error path, then the tracker and the events' wire form.

Whatever comes: nothing but the project's API error taxonomy escapes, the key shows nowhere in
any case (results, events, error messages), and memory stays bounded.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from typing import Any

import anyio
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from follower.api.client import PipelineApi, status_error
from follower.api.secret import ServiceKey
from follower.core.events import Event
from follower.core.model import LogsSnapshot
from follower.core.tail_errors import TailErrorMatcher
from follower.core.tracker import PipelineTracker
from follower.errors import ApiError
from follower.testing import FakeClock

KEY = "sk-FuzzKey-4b9E2a71"
PIPE = "pipe_fuzz"
MiB = 1024 * 1024

spellings = st.sampled_from([KEY, KEY.upper(), KEY.lower(), KEY.swapcase()])
texts = st.one_of(
    st.text(max_size=30),
    st.builds(lambda a, k, b: a + k + b, st.text(max_size=8), spellings, st.text(max_size=8)),
)
scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False)
           | texts)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=20,
)
tails = st.one_of(
    st.builds(lambda lines: "".join(f"{line}\n" for line in lines), st.lists(texts, max_size=30)),
    st.builds(lambda n, end: "x\n" * n + end, st.integers(0, 5000), st.sampled_from(["", "y"])),
    texts,
)
pods = st.lists(
    st.fixed_dictionaries({"pod": texts | json_values}, optional={"logs": tails | json_values}),
    max_size=6,
)
data = st.one_of(
    st.fixed_dictionaries({"pods": pods}, optional={"uid": texts | json_values}),
    st.fixed_dictionaries({"status": texts | json_values}, optional={
        "uid": texts, "replicas": st.integers(-1, 9) | json_values, "ready": st.integers(0, 9),
        "start_time": texts | json_values}),
    st.fixed_dictionaries({"items": st.lists(st.fixed_dictionaries(
        {"id": st.sampled_from(["pipe_a", "pipe_b", f"pipe_{KEY}", "bad id"]) | texts,
         "name": texts}, optional={"project": texts, "status": texts}), max_size=5)},
        optional={"pagination": json_values}),
    json_values,
)
envelopes = st.builds(
    lambda d, error, message, code: orjson.dumps(
        {"data": d, "error": error, "error_message": message, "error_code": code}),
    data, st.sampled_from([False, False, True, None, "no"]), texts | st.none(),
    texts | st.integers(-(2**63), 2**63 - 1) | st.none(),
)


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """A body: an envelope or any JSON, perhaps cut, with bytes not UTF-8 or lone surrogate
    escapes spliced in, or plain noise."""
    raw = draw(st.one_of(envelopes, json_values.map(orjson.dumps), st.binary(max_size=64),
                         st.just(b'{"data": {"pods": [], "uid": 123456789012345678901234567890}}')))
    if raw and draw(st.booleans()):
        at = draw(st.integers(0, len(raw)))
        junk = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\\ud800", b"\x00"]))
        raw = raw[:at] + junk + raw[at:]
    if raw and draw(st.integers(0, 9)) == 0:
        raw = raw[: draw(st.integers(0, len(raw)))]
    return raw


class Canned(PipelineApi):
    """The real client with the network replaced by one canned answer."""

    answer: tuple[int, dict[str, str], bytes] = (200, {}, b"")

    async def _fetch(self, url: URL, key: ServiceKey) -> bytes:
        status, headers, body = self.answer
        if 200 <= status < 300:
            return body
        raise status_error(status, headers.get("reason"), headers.get("Retry-After"), body,
                           now_wall=1_790_000_000.0)


def client() -> Canned:
    session: Any = None  # never used: `_fetch` is replaced
    return Canned(session, base_url="https://api.invalid", key=lambda: ServiceKey(KEY),
                  clock=FakeClock())


def leaks(value: Any) -> bool:
    """The key, in any case, anywhere in a value's text."""
    return KEY.casefold() in repr(value).casefold() or KEY.casefold() in str(value).casefold()


def ask(api: Canned, call: Callable[[], Any]) -> Any:
    """Run one client call; its result or the ApiError it raised (anything else fails)."""

    async def run() -> Any:
        try:
            return await call()
        except ApiError as error:
            return error

    return anyio.run(run)


def wire(events: list[Event]) -> bytes:
    return b"".join(orjson.dumps(event.to_wire()) for event in events)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=bodies(), status=st.sampled_from([200, 200, 200, 400, 401, 403, 404, 422, 429, 500,
                                              503, 302, 418, 599]),
       headers=st.dictionaries(st.sampled_from(["Retry-After", "reason"]),
                               texts | st.integers(0, 10**30).map(str), max_size=2))
def test_any_answer_gives_values_or_api_errors_and_never_the_key(
    raw: bytes, status: int, headers: dict[str, str]
) -> None:
    """Every endpoint's parser, on any body, status and headers: a value or an ApiError, the key
    in no result, no error message, no event; the tracker takes every logs value twice."""
    api = client()
    api.answer = (status, headers, raw)
    results = [ask(api, lambda: api.logs(PIPE)), ask(api, lambda: api.status(PIPE)),
               ask(api, lambda: api.list_page(1, 100))]
    for result in results:
        assert not leaks(result)
        if isinstance(result, ApiError):
            assert not leaks(result.message) and len(result.message) <= 300
            assert result.retry_after_s is None or 0 <= result.retry_after_s <= 3600
    snapshot = results[0]
    if isinstance(snapshot, LogsSnapshot):
        tracker = PipelineTracker(PIPE, "start", TailErrorMatcher(()))
        events = tracker.apply(snapshot, 0.0).events + tracker.apply(snapshot, 1.0).events
        assert not leaks(wire(events).decode())
        assert not leaks(tracker.snapshot())


def test_a_body_of_newlines_up_to_the_cap_stays_bounded_in_memory() -> None:
    """An 8 MiB body (the default cap) of empty lines in one pod's logs: at most max_tail_lines
    events (not 4 million), and the heap of parse and tracker stays within orjson's own 13x of
    the body (measured: orjson.loads peaks at 12.5x any 8 MiB body) plus the capped lines."""
    logs = "\n" * (4 * MiB - 64)  # each escaped as two bytes
    raw = orjson.dumps({"data": {"uid": None, "pods": [{"pod": "p", "logs": logs}]},
                        "error": False})
    api = client()
    api.answer = (200, {}, raw)
    tracemalloc.start()
    try:
        snapshot = ask(api, lambda: api.logs(PIPE))
        tracker = PipelineTracker(PIPE, "start", TailErrorMatcher(()))
        applied = tracker.apply(snapshot, 0.0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert isinstance(snapshot, LogsSnapshot)
    assert len(applied.events) <= tracker.lines.max_tail_lines + 2
    assert peak < 13 * len(raw) + 64 * MiB


@settings(max_examples=60, deadline=None)
@given(lines=st.integers(0, 20_000), width=st.integers(0, 8))
def test_many_short_lines_cost_memory_in_proportion(lines: int, width: int) -> None:
    """Many short lines within the body cap: the heap of parse and tracker grows with the lines,
    by a bounded amount per line."""
    raw = orjson.dumps({"data": {"uid": None, "pods": [{"pod": "p",
                        "logs": ("y" * width + "\n") * lines}]}, "error": False})
    api = client()
    api.answer = (200, {}, raw)
    tracemalloc.start()
    try:
        snapshot = ask(api, lambda: api.logs(PIPE))
        PipelineTracker(PIPE, "start", TailErrorMatcher(())).apply(snapshot, 0.0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 13 * len(raw) + 2 * MiB + lines * 1024
