"""Opt-in enrichment of log lines: JSON fields, a leading timestamp, a level word.

Pure functions over one line; whatever does not parse is left alone, and the line itself (the
event's `message`) is never changed. Hostile input is bounded: JSON is parsed only for lines up
to `max_json_bytes` and kept only up to `max_depth` levels of nesting (orjson parses 1024 levels
but refuses to encode more than 254, so deeper fields would make the event unwritable), and the
timestamp and level are looked for in the first `HEAD_CHARS` characters only.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Final, TypeVar

import orjson

from follower.core.model import DEFAULT_MAX_LINE_BYTES, JsonValue, Level, format_datetime

T = TypeVar("T")

HEAD_CHARS: Final = 256
"""How far into a line the timestamp and the level word are looked for."""
DEFAULT_MAX_DEPTH: Final = 32

LEVELS: Final[dict[str, Level]] = {
    "trace": "trace",
    "debug": "debug",
    "info": "info",
    "warn": "warn",
    "warning": "warn",
    "error": "error",
    "fatal": "fatal",
    "critical": "fatal",
}

# `2026-11-28T10:15:02.117Z`, `2026-11-28 10:15:02,117 +0100`, `[2026-11-28T10:15:02]`, ...
_TIMESTAMP: Final = re.compile(
    r"""\[?
    (?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})
    [Tt\x20]
    (?P<hour>\d{2}):(?P<minute>\d{2}):(?P<second>\d{2})
    (?:[.,](?P<fraction>\d{1,9}))?
    (?:\x20?(?P<zone>[Zz]|[+-]\d{2}(?::?\d{2})?))?
    (?![\d:.,])
    \]?""",
    re.VERBOSE,
)
# logfmt and friends: `level=info`, `lvl="warn"`, `severity: ERROR`.
_LEVEL_KEY: Final = re.compile(r"""(?:^|[\s{,"])(?:level|lvl|severity)"?\s*[=:]\s*"?([A-Za-z]+)""")
_WORD: Final = re.compile(r"[A-Za-z]+")
_SEPARATORS: Final = "[](){}<>|:;,-=\""
_JSON_LEVEL_KEYS: Final = ("level", "lvl", "severity", "log.level")
_JSON_TIME_KEYS: Final = ("time", "timestamp", "ts", "@timestamp")


@dataclass(frozen=True, slots=True)
class EnrichSettings:
    """What to look for in each line (everything is off by default)."""

    parse_json: bool = False
    """A line that is a JSON object puts its fields under `fields`."""
    level: bool = False
    """A level word (`INFO`, `warn`, `level=error`, ...) becomes `level`."""
    line_ts: bool = False
    """A leading RFC 3339 / ISO 8601 timestamp becomes `line_ts`."""
    max_json_bytes: int = DEFAULT_MAX_LINE_BYTES
    max_depth: int = DEFAULT_MAX_DEPTH

    @property
    def enabled(self) -> bool:
        """Whether there is anything to do at all."""
        return self.parse_json or self.level or self.line_ts


@dataclass(frozen=True, slots=True)
class Enrichment:
    """What was found in one line; None where nothing was (or it was not asked for)."""

    level: Level | None = None
    line_ts: str | None = None
    fields: dict[str, JsonValue] | None = None


NOTHING: Final = Enrichment()


def enrich(line: str, settings: EnrichSettings, *, truncated: bool = False) -> Enrichment:
    """Look for what `settings` asks for in `line`; a cut line is never parsed as JSON."""
    if not settings.enabled:
        return NOTHING
    fields = None
    if settings.parse_json and not truncated:
        fields = json_fields(line, max_bytes=settings.max_json_bytes, max_depth=settings.max_depth)
    level: Level | None = None
    line_ts: str | None = None
    if fields is not None:
        if settings.level:
            level = _first(fields, _JSON_LEVEL_KEYS, normalize_level)
        if settings.line_ts:
            line_ts = _first(fields, _JSON_TIME_KEYS, whole_timestamp)
    else:
        if settings.line_ts:
            line_ts = leading_timestamp(line)
        if settings.level:
            level = detect_level(line)
    if level is None and line_ts is None and fields is None:
        return NOTHING
    return Enrichment(level, line_ts, fields)


def json_fields(line: str, *, max_bytes: int, max_depth: int) -> dict[str, JsonValue] | None:
    """The fields of `line` if it is one JSON object of at most `max_bytes` and `max_depth`."""
    text = line.strip()
    if not text.startswith("{") or len(text) > max_bytes:
        return None
    if len(text) * 4 > max_bytes and len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        return None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:  # malformed, lone surrogates, or nested beyond orjson's limit
        return None
    if not isinstance(value, dict) or _depth_exceeds(value, max_depth):
        return None
    return value


def _depth_exceeds(value: dict[str, JsonValue], limit: int) -> bool:
    """Whether containers nest deeper than `limit` (without recursion, whatever the depth)."""
    stack: list[tuple[dict[str, JsonValue] | list[JsonValue], int]] = [(value, 1)]
    while stack:
        container, depth = stack.pop()
        for child in container.values() if isinstance(container, dict) else container:
            if isinstance(child, dict | list):
                if depth >= limit:
                    return True
                stack.append((child, depth + 1))
    return False


def normalize_level(word: object) -> Level | None:
    """`WARNING` -> `warn`, `Info` -> `info`, anything else (or not a string) -> None."""
    if not isinstance(word, str):
        return None
    return LEVELS.get(word.lower())


def leading_timestamp(line: str) -> str | None:
    """The timestamp `line` starts with, as RFC 3339 UTC with milliseconds, or None."""
    match = _TIMESTAMP.match(line, 0, HEAD_CHARS)
    return None if match is None else _to_rfc3339(match)


def whole_timestamp(value: object) -> str | None:
    """`value` if it is a string that is a whole timestamp, as RFC 3339 UTC, else None."""
    if not isinstance(value, str):
        return None
    match = _TIMESTAMP.fullmatch(value.strip(), 0, HEAD_CHARS)
    return None if match is None else _to_rfc3339(match)


def _to_rfc3339(match: re.Match[str]) -> str | None:
    """An ISO timestamp match in UTC; a timestamp without a zone is taken as UTC."""
    fraction = (match["fraction"] or "0")[:6].ljust(6, "0")
    try:
        moment = datetime(
            int(match["year"]), int(match["month"]), int(match["day"]),
            int(match["hour"]), int(match["minute"]), int(match["second"]), int(fraction),
            tzinfo=_zone(match["zone"]),
        )
        return format_datetime(moment)
    except (ValueError, OverflowError):  # 2026-13-45, 24:61:00, or out of range once in UTC
        return None


def _zone(text: str | None) -> timezone:
    if text is None or text in "Zz":
        return UTC
    digits = text[1:].replace(":", "")
    offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0))
    return timezone(-offset if text[0] == "-" else offset)  # ValueError when >= 24 h


