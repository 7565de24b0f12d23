"""Where events go, as configured: `output.*`, the settings `engine.service.build_sink` takes.

The file sink's own defaults (follower/sinks/files.py) and the line limit of follower/core/model.py
are referred to, not written again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, get_args

from follower.core.model import DEFAULT_MAX_LINE_BYTES
from follower.sinks import files

OutputKind = Literal["stdout", "file"]
"""Where events go: `output.kind`, one choice per sink `engine.service.build_sink` builds."""
OUTPUT_KINDS: Final[tuple[str, ...]] = get_args(OutputKind)


@dataclass(frozen=True, slots=True)
class OutputSettings:
    """The sink and its knobs; `dir` and the rotation keys matter only with `kind = "file"`."""

    kind: OutputKind = "stdout"
    dir: Path | None = None
    layout: files.Layout = files.DEFAULT_LAYOUT
    max_bytes: int = files.DEFAULT_MAX_BYTES
    max_files: int = files.DEFAULT_MAX_FILES
    fsync: files.FsyncMode = files.DEFAULT_FSYNC
    fsync_interval_s: float = files.DEFAULT_FSYNC_INTERVAL_S
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    """The longest line written whole (the sinks' limit and the trackers' cut)."""
