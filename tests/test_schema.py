"""The wire format against its JSON Schema: every kind, every field, and a whole end-to-end run."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
from harness import simulated
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from follower import schema
from follower.config.tree import PodSettings
from follower.core.events import (
    EVENT_KINDS,
    ApiErrorEvent,
    Event,
    GapEvent,
    LogEvent,
    PipelineAddedEvent,
    PipelineRemovedEvent,
    PipelineStatusEvent,
    PodAddedEvent,
    PodRemovedEvent,
    TailErrorEvent,
)
from follower.core.model import MIN_LINE_BYTES, SCHEMA_VERSION, cut_line, event_id
from follower.simulator.faults import FaultSettings
from follower.simulator.world import SimSettings
from follower.sinks.files import FileSink
from follower.testing import MemorySink

P = "pipe_3e8678c5fc9e48a7bf9879ca729"
POD = "pipeline-covalent-postgres-pipe-3e8678c5fc9e48a7bf9879ca7mlm2"
TS = 1_800_000_000.25

EVERY_VARIANT: list[Event] = [
    PodAddedEvent(TS, P, POD),
    LogEvent(TS, P, POD, 1, 'INFO caf\u00e9 "quoted" \\ tab\t'),
    LogEvent(TS, P, POD, 2, "x\u2026[cut 9 bytes]", truncated=True),
    LogEvent(
        TS, P, POD, 3, '{"level":"warn","n":[1,{"a":null}]}',
        level="warn", line_ts="2026-11-28T10:15:02.117Z", fields={"level": "warn", "n": [1, {}]},
    ),
    GapEvent(TS, P, POD, 3, "no_overlap"),
    GapEvent(TS, P, POD, 0, "window_full"),
    GapEvent(TS, P, POD, 0, "state_reset"),
    TailErrorEvent(TS, P, POD, 'pods "x" not found', 2.5),
    PodRemovedEvent(TS, P, POD, 3),
    ApiErrorEvent(TS, P, "server_error", 503, "unavailable", 4.0),
    ApiErrorEvent(TS, P, "not_found", 404, "no such pipeline", None),
    ApiErrorEvent(TS, P, "network_error", None, "connection refused", 1.5),
    PipelineStatusEvent(TS, P, "FAILED", 0, 2),
    PipelineStatusEvent(TS, P, "PAUSED", None, None),
    PipelineAddedEvent(TS, P, "indexer"),
    PipelineAddedEvent(TS, P, None),
    PipelineRemovedEvent(TS, P, "not_found"),
    PipelineRemovedEvent(TS, P, "not_listed"),
]
POLLED_KINDS = {"log", "gap", "tail_error", "pod_added", "pod_removed", "api_error"}


def validator() -> Draft202012Validator:
    """A validator of `event.schema.json` that resolves the kind files by their $id."""
    schemas = schema.load_all()
    registry: Registry[Any] = Registry().with_resources(
        (document["$id"], Resource.from_contents(document)) for document in schemas.values()
    )
    return Draft202012Validator(schemas[schema.UMBRELLA], registry=registry)


VALIDATOR = validator()


def wire(event: Event) -> dict[str, Any]:
    """The event as a consumer sees it: through the bytes the sinks write."""
    decoded: dict[str, Any] = orjson.loads(orjson.dumps(event.to_wire()))
    return decoded


def assert_valid(document: dict[str, Any]) -> None:
    """Valid against the umbrella schema, with every key declared by its kind's file."""
    errors = [error.message for error in VALIDATOR.iter_errors(document)]
    assert not errors, (document, errors)
    declared = schema.load(document["event"])["properties"]
    assert set(document) <= set(declared), set(document) - set(declared)


def test_every_schema_file_is_a_valid_2020_12_schema() -> None:
    """Each shipped file is itself a valid JSON Schema (draft 2020-12)."""
    for document in schema.load_all().values():
        Draft202012Validator.check_schema(document)


def test_there_is_one_schema_file_per_event_kind() -> None:
    """Every kind the model writes has a file, and the umbrella schema dispatches to each."""
    assert set(schema.names()) == {schema.UMBRELLA, *EVENT_KINDS}
    dispatched = {
        branch["if"]["properties"]["event"]["const"]
        for branch in schema.load(schema.UMBRELLA)["allOf"]
    }
    assert dispatched == set(EVENT_KINDS)


