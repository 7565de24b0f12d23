"""The view for people at a terminal: `pipeline/pod | line` like stern, and the pipelines table.

On a terminal each pod's prefix has its own colour (the same one on every run: it comes from a
hash of the pod's name) and lifecycle events (gaps, tail errors, pods coming and going, API errors)
are dim. No colour when the output is not a terminal, when `NO_COLOR` is set (no-color.org) or
when `TERM=dumb`. Lines from the pods are shown as text: terminal escape sequences in them are
dropped and other control characters shown as `\\xNN`, so a pod cannot drive the terminal.

Size: over 300 lines because the two views people read, the stern-like line view and the
pipelines table, share its colour, width and escaping helpers.
"""

from __future__ import annotations

import contextlib
import re
import unicodedata
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, TextIO

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
from follower.core.model import PipelineInfo, PipelineStatus, format_ts
from follower.errors import SinkClosedError

PALETTE: Final = (31, 32, 33, 34, 35, 36, 91, 92, 93, 94, 95, 96)
"""ANSI foreground colours for pod prefixes: red to cyan, normal and bright."""
DIM: Final = "\x1b[2m"
RESET: Final = "\x1b[0m"

# CSI sequences (colours, cursor moves), OSC sequences (titles, clipboard) and other escapes.
_ESCAPES: Final = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]?"
)
_CONTROLS: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def use_colour(environ: Mapping[str, str], is_tty: bool) -> bool:
    """Colour only on a terminal, and not when NO_COLOR is set (non-empty) or TERM is dumb."""
    return is_tty and not environ.get("NO_COLOR") and environ.get("TERM") != "dumb"


def pod_colour(pod: str) -> int:
    """The pod's colour: stable across runs and machines (CRC-32, not Python's salted hash)."""
    return PALETTE[zlib.crc32(pod.encode("utf-8", "surrogatepass")) % len(PALETTE)]


def printable(text: str) -> str:
    """`text` without terminal escape sequences, other control characters as `\\xNN`."""
    text = _ESCAPES.sub("", text)
    return _CONTROLS.sub(lambda match: f"\\x{ord(match[0]):02x}", text)


@dataclass(frozen=True, slots=True)
class LineFilter:
    """Which log lines to show: any `include` matches (or there is none), and no `exclude` does."""

    include: tuple[re.Pattern[str], ...] = ()
    exclude: tuple[re.Pattern[str], ...] = ()

    def accepts(self, message: str) -> bool:
        """Whether a log line with this message is shown."""
        if self.include and not any(pattern.search(message) for pattern in self.include):
            return False
        return not any(pattern.search(message) for pattern in self.exclude)


SUFFIX_MIN: Final = 3
"""A pod suffix shorter than this is not shown alone (too easily confused)."""


def short_pod(pipeline_id: str, pod: str) -> str:
    """What tells the pod apart, like stern's pod names without the workload's: the part after
    the pipeline id (`pipeline-covalent-postgres-pipe-fa28...162dmlm2` -> `mlm2`).

    Pod names are `pipeline-` + the runtime uid (which holds the id with `_` as `-`), cut to
    Kubernetes' 63 characters, plus a random suffix; the id may itself be cut. The whole name
    when no useful suffix can be found.
    """
    dashed = pipeline_id.replace("_", "-")
    start = pod.find(dashed[:SUFFIX_MIN + 5])  # "pipe-" and a few hex digits
    if start < 0:
        return pod
    end = start
    while end < len(pod) and end - start < len(dashed) and pod[end] == dashed[end - start]:
        end += 1
    suffix = pod[end:].lstrip("-")
    return suffix if len(suffix) >= SUFFIX_MIN else pod


