"""Events as JSON Lines bytes: every line within the line limit, a poll's lines in bounded pieces.

Shippers drop or split lines longer than they accept (32 KiB by default for Vector and Fluent Bit),
so `max_line_bytes` bounds the whole encoded event, its newline included, whatever field is long:
a line cut by the tracker and then escaped (a control character is 6 bytes in JSON), a huge pod
name, enrichment fields. An event over the limit is fitted (rare, so the common path pays one
length check): an over-long id has its long parts replaced by a digest, then the longest strings
are cut with the `…[cut N bytes]` marker of `follower.core.model.cut_line`, and the event says
`truncated: true`.

Ids stay stable and unique when fitted: a long part (a pod name) becomes `{head}%#{digest}`, where
the digest is a BLAKE2b-128 of the whole part, so the id still names this one line, and `%#` never
appears in a part that was not hashed (event ids escape `%` as `%25`).

A plain log event (no flag, no enrichment: nearly every event of a busy follower) is written
from a template, without `to_wire()`'s dict: the fields it shares with the events before it
(`ts`, `pipeline_id`, `pod` and the id's head) are JSON-encoded once per run of one pod's lines,
then each line adds its `seq` and its JSON-encoded message. A `LogRun` of a tracker's batch
(follower/core/batch.py) is written so line by line from its text, without an event per line.
The bytes are those of `orjson.dumps(event.to_wire())`, field order and escaping included (a
property test holds the two together); every other event, and a line over the limit, takes the
general path.

Encoding a poll of 400,000 one-character lines at once held 1.8 GB (each small `orjson.dumps`
result keeps a 4 KiB buffer), so a poll is encoded in pieces of at most `PIECE_EVENTS` events or
about `PIECE_BYTES`, each written before the next is encoded.
"""

from __future__ import annotations

import hashlib
import operator
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Final

import orjson

from follower.core.batch import EventBatch, LogRun
from follower.core.events import Event, LogEvent
from follower.core.model import (
    DEFAULT_MAX_LINE_BYTES,
    SCHEMA_VERSION,
    JsonValue,
    Wire,
    format_ts,
    seq_prefix,
)

PIECE_EVENTS: Final = 256
"""Events encoded and written at once: their encodings (~4 KiB each while separate) stay ~1 MB."""
PIECE_BYTES: Final = 1 << 20
"""A piece ends once its lines reach this many bytes (long lines fill it before PIECE_EVENTS)."""
_SLICE_CHARS: Final = PIECE_BYTES // 6
"""A run's lines are encoded in slices of at most this many characters of text (a character
takes at most 6 bytes of JSON, `\\u0001`), as well as of `PIECE_EVENTS` lines."""
MIN_EVENT_BYTES: Final = 1024
"""The smallest line limit applied to a whole event: room for the fields no cut can shorten
(`ts`, `event`, `pipeline_id`, a hashed id, numbers) and a marker per cut field."""
ID_MAX_BYTES: Final = 384
"""A fitted event's id whose JSON string is longer than this has its long parts hashed."""
ID_PART_BYTES: Final = 64
"""The parts of such an id whose JSON is longer than this become `{head}%#{digest}`."""
ID_HEAD_BYTES: Final = 24
"""At most this much (JSON-encoded) of a hashed part's beginning is kept, for people."""
FIXED: Final = frozenset({"ts", "event", "pipeline_id", "id", "schema"})
"""Wire fields never cut: they identify the event (the id is hashed instead)."""
CUT_FLOOR: Final = 64
"""Strings of at most this many encoded bytes are cut only when dropping `fields` did not do."""
MARKER_RE: Final = re.compile(r"\u2026\[cut (\d+) bytes\]\Z")

_dumps, _NEWLINE = orjson.dumps, orjson.OPT_APPEND_NEWLINE
_SIZE = operator.itemgetter(0)


def line_limit(max_line_bytes: int) -> int:
    """The bound applied to a whole encoded event for the setting `output.max_line_bytes`."""
    return max(max_line_bytes, MIN_EVENT_BYTES)


_LOG_LINE: Final = b'%s,"seq":%d,"message":%s,"id":%s%d","schema":' + b"%d}\n" % SCHEMA_VERSION
"""A plain log event's line after its head: `LogEvent.to_wire()`'s fields, in its order."""
_NOTHING: Final = object()
"""What no field of an event is (the run key before the first plain log event)."""


def _log_head(ts: float, pipeline_id: str, pod: str, epoch: str | None) -> tuple[bytes, bytes]:
    """What a run of one pod's plain log events share: the line up to `seq` (without the comma)
    and the id's JSON up to its `seq` (opening quote included, closing quote not). Not cached
    beyond the run: a hostile pod name can make it megabytes."""
    head = _dumps({"ts": format_ts(ts), "event": LogEvent.kind, "pipeline_id": pipeline_id,
                   "pod": pod})
    return head[:-1], _dumps(seq_prefix(pipeline_id, pod, epoch) + "/")[:-1]


