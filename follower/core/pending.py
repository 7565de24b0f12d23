"""A line still being written: the last segment of a tail when no newline ends it.

`logs` is `kubectl logs --tail` output: a line the container has not terminated yet is the last
segment, with no `\\n` after it (a progress bar, a long line written in pieces). Its text may
still change, so the differ only ever sees the terminated lines; the open segment is held per
pod as a `Pending`, and shown as a provisional `partial` snapshot only once it stopped changing.

Whether an API ends `logs` with a newline at all is not documented. Nothing here assumes it: if
it never does, the last line of every tail is open, the differ aligns on the lines before it, and
each line is emitted once, final, as soon as a later line proves it complete; a quiet pod's last
line is still delivered, as a snapshot, `partial_flush_s` after it was first seen.

Pure: times are arguments (wall seconds, as the tracker's `now`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

NEWLINE: Final = "\n"


def split_open(logs: str) -> tuple[str, str | None]:
    """(the terminated part of `logs`, ending in a newline or empty; the open last segment or None).

    Only `\\n` separates lines: a `\\r` inside a segment (a rewritten progress bar) is data.
    """
    if not logs or logs[-1] == NEWLINE:  # the common case costs one comparison
        return logs, None
    cut = logs.rfind(NEWLINE) + 1
    return logs[:cut], logs[cut:]


@dataclass(frozen=True, slots=True)
class Pending:
    """An open segment as the follower last saw it at one position of the pod's output.

    `digest` is its text's fingerprint (what a checkpoint keeps; `text` is None after a restart
    until the next poll shows it again). `seen_at` is when this text was first seen at this
    position; `flushed` says a snapshot of it was already written.
    """

    digest: int
    seen_at: float
    flushed: bool
    text: str | None = None

    def due_at(self, flush_s: float) -> float:
        """When a snapshot of it is due (never for a flushed one, or one whose text is unknown)."""
        if self.flushed or self.text is None:
            return float("inf")
        return self.seen_at + flush_s


def follow(previous: Pending | None, text: str, digest: int, moved: bool, now: float) -> Pending:
    """The pending segment after a poll showed `text` as the open segment.

    `moved`: complete lines arrived before it (or the tail did not line up), so it is another
    line than `previous`, whatever its text. Otherwise the same text keeps its first sight and
    whether it was flushed; a changed text (the line grew or was rewritten) starts again.
    """
    if previous is not None and not moved and previous.digest == digest:
        return Pending(digest, previous.seen_at, previous.flushed, text)
    return Pending(digest, now, False, text)