class TerminalView:
    """Turns events into lines of text; pure, so the format is tested without a terminal."""

    def __init__(
        self,
        *,
        colour: bool,
        line_filter: LineFilter | None = None,
        timestamps: bool = False,
        labels: Mapping[str, str] | None = None,
        short_pods: bool = False,
    ) -> None:
        """`labels` shows a pipeline by name instead of id; `timestamps` prefixes each line;
        `short_pods` shows a pod by its suffix (`short_pod`) after one line naming it in full
        with its pipeline, like stern's `+ pod` lines."""
        self._colour = colour
        self._filter = line_filter or LineFilter()
        self._timestamps = timestamps
        self._labels = dict(labels or {})
        self._short = short_pods
        self._introduced: set[tuple[str, str]] = set()

    def render_all(self, event: Event) -> list[str]:
        """The lines for `event`: with short pod names, a pod's first event is preceded by (or,
        for `pod_added`, replaced with) the line that names the pod and its pipeline in full."""
        pod: str | None = getattr(event, "pod", None)
        if not self._short or pod is None or (event.pipeline_id, pod) in self._introduced:
            line = self.render(event)
            return [] if line is None else [line]
        if isinstance(event, LogEvent) and not self._filter.accepts(event.message):
            return []
        self._introduced.add((event.pipeline_id, pod))
        pipeline = printable(self._labels.get(event.pipeline_id, event.pipeline_id))
        intro = f"+ {pipeline} {self._coloured(pod, short_pod(event.pipeline_id, pod))}"
        intro += f" ({printable(pod)})"
        if isinstance(event, PodAddedEvent):
            return [self._stamp(event.ts) + intro]
        line = self.render(event)
        return [intro] if line is None else [intro, line]

    def render(self, event: Event) -> str | None:
        """One line for `event` (without newline), or None when the filters hide it."""
        if isinstance(event, LogEvent):
            if not self._filter.accepts(event.message):
                return None
            line = f"{self._where(event.pipeline_id, event.pod)} | {printable(event.message)}"
            if event.partial:  # a snapshot of a line still being written
                line += " \u2026"
            return self._stamp(event.ts) + line
        text = f"{self._where(event.pipeline_id, getattr(event, 'pod', None))} [{_describe(event)}]"
        text = self._stamp(event.ts) + text
        return f"{DIM}{text}{RESET}" if self._colour else text

    def _where(self, pipeline_id: str, pod: str | None) -> str:
        pipeline = printable(self._labels.get(pipeline_id, pipeline_id))
        if pod is None:
            return pipeline
        if self._short:
            return self._coloured(pod, short_pod(pipeline_id, pod))
        return self._coloured(pod, f"{pipeline}/{printable(pod)}")

    def _coloured(self, pod: str, text: str) -> str:
        text = printable(text)
        return f"\x1b[{pod_colour(pod)}m{text}{RESET}" if self._colour else text

    def _stamp(self, ts: float) -> str:
        return f"{format_ts(ts)} " if self._timestamps else ""


def _describe(event: Event) -> str:
    """The bracketed text of a lifecycle event."""
    text = event.kind
    match event:
        case GapEvent():
            text = f"gap after line {event.after_seq}: lines may be missing ({event.reason})"
        case TailErrorEvent():
            text = f"tail error: {printable(event.error)}; retry in {event.retry_in_s:.1f}s"
        case PodAddedEvent():
            text = "pod added"
        case PodRemovedEvent():
            text = f"pod removed after line {event.last_seq}"
        case ApiErrorEvent():
            status = "" if event.status is None else f" {event.status}"
            retry = (
                "no longer polled" if event.retry_in_s is None
                else f"retry in {event.retry_in_s:.1f}s"
            )
            text = f"api error: {event.error}{status}: {printable(event.message)}; {retry}"
        case PipelineStatusEvent():
            text = f"status {printable(event.status)}"
            if event.replicas is not None:
                text += f", {_or_unknown(event.ready)}/{event.replicas} ready"
        case PipelineAddedEvent():
            text = "pipeline added"
            if event.name is not None:
                text += f": {printable(event.name)}"
        case PipelineRemovedEvent():
            text = f"pipeline removed ({event.reason})"
    return text