def detect_level(line: str) -> Level | None:
    """The level of a text line, or None.

    In the first `HEAD_CHARS` characters: a `level=`/`lvl=`/`severity=` key; else the first word
    after a leading timestamp, in any case (`INFO`, `warn:`, `[Error]`); else an upper-case level
    word among the next three (`2026-... - app - WARNING - ...`). A lower-case word further in is
    ordinary text (`fetching info for block 7`), not a level.
    """
    head = line[:HEAD_CHARS]
    keyed = _LEVEL_KEY.search(head)
    if keyed is not None and (level := normalize_level(keyed[1])) is not None:
        return level
    stamp = _TIMESTAMP.match(head)
    rest = head[stamp.end() :] if stamp is not None else head
    words = [word for token in rest.split(None, 5)[:5] if (word := token.strip(_SEPARATORS))]
    for position, word in enumerate(words[:4]):
        if not _WORD.fullmatch(word):
            continue
        if (position == 0 or word.isupper()) and (level := normalize_level(word)) is not None:
            return level
    return None


def _first(
    fields: dict[str, JsonValue], keys: tuple[str, ...], parse: Callable[[object], T | None]
) -> T | None:
    """The first of `keys` present in `fields` whose value `parse` accepts."""
    for key in keys:
        if key in fields and (value := parse(fields[key])) is not None:
            return value
    return None
