"""Opt-in enrichment: JSON fields, a leading timestamp and a level word, and hostile lines."""

from __future__ import annotations

import orjson
import pytest

from follower.core.enrich import (
    NOTHING,
    Enrichment,
    EnrichSettings,
    detect_level,
    enrich,
    json_fields,
    leading_timestamp,
)
from follower.core.events import LogEvent
from follower.core.model import Level

ALL = EnrichSettings(parse_json=True, level=True, line_ts=True)
P = "pipe_3e8678c5fc9e48a7bf9879ca729"


@pytest.mark.parametrize(
    ("line", "level"),
    [
        ("INFO block 19000123 indexed", "info"),
        ("2026-11-28T10:15:02.117Z  WARN indexer: slow block", "warn"),
        ("2026-11-28T10:15:02.117Z\tERROR\tconnection reset", "error"),
        ("2026-11-28 10:15:02,117 - indexer - WARNING - lagging", "warn"),
        ("[2026-11-28 10:15:02] [debug] cache hit", "debug"),
        ("[TRACE] entering fetch", "trace"),
        ("error: could not connect", "error"),
        ("Fatal: out of memory", "fatal"),
        ("CRITICAL disk full", "fatal"),
        ('time="2026-11-28T10:15:02Z" level=info msg="started"', "info"),
        ("ts=2026-11-28T10:15:02Z lvl=WARN msg=slow", "warn"),
        ('{"severity": "ERROR"} not json', "error"),
        ("fetching info for block 7", None),
        ("block 7 has an ERROR in its receipts", None),
        ("level=verbose something", None),
        ("INFORMATION is not a level", None),
        ("", None),
    ],
)
def test_level_words(line: str, level: Level | None) -> None:
    """A level word at the start, after a timestamp, or as level=: found; in running text: not."""
    assert detect_level(line) == level


@pytest.mark.parametrize(
    ("line", "line_ts"),
    [
        ("2026-11-28T10:15:02.117Z INFO x", "2026-11-28T10:15:02.117Z"),
        ("2026-11-28T10:15:02.117456789Z x", "2026-11-28T10:15:02.117Z"),
        ("2026-11-28T11:15:02+01:00 x", "2026-11-28T10:15:02.000Z"),
        ("2026-11-28T05:15:02.5-0500 x", "2026-11-28T10:15:02.500Z"),
        ("2026-11-28 10:15:02,117 - app - INFO", "2026-11-28T10:15:02.117Z"),
        ("[2026-11-28 10:15:02] started", "2026-11-28T10:15:02.000Z"),
        ("2026-11-28 10:15:02 +0000 x", "2026-11-28T10:15:02.000Z"),
        ("2026-11-28t10:15:02z lower", "2026-11-28T10:15:02.000Z"),
        ("2026-13-28T10:15:02Z month 13", None),
        ("2026-11-28T25:15:02Z hour 25", None),
        ("2026-11-28T10:15:02+25:00 offset", None),
        ("0001-01-01T00:30:00+01:00 before year 1 in UTC", None),
        ("2026-11-28T10:15:0212 no boundary", None),
        ("block 2026-11-28T10:15:02Z not leading", None),
        ("2026-11-28 no time", None),
    ],
)
def test_leading_timestamps(line: str, line_ts: str | None) -> None:
    """ISO and RFC 3339 forms at the start become UTC with ms; impossible dates are ignored."""
    assert leading_timestamp(line) == line_ts


def test_a_json_line_puts_its_fields_under_fields() -> None:
    """A JSON object line: fields as parsed, level and line_ts from its own keys."""
    line = (
        '{"level":"WARNING","time":"2026-11-28T11:15:02.5+01:00","block":7,"tags":["a",{"b":null}]}'
    )
    found = enrich(line, ALL)
    assert found == Enrichment(
        level="warn",
        line_ts="2026-11-28T10:15:02.500Z",
        fields={"level": "WARNING", "time": "2026-11-28T11:15:02.5+01:00", "block": 7,
                "tags": ["a", {"b": None}]},
    )


@pytest.mark.parametrize(
    "line",
    [
        '{"unterminated": ',
        "{not json}",
        '{"a": NaN}',
        '{"a": 1e999}',
        '{"a": "\\ud800"}',
        "[1, 2, 3]",
        '"just a string"',
        "{}" + "trailing",
    ],
)
def test_malformed_json_passes_through_untouched(line: str) -> None:
    """Anything that is not exactly one JSON object gets no fields (and is not an error)."""
    assert json_fields(line, max_bytes=16_384, max_depth=32) is None
    assert enrich(line, EnrichSettings(parse_json=True)) is NOTHING


def test_orjson_refuses_deep_nesting_and_the_line_passes_through() -> None:
    """orjson raises past 1024 levels (confirmed here); the line is then left as it is."""
    deep = '{"a":' * 2000 + "1" + "}" * 2000
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(deep)
    assert json_fields(deep, max_bytes=1_000_000, max_depth=32) is None


def test_nesting_that_orjson_parses_but_cannot_write_back_is_refused() -> None:
    """300 levels parse but would make the event unencodable (orjson writes 254 at most)."""
    nested = '{"a":' * 300 + "1" + "}" * 300
    assert isinstance(orjson.loads(nested), dict)
    assert json_fields(nested, max_bytes=1_000_000, max_depth=32) is None
    within = '{"a":' * 32 + "1" + "}" * 32
    fields = json_fields(within, max_bytes=1_000_000, max_depth=32)
    assert fields is not None
    event = LogEvent(1.8e9, P, "pod", 1, within, fields=fields)
    assert orjson.loads(orjson.dumps(event.to_wire()))["fields"] == fields


def test_a_line_above_the_json_cap_is_not_parsed() -> None:
    """Only lines up to max_json_bytes of UTF-8 are parsed; bigger ones keep no fields."""
    line = '{"a":"' + "\u00e9" * 600 + '"}'  # 608 characters, 1208 bytes
    assert json_fields(line, max_bytes=2000, max_depth=32) is not None
    assert json_fields(line, max_bytes=1000, max_depth=32) is None
    assert json_fields(line, max_bytes=500, max_depth=32) is None


def test_a_cut_line_is_never_parsed_as_json() -> None:
    """A truncated line cannot be a whole JSON object: no parse attempt, level still found."""
    found = enrich('{"level":"info","a":"xxx\u2026[cut 9 bytes]', ALL, truncated=True)
    assert found.fields is None
    assert found.level == "info"


def test_nothing_is_looked_for_unless_asked() -> None:
    """Default settings: no work and no enrichment, whatever the line."""
    assert enrich('2026-11-28T10:15:02Z ERROR {"a":1}', EnrichSettings()) is NOTHING
    only_level = enrich("2026-11-28T10:15:02Z ERROR x", EnrichSettings(level=True))
    assert only_level == Enrichment(level="error")


def test_the_level_and_timestamp_are_looked_for_in_the_head_only() -> None:
    """A huge line costs no more than its first few hundred characters."""
    assert detect_level(" " * 300 + "ERROR x") is None
    assert enrich("x" * 1_000_000, ALL) is NOTHING


def test_an_enriched_event_carries_the_optional_fields_on_the_wire() -> None:
    """level, line_ts and fields appear in the wire form only when set."""
    found = enrich('{"level":"info","n":1}', ALL)
    event = LogEvent(1.8e9, P, "pod", 1, '{"level":"info","n":1}', level=found.level,
                     line_ts=found.line_ts, fields=found.fields)
    wire = event.to_wire()
    assert wire["level"] == "info" and wire["fields"] == {"level": "info", "n": 1}
    assert "line_ts" not in wire
