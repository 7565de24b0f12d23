"""The terminal view: stern-like lines, colour only where it belongs, filters, and the table."""

from __future__ import annotations

import io
import re

import pytest

from follower.core.events import (
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
from follower.core.model import PipelineInfo, PipelineStatus
from follower.sinks.terminal import (
    DIM,
    PALETTE,
    LineFilter,
    PipelineRow,
    TerminalSink,
    TerminalView,
    display_width,
    pod_colour,
    printable,
    render_pipelines,
    use_colour,
)

P = "pipe_3e8678c5fc9e48a7bf9879ca729"
POD = "pipeline-covalent-postgres-mlm2"
ANSI = re.compile(r"\x1b\[")
EVERY_KIND: list[Event] = [
    PodAddedEvent(1.8e9, P, POD),
    LogEvent(1.8e9, P, POD, 1, "INFO block 19000123 indexed"),
    GapEvent(1.8e9, P, POD, 1, "no_overlap"),
    TailErrorEvent(1.8e9, P, POD, "container not found", 2.5),
    PodRemovedEvent(1.8e9, P, POD, 1),
    ApiErrorEvent(1.8e9, P, "not_found", 404, "no such pipeline", None),
    PipelineStatusEvent(1.8e9, P, "DEPLOYING", 1, 2),
    PipelineAddedEvent(1.8e9, P, "indexer"),
    PipelineRemovedEvent(1.8e9, P, "not_listed"),
]


async def write(events: list[Event], **options: object) -> list[str]:
    """The lines a TerminalSink writes for `events`."""
    stream = io.StringIO()
    options.setdefault("environ", {})
    options.setdefault("is_tty", False)
    sink = TerminalSink(stream, **options)  # type: ignore[arg-type]
    await sink.write(events)
    await sink.aclose()
    return stream.getvalue().splitlines()


async def test_piped_output_has_no_colour_codes() -> None:
    """Not a TTY: plain `pipeline/pod | line`, lifecycle events in brackets, no escapes at all."""
    lines = await write(EVERY_KIND)
    assert lines == [
        f"{P}/{POD} [pod added]",
        f"{P}/{POD} | INFO block 19000123 indexed",
        f"{P}/{POD} [gap after line 1: lines may be missing (no_overlap)]",
        f"{P}/{POD} [tail error: container not found; retry in 2.5s]",
        f"{P}/{POD} [pod removed after line 1]",
        f"{P} [api error: not_found 404: no such pipeline; no longer polled]",
        f"{P} [status DEPLOYING, 1/2 ready]",
        f"{P} [pipeline added: indexer]",
        f"{P} [pipeline removed (not_listed)]",
    ]
    assert not any(ANSI.search(line) for line in lines)


async def test_on_a_tty_each_pod_prefix_has_its_colour_and_lifecycle_is_dim() -> None:
    """TTY: the log line's prefix is in the pod's colour, lifecycle lines are dim."""
    lines = await write(EVERY_KIND, is_tty=True)
    colour = pod_colour(POD)
    assert lines[1] == f"\x1b[{colour}m{P}/{POD}\x1b[0m | INFO block 19000123 indexed"
    for line in lines[:1] + lines[2:]:
        assert line.startswith(DIM) and line.endswith("\x1b[0m")


@pytest.mark.parametrize(
    ("environ", "is_tty", "colour"),
    [
        ({}, True, True),
        ({}, False, False),
        ({"NO_COLOR": "1"}, True, False),
        ({"NO_COLOR": ""}, True, True),  # no-color.org: only a non-empty value counts
        ({"TERM": "dumb"}, True, False),
        ({"TERM": "xterm-256color"}, True, True),
    ],
)
def test_colour_depends_on_tty_no_color_and_term(
    environ: dict[str, str], is_tty: bool, colour: bool
) -> None:
    """Colour on a TTY unless NO_COLOR is set (non-empty) or TERM is dumb; never when piped."""
    assert use_colour(environ, is_tty) is colour


async def test_no_color_on_a_tty_writes_plain_text() -> None:
    """NO_COLOR wins over the TTY: the same lines as when piped."""
    assert await write(EVERY_KIND, is_tty=True, environ={"NO_COLOR": "1"}) == await write(
        EVERY_KIND
    )


def test_a_pods_colour_is_stable_and_pods_differ() -> None:
    """The colour comes from CRC-32 of the name, not Python's salted hash: the same on every run."""
    assert pod_colour(POD) == 92  # pinned: a pod keeps its colour across runs and versions
    assert pod_colour("pipeline-covalent-postgres-a1") == 36
    colours = {pod_colour(f"pipeline-covalent-postgres-{n}") for n in range(40)}
    assert len(colours) > len(PALETTE) // 2


async def test_include_and_exclude_filter_log_lines_only() -> None:
    """A log line shows if an include matches (or none is given) and no exclude does."""
    events: list[Event] = [
        LogEvent(1.8e9, P, POD, 1, "INFO block 1"),
        LogEvent(1.8e9, P, POD, 2, "ERROR block 2"),
        LogEvent(1.8e9, P, POD, 3, "ERROR block 3 retrying"),
        GapEvent(1.8e9, P, POD, 3, "no_overlap"),
    ]
    lines = await write(
        events, include=[re.compile("ERROR")], exclude=[re.compile("retrying$")]
    )
    assert [line.split(" | ")[-1] for line in lines] == [
        "ERROR block 2",
        f"{P}/{POD} [gap after line 3: lines may be missing (no_overlap)]",
    ]


def test_a_filter_with_several_includes_takes_any() -> None:
    """Several include patterns: a line matching any one of them shows."""
    line_filter = LineFilter(include=(re.compile("WARN"), re.compile("ERROR")))
    assert line_filter.accepts("ERROR x") and line_filter.accepts("WARN y")
    assert not line_filter.accepts("INFO z")


async def test_escape_sequences_in_a_pod_line_cannot_drive_the_terminal() -> None:
    """Colours, titles and cursor moves from a pod are dropped, other controls shown as \\xNN."""
    hostile = "a\x1b[31mred\x1b[0m \x1b]0;owned\x07b\x1b[2Jc\x00d\x7fe\x9bf\tg"
    lines = await write([LogEvent(1.8e9, P, POD, 1, hostile)], is_tty=True)
    assert lines[0].endswith(" | ared b" + "c\\x00d\\x7fe\\x9bf\tg")
    assert printable("line\r\nnext") == "line\\x0d\\x0anext"


async def test_timestamps_and_labels() -> None:
    """timestamps prefixes the event's time; labels show a pipeline by name."""
    lines = await write(EVERY_KIND[1:2], timestamps=True, labels={P: "indexer"})
    assert lines == [f"2027-01-15T08:00:00.000Z indexer/{POD} | INFO block 19000123 indexed"]


def test_the_view_renders_one_line_per_event() -> None:
    """render() never yields a newline of its own, whatever the message holds."""
    view = TerminalView(colour=False)
    rendered = [view.render(event) for event in EVERY_KIND]
    assert all(line is not None and "\n" not in line for line in rendered)


# --- pipelines table ------------------------------------------------------------------------------


def test_the_pipelines_table_is_aligned_in_columns() -> None:
    """Header and rows line up; unknown values are `-`; ready/replicas as `1/2`."""
    rows = [
        PipelineRow.of(
            PipelineInfo("pipe_3e86", "indexer", "proj-1", "running"),
            PipelineStatus("pipe_3e86", None, "RUNNING", 2, 1),
        ),
        PipelineRow.of(PipelineInfo("pipe_x", "a much longer name", None, "paused")),
    ]
    assert render_pipelines(rows).splitlines() == [
        "ID          NAME                 PROJECT   STATUS    PHASE     READY",
        "pipe_3e86   indexer              proj-1    running   RUNNING   1/2",
        "pipe_x      a much longer name   -         paused    -         -",
    ]


def test_the_table_aligns_wide_characters_by_their_display_width() -> None:
    """A CJK name takes two columns a character; the next column still lines up."""
    rows = [
        PipelineRow("pipe_a", "\u7d22\u5f15", None, None, None, None, None),
        PipelineRow("pipe_b", "abcd", None, None, None, None, None),
    ]
    lines = render_pipelines(rows).splitlines()
    assert display_width(lines[1]) == display_width(lines[2])
    assert display_width("\u7d22\u5f15") == 4 and display_width("e\u0301") == 1


def test_an_empty_table_is_its_header() -> None:
    """No pipelines: the header alone (the CLI says why)."""
    assert render_pipelines([]) == "ID   NAME   PROJECT   STATUS   PHASE   READY"


def test_status_with_unknown_ready_count() -> None:
    """A status without a ready count shows `-/2`."""
    status = PipelineStatus(P, None, "DEPLOYING", 2, None)
    row = PipelineRow.of(PipelineInfo(P, "n", None, None), status)
    assert row.cells()[-2:] == ("DEPLOYING", "-/2")
