"""The journal of new numberings: what a crash before the next checkpoint would otherwise forget.

A checkpoint holds each pod's epoch, sequence number and tail, so after a crash the lines written
since are written again under the ids they had: the restarted follower lines its new tail up with
the saved one and numbers on from there. A pod whose numbering began after the last checkpoint (a
pod first seen, one seen again after its removal, a first real tail after a tail error, a new
epoch) has nothing in the checkpoint to line up with: a restart would number its lines again, in
a new epoch, and a consumer that drops repeats by id would keep both copies.

So before the events of such a poll are written, the poller appends the pod's state to this file
(`<state file>.journal`, JSON Lines: a header with the journal's random id, then one record per
pod), with `replay_from` at the first line the poll numbers. A restart lays the records over the
checkpoint; the first tail that shows every line from `replay_from` on writes them again under
their ids (follower/core/tracker.py), and one that does not shows a gap and counts on in a new
epoch, as after any crash where the pod wrote more than its window.

The records are written, not synced: they must outlive the process (SIGKILL, OOM), and the page
cache keeps them through that; a machine crash can lose them as it can lose the output not yet
read. A checkpoint says which records it holds (`checkpoint.encode`'s `journal`), and those are
dropped once it is on disk. A restart that applied records saves the result before starting a
journal of its own, so a record is never lost between the two files.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Final

import orjson
import structlog

from follower.core.model import validate_pipeline_id
from follower.core.tracker import PodState
from follower.engine import checkpoint
from follower.engine.checkpoint import JournalMark, Saved
from follower.errors import StateFileError

__all__ = ["Journal", "journal_path", "read", "restore", "restore_state", "start"]

_FLAGS: Final = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC

Record = tuple[int, str, str, PodState]
"""A record's number, pipeline, pod and state."""


def journal_path(state_file: Path) -> Path:
    """The journal beside a state file."""
    return state_file.with_name(f"{state_file.name}.journal")


def read(path: Path) -> tuple[str | None, list[Record]]:
    """The journal's id and records (no id and none when there is no journal).

    A last line cut short is the write a crash interrupted, before its events were written: it is
    left out. Any other damage raises StateFileError, as a damaged checkpoint does, and so does
    anything but a regular file (a FIFO would block the start).
    """
    try:
        _check_regular(path)
        lines = path.read_bytes().split(b"\n")
    except FileNotFoundError:
        return None, []
    except OSError as exc:
        raise StateFileError(path, f"cannot be read: {exc.strerror}") from None
    documents: list[object] = []
    for index, line in enumerate(lines):
        try:
            documents.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            if index < len(lines) - 1:
                raise StateFileError(path, f"line {index + 1} is not valid JSON") from None
            if line:  # said, since damage from outside would look the same
                structlog.get_logger("follower").warning(
                    "journal_record_cut", path=str(path), line=index + 1,
                    hint="the last record was cut short (a crash while it was written, before "
                    "its events): it is left out",
                )
    if not documents:
        return None, []
    head = documents[0]
    if not isinstance(head, dict) or not isinstance(head.get("journal"), str):
        raise StateFileError(path, "line 1 is not a journal's header")
    try:
        return head["journal"], [_record(entry, index + 2)
                                 for index, entry in enumerate(documents[1:])]
    except ValueError as exc:
        raise StateFileError(path, str(exc)) from None


