"""Fitting an event into the line limit: id hashed, longest strings cut, `truncated` set.

Rare (the encoder, follower/sinks/encoding.py, calls it only for a line over the limit): a huge
pod name, a line cut by the tracker whose escapes made it long again, many enrichment fields.
An over-long id has its long parts replaced by a digest, then the longest strings are cut with
the `…[cut N bytes]` marker of `follower.core.model.cut_line`.

Ids stay stable and unique when fitted: a long part (a pod name) becomes `{head}%#{digest}`, where
the digest is a BLAKE2b-128 of the whole part, so the id still names this one line, and `%#` never
appears in a part that was not hashed (event ids escape `%` as `%25`).
"""

from __future__ import annotations

import hashlib
import operator
import re
from collections.abc import Iterator
from typing import Final

import orjson

from follower.core.model import JsonValue, Wire

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