def test_the_kind_files_agree_on_the_common_fields() -> None:
    """ts, pipeline_id, id and schema are defined the same way in every kind's file."""
    common = ("ts", "pipeline_id", "id", "schema")
    definitions = [
        {name: schema.load(kind)["properties"][name] for name in common} for kind in EVENT_KINDS
    ]
    assert all(definition == definitions[0] for definition in definitions)


@pytest.mark.parametrize("event", EVERY_VARIANT, ids=lambda e: f"{e.kind}")
def test_every_kind_and_variant_matches_the_schema(event: Event) -> None:
    """Each kind, with its optional and nullable fields both set and unset, validates."""
    document = wire(event)
    assert document["schema"] == SCHEMA_VERSION
    assert document["id"] == event.id
    assert_valid(document)


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"id": None}, "id"),
        ({"schema": 2}, "schema"),
        ({"seq": 0}, "seq"),
        ({"ts": "2026-11-28 10:15:02"}, "ts"),
        ({"pipeline_id": "../etc"}, "pipeline_id"),
        ({"level": "loud"}, "level"),
        ({"truncated": False}, "truncated"),
    ],
)
def test_a_broken_log_event_is_rejected(change: dict[str, Any], where: str) -> None:
    """The schema catches a wrong value in each field that has a rule."""
    document = {**wire(EVERY_VARIANT[1]), **change}
    errors = list(VALIDATOR.iter_errors(document))
    assert errors and any(where in error.json_path for error in errors), errors


def test_a_missing_field_is_rejected() -> None:
    """A kind's required field cannot be left out."""
    document = wire(GapEvent(TS, P, POD, 3, "no_overlap"))
    del document["reason"]
    assert not VALIDATOR.is_valid(document)


def test_a_kind_from_a_later_release_passes_with_the_common_fields() -> None:
    """Room for new kinds: an unknown kind with ts, event, id and schema is accepted."""
    document = {
        "ts": "2026-11-28T10:15:02.117Z", "event": "shard_moved", "pipeline_id": P,
        "to": 2, "id": f"{P}/shard_moved/2026-11-28T10:15:02.117Z", "schema": 1,
    }
    assert VALIDATOR.is_valid(document)
    assert not VALIDATOR.is_valid({**document, "id": 7})


def test_ids_are_built_from_the_fields_and_escape_slashes() -> None:
    """Log ids are pipeline/pod/seq; pod-level lifecycle ids add the kind and the wire ts."""
    assert LogEvent(TS, P, POD, 42, "x").id == f"{P}/{POD}/42"
    assert GapEvent(TS, P, POD, 41, "no_overlap").id == f"{P}/{POD}/gap/41"
    assert PodAddedEvent(TS, P, POD).id == f"{P}/{POD}/pod_added/2027-01-15T08:00:00.250Z"
    assert ApiErrorEvent(TS, P, "throttled", 429, "", 1.0).id == (
        f"{P}/api_error/2027-01-15T08:00:00.250Z"
    )
    assert event_id(P, "a/b%c", 1) == f"{P}/a%2Fb%25c/1"
    assert LogEvent(TS, P, "a/b", 1, "").id == event_id(P, "a/b", 1) == f"{P}/a%2Fb/1"
    assert LogEvent(TS, P, "a/b", 1, "").id != LogEvent(TS, P, "a", 1, "").id


def test_optional_log_fields_are_left_out_when_not_set() -> None:
    """A plain line's wire form has no truncated, level, line_ts or fields keys."""
    assert set(wire(LogEvent(TS, P, POD, 1, "x"))) == {
        "ts", "event", "pipeline_id", "pod", "seq", "message", "id", "schema",
    }


# --- cut_line -----------------------------------------------------------------------------------


def test_a_line_within_the_limit_is_unchanged() -> None:
    """A line that fits (even exactly) is returned as it is, not cut."""
    assert cut_line("a" * 100, 100) == ("a" * 100, False)
    assert cut_line("\u00e9" * 50, 100) == ("\u00e9" * 50, False)


def test_a_long_line_is_cut_with_a_marker_counting_the_bytes_left_out() -> None:
    """The head is kept and `…[cut N bytes]` says how many bytes of the line were dropped."""
    line, cut = cut_line("a" * 1000, 100)
    assert cut and line.endswith("\u2026[cut 918 bytes]")
    assert len(line.encode()) == 100
    assert line.count("a") == 82


def test_a_cut_never_splits_a_character() -> None:
    """Multi-byte characters are kept whole; the result still fits the limit."""
    line, cut = cut_line("\U0001f600" * 100, 64)
    head = line.split("\u2026")[0]
    assert cut and set(head) == {"\U0001f600"}
    assert len(line.encode()) <= 64
    assert f"[cut {400 - len(head.encode())} bytes]" in line