def _check_regular(path: Path) -> None:
    """StateFileError unless `path` is a regular file or does not exist (never followed if it
    is a symlink)."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        raise StateFileError(path, "it is not a regular file",
                             "Remove it, or choose another --state-file")


def _record(entry: object, line: int) -> Record:
    where = f"line {line}"
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected an object")
    number, pipeline_id, pod = entry.get("n"), entry.get("pipeline"), entry.get("pod")
    if type(number) is not int or not isinstance(pipeline_id, str) or not isinstance(pod, str):
        raise ValueError(f"{where}: expected a record number, a pipeline and a pod")
    validate_pipeline_id(pipeline_id)  # the merged state is saved, and read back strictly
    return number, pipeline_id, pod, checkpoint.decode_pod(entry.get("state"), f"{where}.state")


def restore(
    saved: dict[str, Saved] | None,
    mark: JournalMark | None,
    journal: tuple[str | None, list[Record]],
) -> tuple[dict[str, Saved] | None, int]:
    """`saved` with the journal's records that the checkpoint does not hold laid over it, and
    how many those were."""
    journal_id, records = journal
    fresh = [
        record for record in records
        if mark is None or mark[0] != journal_id or record[0] > mark[1]
    ]
    if not fresh:
        return saved, 0
    pipelines = dict(saved or {})
    for _, pipeline_id, pod, state in fresh:
        before = pipelines.get(pipeline_id)
        pods = dict(before.pods) if before is not None else {}
        pods[pod] = state
        pipelines[pipeline_id] = (
            Saved(pods, before.plan, before.window) if before is not None else Saved(pods)
        )
    return pipelines, len(fresh)


def restore_state(state_file: Path, now: float) -> dict[str, Saved] | None:
    """The checkpoint with the journal's records it does not hold laid over it. When there
    were such records, the result is saved first: the journal `start` opens replaces the old."""
    loaded = checkpoint.load_marked(state_file)
    saved, mark = loaded if loaded is not None else (None, None)
    restored, applied = restore(saved, mark, read(journal_path(state_file)))
    if applied and restored is not None:
        try:
            checkpoint.save(state_file, checkpoint.encode(restored, now))
        except OSError as exc:
            raise StateFileError(
                state_file, f"cannot be written: {exc.strerror or exc}"
            ) from None
    return restored


def start(state_file: Path) -> Journal:
    """This process's journal beside `state_file` (after `restore_state`, or a reset)."""
    path = journal_path(state_file)
    _check_regular(path)
    try:
        return Journal(path)
    except OSError as exc:
        raise StateFileError(
            state_file, f"its journal {str(path)!r} cannot be opened: {exc.strerror or exc}"
        ) from None


class Journal:
    """This process's journal: a new file (any earlier one must already be in the checkpoint)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._id = secrets.token_hex(8)
        self._head = orjson.dumps({"journal": self._id}) + b"\n"
        self._count = 0
        self._kept: list[tuple[int, bytes]] = []  # records no checkpoint on disk holds yet
        self._descriptor = os.open(path, _FLAGS, 0o600)
        os.write(self._descriptor, self._head)
        self._size = len(self._head)  # where the last whole record ends

    def append(self, pipeline_id: str, pods: Iterable[tuple[str, PodState]]) -> None:
        """Write a record per pod, in one write; OSError when it cannot be written."""
        records = []
        for pod, state in pods:
            self._count += 1
            record = orjson.dumps({
                "n": self._count, "pipeline": pipeline_id, "pod": pod,
                "state": checkpoint.encode_pod(state),
            }) + b"\n"
            records.append((self._count, record))
        data = b"".join(record for _, record in records)
        try:
            written = os.write(self._descriptor, data)
        except OSError:
            self._undo(records)
            raise
        if written != len(data):  # the disk filled up mid-record: take the piece back
            self._undo(records)
            raise OSError(errno.ENOSPC, f"short write to {self._path}")
        self._size += len(data)
        self._kept += records

    def _undo(self, records: list[tuple[int, bytes]]) -> None:
        """Forget records that were not (wholly) written, and cut the file back to its last whole
        record: a piece left behind would glue the next record to it (a damaged journal)."""
        self._count -= len(records)
        os.ftruncate(self._descriptor, self._size)

    def mark(self) -> JournalMark:
        """The records a snapshot taken now holds: every one written so far."""
        return self._id, self._count

    def compact(self, mark: JournalMark) -> None:
        """Drop the records a checkpoint now on disk holds (`mark` from `mark()`)."""
        self._kept = [(number, record) for number, record in self._kept if number > mark[1]]
        if not self._kept:
            os.ftruncate(self._descriptor, len(self._head))
            self._size = len(self._head)
            return
        temporary = self._path.with_name(f".{self._path.name}.tmp-{secrets.token_hex(8)}")
        descriptor = os.open(temporary, _FLAGS | os.O_EXCL, 0o600)
        data = self._head + b"".join(record for _, record in self._kept)
        try:
            if os.write(descriptor, data) != len(data):
                raise OSError(f"short write to {temporary}")
            os.replace(temporary, self._path)
        except BaseException:
            os.close(descriptor)
            temporary.unlink(missing_ok=True)
            raise
        os.close(self._descriptor)
        self._descriptor = descriptor
        self._size = len(data)

    def close(self) -> None:
        """Close the file (its records stay until a checkpoint holds them)."""
        os.close(self._descriptor)