class TerminalSink:
    """A `Sink` that writes the terminal view to a text stream (stdout for `follower tail`)."""

    def __init__(
        self,
        stream: TextIO,
        *,
        environ: Mapping[str, str],
        is_tty: bool,
        include: Sequence[re.Pattern[str]] = (),
        exclude: Sequence[re.Pattern[str]] = (),
        timestamps: bool = False,
        labels: Mapping[str, str] | None = None,
        short_pods: bool = False,
    ) -> None:
        """Pass `os.environ` and `stream.isatty()`; tests pass what they need."""
        self._stream = stream
        self.view = TerminalView(
            colour=use_colour(environ, is_tty),
            line_filter=LineFilter(tuple(include), tuple(exclude)),
            timestamps=timestamps,
            labels=labels,
            short_pods=short_pods,
        )

    async def write(self, events: Sequence[Event]) -> None:
        """Write the shown events' lines and flush; SinkClosedError when the reader left."""
        lines = [line for event in events for line in self.view.render_all(event)]
        if lines:
            try:
                self._stream.write("\n".join(lines) + "\n")
                self._stream.flush()
            except BrokenPipeError as exc:  # `follower tail ... | head` after head exits
                raise SinkClosedError("the output was closed by its reader (broken pipe)") from exc

    async def aclose(self) -> None:
        """Flush the stream (it belongs to the caller, who closes it)."""
        with contextlib.suppress(BrokenPipeError):  # the reader is gone; nothing left to show
            self._stream.flush()


# --- `follower pipelines` ------------------------------------------------------------------------

PIPELINE_COLUMNS: Final = ("ID", "NAME", "PROJECT", "STATUS", "PHASE", "READY")
_GUTTER: Final = "   "
UNKNOWN: Final = "-"


@dataclass(frozen=True, slots=True)
class PipelineRow:
    """One row of the pipelines table; None where the API did not say."""

    id: str
    name: str
    project: str | None
    intent: str | None
    """The user's intent from the list endpoint: `running` or `paused`."""
    phase: str | None
    """The runtime phase from the status endpoint: RUNNING, DEPLOYING, FAILED, ..."""
    ready: int | None
    replicas: int | None
    uid: str | None = None
    """The runtime uid from the status endpoint (pod names start with `pipeline-` + uid)."""

    @classmethod
    def of(cls, info: PipelineInfo, status: PipelineStatus | None = None) -> PipelineRow:
        """A row from a list item and, when it was fetched, the pipeline's status."""
        return cls(
            id=info.id,
            name=info.name,
            project=info.project,
            intent=info.status,
            phase=None if status is None else status.status,
            ready=None if status is None else status.ready,
            replicas=None if status is None else status.replicas,
            uid=None if status is None else status.uid,
        )

    def to_json(self) -> dict[str, str | int | None]:
        """The row for `follower pipelines -o json`; None where the API did not say."""
        return {
            "id": self.id, "name": self.name, "project": self.project, "status": self.intent,
            "phase": self.phase, "ready": self.ready, "replicas": self.replicas, "uid": self.uid,
        }

    def cells(self) -> tuple[str, ...]:
        """The row's text, column by column."""
        if self.ready is None and self.replicas is None:
            ready = UNKNOWN
        else:
            ready = f"{_or_unknown(self.ready)}/{_or_unknown(self.replicas)}"
        return (
            self.id, self.name, _or_unknown(self.project), _or_unknown(self.intent),
            _or_unknown(self.phase), ready,
        )


def render_pipelines(rows: Iterable[PipelineRow], *, wide: bool = False) -> str:
    """The table `follower pipelines` prints: a header and one aligned line per row; `wide`
    adds the runtime uid."""
    header = (*PIPELINE_COLUMNS, "UID") if wide else PIPELINE_COLUMNS
    table = [header, *(
        tuple(printable(cell) for cell in row.cells() + ((_or_unknown(row.uid),) if wide else ()))
        for row in rows
    )]
    widths = [max(display_width(line[column]) for line in table) for column in range(len(table[0]))]
    return "\n".join(
        _GUTTER.join(_pad(cell, width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in table
    )


def _pad(cell: str, width: int) -> str:
    return cell + " " * (width - display_width(cell))


def display_width(text: str) -> int:
    """Columns `text` takes on a terminal: wide (CJK, emoji) characters 2, combining marks 0."""
    return sum(
        0 if unicodedata.combining(char) else 2 if unicodedata.east_asian_width(char) in "WF" else 1
        for char in text
    )


def _or_unknown(value: object) -> str:
    return UNKNOWN if value is None else str(value)