def encode_line(event: Event, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> bytes:
    """`event` as one JSON line (newline included) of at most `line_limit(max_line_bytes)` bytes."""
    return next(encoded_lines((event,), max_line_bytes))


def encode(events: Sequence[Event], max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> bytes:
    """The JSON Lines bytes of `events` (all at once: for small batches; sinks use `pieces`)."""
    return b"".join(pieces(events, max_line_bytes))


def encoded_lines(events: Iterable[Event], max_line_bytes: int) -> Iterator[bytes]:
    """Each event's JSON line (newline included), in order, each within the line limit."""
    for lines in _encoded(events, max_line_bytes):
        yield from lines


def _encoded(events: Iterable[Event], max_line_bytes: int) -> Iterator[list[bytes]]:
    """The events' JSON lines, in order, in lists: a `LogRun`'s lines in one, any other
    event's line alone.

    The hot path: a run (follower/core/batch.py) encodes its shared head once and costs one
    `%` of the template and one `orjson.dumps` per line, without an event per line. A plain
    log event (no optional field set) of the same pod, time and epoch as the one before shares
    its head too.
    """
    limit = line_limit(max_line_bytes)
    dumps, newline, template = _dumps, _NEWLINE, _LOG_LINE  # locals
    shared: tuple[float, str, str, str | None] | None = None
    head = id_head = b""
    parts = events.parts if isinstance(events, EventBatch) else events
    for event in parts:
        if isinstance(event, LogRun) or (isinstance(event, LogEvent) and _plain(event)):
            key = (event.ts, event.pipeline_id, event.pod, event.epoch)
            if key != shared:  # objects shared by a pod's events compare by identity at once
                shared = key
                head, id_head = _log_head(*key)
            if isinstance(event, LogRun):  # a run can be 100,000 lines: in slices of a piece
                for start, stop in _slices(event.lines):
                    yield _run_lines(event, start, stop, head=head, id_head=id_head, limit=limit)
                continue
            seq = event.seq
            line = template % (head, seq, dumps(event.message), id_head, seq)
        else:
            line = dumps(event.to_wire(), option=newline)
        yield [line if len(line) <= limit else fit(event.to_wire(), limit)]


def _plain(event: LogEvent) -> bool:
    """Whether the template writes `event`: no optional field of its wire form is set."""
    return not (
        event.truncated or event.partial or event.level is not None
        or event.line_ts is not None or event.fields is not None
    )


def _slices(lines: Sequence[str]) -> Iterator[tuple[int, int]]:
    """Where to cut a run's lines so that each slice's encodings stay about a piece: at most
    `PIECE_EVENTS` lines and `_SLICE_CHARS` characters (nearly always one slice)."""
    count = len(lines)
    if count <= PIECE_EVENTS and sum(map(len, lines)) <= _SLICE_CHARS:
        yield 0, count
        return
    start = size = 0
    for index, line in enumerate(lines):
        size += len(line)
        if index + 1 - start >= PIECE_EVENTS or size >= _SLICE_CHARS:
            yield start, index + 1
            start, size = index + 1, 0
    if start < count:
        yield start, count


def _run_lines(
    run: LogRun, start: int, stop: int, *, head: bytes, id_head: bytes, limit: int
) -> list[bytes]:
    """The lines of a run from line `start` to `stop` from the template; those over the limit
    (a huge pod name) fitted."""
    dumps, template = _dumps, _LOG_LINE
    messages = run.lines
    if start or stop < len(messages):
        messages = messages[start:stop]
    first = run.first_seq + start
    lines = [
        template % (head, seq, dumps(message), id_head, seq)
        for seq, message in enumerate(messages, start=first)
    ]
    if max(map(len, lines), default=0) <= limit:
        return lines
    events = LogRun(run.ts, run.pipeline_id, run.pod, first, messages, run.epoch)
    return [
        line if len(line) <= limit else fit(event.to_wire(), limit)
        for line, event in zip(lines, events, strict=True)
    ]


def pieces(events: Sequence[Event], max_line_bytes: int) -> Iterator[bytes]:
    """The JSON Lines of `events`, in order, in pieces of whole lines: at most `PIECE_EVENTS`
    events, and a piece ends once it holds `PIECE_BYTES`."""
    piece: list[bytes] = []
    size = 0
    for lines in _encoded(events, max_line_bytes):
        total = sum(map(len, lines))
        if len(piece) + len(lines) < PIECE_EVENTS and size + total < PIECE_BYTES:
            piece += lines  # no line of them ends the piece: taken at once
            size += total
            continue
        for line in lines:
            piece.append(line)
            size += len(line)
            if len(piece) >= PIECE_EVENTS or size >= PIECE_BYTES:
                yield b"".join(piece)
                piece, size = [], 0
    if piece:
        yield b"".join(piece)


# --- fitting an event into the limit -------------------------------------------------------------

Path = tuple[str | int, ...]


def fit(wire: Wire, limit: int) -> bytes:
    """`wire` encoded in at most `limit` bytes: id hashed, longest strings cut, `truncated` set.

    `wire` is modified (pass a fresh `to_wire()`); nested `fields` are copied first, never the
    event's own.
    """
    if isinstance(wire.get("fields"), dict | list):
        wire["fields"] = orjson.loads(_dumps(wire["fields"]))
    # Strings that end with our marker: a message the tracker cut, and whatever is cut here.
    marked: set[Path] = {("message",)} if wire.get("truncated") is True else set()
    event_id = wire.get("id")
    if isinstance(event_id, str) and len(_dumps(event_id)) > ID_MAX_BYTES:
        wire["id"] = short_id(event_id)
        wire["truncated"] = True
    line = _dumps(wire, option=_NEWLINE)
    done: set[Path] = set()  # strings a cut no longer shortens
    floor = CUT_FLOOR
    while len(line) > limit:
        leaves = [(size, path) for size, path in _leaves(wire) if size > floor and path not in done]
        if leaves:
            size, path = max(leaves, key=_SIZE)
            text = _get(wire, path)
            assert isinstance(text, str)
            cut = cut_encoded(text, size - (len(line) - limit), merge=path in marked)
            if len(_dumps(cut)) >= size:
                done.add(path)
                continue
            _set(wire, path, cut)
            marked.add(path)
        elif "fields" in wire:  # many small values: the message still holds the whole line
            del wire["fields"]
        elif floor > 0:
            floor = 0  # then the short strings too
            continue
        else:  # cannot happen above MIN_EVENT_BYTES (a property test holds it to that)
            raise ValueError(f"an event cannot fit {limit} bytes: {line[:200]!r}")
        wire["truncated"] = True
        line = _dumps(wire, option=_NEWLINE)
    return line


def short_id(event_id: str) -> str:
    """`event_id` with every part whose JSON is over `ID_PART_BYTES` as `{head}%#{digest}`."""
    return "/".join(
        _hashed(part) if len(_dumps(part)) > ID_PART_BYTES else part
        for part in event_id.split("/")
    )


def _hashed(part: str) -> str:
    digest = hashlib.blake2b(part.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
    head = part[:ID_HEAD_BYTES]
    while len(_dumps(head)) > ID_HEAD_BYTES + 2:  # escapes count: "\u0001" is 6 bytes
        head = head[:-1]
    escape = head.rfind("%", -2)  # never end the head inside a `%2F` escape
    return f"{head[:escape] if escape >= 0 else head}%#{digest}"


def _marker(removed: int) -> str:
    return f"\u2026[cut {removed} bytes]"


def cut_encoded(text: str, max_encoded: int, *, merge: bool = False) -> str:
    """The longest head of `text` plus `…[cut N bytes]` whose JSON string (quotes and escapes
    included) takes at most `max_encoded` bytes; just the marker when even the head "" does not
    fit. N counts the UTF-8 bytes left out; with `merge`, a marker `text` already ends with is
    folded into the new one (a line the tracker cut, cut again for its escapes)."""
    removed_before = 0
    if merge and (found := MARKER_RE.search(text)):
        text, removed_before = text[: found.start()], int(found.group(1))
    total = len(text.encode("utf-8", "surrogatepass"))

    def candidate(keep: int) -> str:
        head = text[:keep]
        removed = total - len(head.encode("utf-8", "surrogatepass"))
        return head + _marker(removed_before + removed)

    low, high = 0, len(text)  # candidate(low) is the answer unless a longer head fits
    while low < high:
        middle = (low + high + 1) // 2
        if len(_dumps(candidate(middle))) <= max_encoded:
            low = middle
        else:
            high = middle - 1
    return candidate(low)


def _leaves(value: JsonValue, path: Path = ()) -> Iterator[tuple[int, Path]]:
    """(encoded size, path) of every string that may be cut: top-level fields but the fixed
    ones, and the strings nested in `fields`."""
    if isinstance(value, str):
        yield len(_dumps(value)), path
    elif isinstance(value, dict):
        for key, item in value.items():
            if not (not path and key in FIXED):
                yield from _leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, (*path, index))


def _get(wire: Wire, path: Path) -> JsonValue:
    value: JsonValue = wire
    for step in path:
        value = value[step]  # type: ignore[index]
    return value


def _set(wire: Wire, path: Path, text: str) -> None:
    parent = _get(wire, path[:-1])
    parent[path[-1]] = text  # type: ignore[index]
