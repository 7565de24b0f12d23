"""Events as JSON Lines bytes: every line within the line limit, a poll's lines in bounded pieces.

Shippers drop or split lines longer than they accept (32 KiB by default for Vector and Fluent Bit),
so `max_line_bytes` bounds the whole encoded event, its newline included, whatever field is long:
a line cut by the tracker and then escaped (a control character is 6 bytes in JSON), a huge pod
name, enrichment fields. An event over the limit is fitted (rare, so the common path pays one
length check; follower/sinks/fitting.py): its id hashed where long, its longest strings cut, and
it says `truncated: true`.

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

from collections.abc import Iterable, Iterator, Sequence
from typing import Final

import orjson

from follower.core.batch import EventBatch, LogRun
from follower.core.events import Event, LogEvent
from follower.core.model import DEFAULT_MAX_LINE_BYTES, SCHEMA_VERSION, format_ts, seq_prefix
from follower.sinks.fitting import fit

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
_dumps, _NEWLINE = orjson.dumps, orjson.OPT_APPEND_NEWLINE


def line_limit(max_line_bytes: int) -> int:
    """The bound applied to a whole encoded event for the setting `output.max_line_bytes`."""
    return max(max_line_bytes, MIN_EVENT_BYTES)


_LOG_LINE: Final = b'%s,"seq":%d,"message":%s,"id":%s%d","schema":' + b"%d}\n" % SCHEMA_VERSION
"""A plain log event's line after its head: `LogEvent.to_wire()`'s fields, in its order."""


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