def test_the_limit_has_a_floor() -> None:
    """A limit too small for the marker is a programming error, reported at once."""
    with pytest.raises(ValueError, match="at least"):
        cut_line("x", MIN_LINE_BYTES - 1)


@given(st.text(max_size=400), st.integers(MIN_LINE_BYTES, 300))
def test_cut_line_fits_and_keeps_a_prefix(text: str, limit: int) -> None:
    """For any text and limit: the result fits, is a prefix plus marker, and says if it was cut."""
    try:
        text.encode()
    except UnicodeEncodeError:  # lone surrogates never reach here: the API's JSON cannot hold them
        return
    line, cut = cut_line(text, limit)
    assert len(line.encode()) <= limit
    assert cut == (len(text.encode()) > limit)
    if cut:
        head, _, marker = line.rpartition("\u2026[cut ")
        assert text.startswith(head)
        assert marker == f"{len(text.encode()) - len(head.encode())} bytes]"
    else:
        assert line == text


# --- end to end -----------------------------------------------------------------------------------


class Tee:
    """A sink that hands every batch to several sinks."""

    def __init__(self, *sinks: MemorySink | FileSink) -> None:
        self.sinks = sinks

    async def write(self, events: Any) -> None:
        for sink in self.sinks:
            await sink.write(events)

    async def aclose(self) -> None:
        for sink in self.sinks:
            await sink.aclose()


def read_rotated(folder: Path, name: str) -> list[bytes]:
    """The lines of `name` and its rotated copies, oldest file (highest number) first."""
    rotated = sorted(
        folder.glob(f"{name}.*"), key=lambda path: int(path.suffix[1:]), reverse=True
    )
    return [line for path in [*rotated, folder / name] for line in path.read_bytes().splitlines()]


def rotated_twice(folder: Path) -> list[Path]:
    return list(folder.glob("*.jsonl.2"))


async def follow_rough_run(
    settings: SimSettings, faults: FaultSettings, files: Path
) -> tuple[list[Event], list[str]]:
    """Follow for 60 s with a file sink beside the memory one, then 3 s more after --reset-state.

    Returns the events of both runs and the pipeline ids; checks that the per-pipeline files,
    rotated, hold exactly the first run's events.
    """
    memory, restarted = MemorySink(), MemorySink()
    async with simulated(settings, faults=faults) as sim:
        sink = FileSink(
            files, clock=sim.clock, layout="per-pipeline", max_bytes=2_048, max_files=1000
        )
        config = sim.config(interval_s=1.0, pods=PodSettings(grace_s=10.0))
        await sim.follow(config, Tee(memory, sink), steps=60)
        # A second follower started with --reset-state: every pod begins with a state_reset gap.
        await sim.follow(sim.config(interval_s=1.0), restarted, steps=3, reset_state=True)
        pipeline_ids = list(sim.world.pipeline_ids)
    for pipeline_id in pipeline_ids:
        expected = [
            orjson.dumps(e.to_wire()) for e in memory.events if e.pipeline_id == pipeline_id
        ]
        assert read_rotated(files, f"{pipeline_id}.jsonl") == expected
    assert rotated_twice(files), "the files were meant to rotate"
    ids = Counter(event.id for event in memory.events)
    assert max(ids.values()) == 1, [i for i, n in ids.items() if n > 1][:5]
    return memory.events + restarted.events, pipeline_ids


@pytest.mark.slow
async def test_every_event_of_a_rough_run_matches_the_schema(tmp_path: Path) -> None:
    """Restarts, replacements, tail errors and API faults: every event written validates."""
    faults = FaultSettings(
        rate_429=0.05, rate_5xx=0.08, rate_malformed=0.04, rate_envelope_error=0.04, seed=3
    )
    base = SimSettings(
        pipelines=4, pods=2, rate=3.0, window=40, restart_every_s=12.0, tail_error_s=2.0,
        line_style="unique", seed=7,
    )
    restarts, _ = await follow_rough_run(base, faults, tmp_path / "restarts")
    replacements, _ = await follow_rough_run(
        replace(base, replace_on_restart=True), faults, tmp_path / "replacements"
    )
    events = restarts + replacements
    for event in events:
        assert_valid(wire(event))
    kinds = Counter(event.kind for event in events)
    assert set(kinds) >= POLLED_KINDS, kinds
    reasons = {event.reason for event in events if isinstance(event, GapEvent)}
    assert reasons >= {"no_overlap", "state_reset"}, reasons
