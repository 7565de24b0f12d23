"""JSON Lines files for shippers to follow: size rotation by rename-and-reopen, never copytruncate.

Rotation renames `x.jsonl` to `x.jsonl.1` (after `.1` became `.2`, and so on, the oldest deleted)
and opens a new `x.jsonl`. Vector, Fluent Bit, Filebeat and rsyslog follow files by inode: a
shipper that has the old file open reads it to its end, then picks up the new file by its name.
Copy-and-truncate would race the shipper and lose or repeat lines; it is never done here.

Guarantees:
- A line is written whole or not at all: a failed write is cut back to where it began.
- No event spans two files: rotation happens *before* a write that would take the file past
  `max_bytes`, and an event larger than `max_bytes` goes alone into a fresh file.
- Files are created 0640 whatever the umask (then owner and group may change them).
- `fsync = "always"` syncs every file written before `write` returns; `"interval"` syncs at the
  first write `fsync_interval_s` after the last sync, at rotation and at close; `"never"` leaves
  it to the kernel. fsync runs in a worker thread, off the event loop (with "never" there is no
  fsync, and writes to the page cache are done inline).
- `reopen()` (SIGHUP, for an external logrotate) closes every file; the next write opens each
  name afresh, creating the file if logrotate renamed it away.
- A file deleted while open (`rm`, or `rm -r` of the folder) is noticed before and after each
  write (its name count is 0): the lines go to a new file at its name, the folder made again
  if it was deleted (the folder only, never its parents: then the run ends, the poll undone),
  so no line goes to a nameless inode while the checkpoint moves past it.
- An events file that is a symbolic link or not a regular file (a FIFO, a device) is refused,
  never followed: a daemon writing as root into a shared folder must not append to whatever a
  planted link points at. The folder is checked at start (`OutputFolderError`, exit 3); every open
  also refuses them (O_NOFOLLOW, fstat), which ends the run (exit 1) with the poll undone.
- Per pipeline, at most `max_open_files` files are open, and at most a quarter of the soft
  RLIMIT_NOFILE (`ulimit -n`); the least recently written are closed first. An open that fails
  with EMFILE or ENFILE closes another file and tries again, and lowers the cap to what was open.
- A poll's events are encoded and written in pieces of whole lines (follower/sinks/encoding.py),
  each line within `max_line_bytes`; when a piece fails the poll is undone, so the lines of its
  earlier pieces may be repeated after a restart, never lost.

Size: over 300 lines because it is one sink: the rotating file and the sink that routes events
to files, with what both need: the link and FIFO refusals, a deleted file or folder made again,
and the open files kept within the process's descriptor limit.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final, Literal

import anyio
import anyio.to_thread

from follower.clock import Clock
from follower.core.batch import pipeline_ids
from follower.core.events import Event
from follower.core.model import DEFAULT_MAX_LINE_BYTES, PIPELINE_ID_RE
from follower.errors import FileSinkError, OutputFolderError
from follower.sinks.encoding import PIECE_BYTES, PIECE_EVENTS, encoded_lines, line_limit

Layout = Literal["single", "per-pipeline"]
FsyncMode = Literal["never", "interval", "always"]

SINGLE_FILE: Final = "events.jsonl"
FILE_MODE: Final = 0o640
DIR_MODE: Final = 0o750
DEFAULT_MAX_BYTES: Final = 100 * 1024 * 1024
DEFAULT_MAX_FILES: Final = 5
DEFAULT_MAX_OPEN: Final = 128
OPEN_SHARE: Final = 4
"""The sink keeps at most 1/OPEN_SHARE of RLIMIT_NOFILE's soft limit open: the rest is left to
sockets, the state file, the journal and the ops server."""
DEFAULT_LAYOUT: Final[Layout] = "single"
DEFAULT_FSYNC: Final[FsyncMode] = "interval"
DEFAULT_FSYNC_INTERVAL_S: Final = 1.0
# O_NOFOLLOW: a planted symlink fails the open; O_NONBLOCK: a planted FIFO cannot hang it.
_OPEN_FLAGS: Final = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
_NAMELESS_RETRIES: Final = 3
"""Writes of one piece to a file that is deleted each time before `write` ends with an error."""


def file_name(pipeline_id: str, layout: Layout) -> str:
    """The file an event of `pipeline_id` goes to: `events.jsonl`, or `<pipeline_id>.jsonl` per
    pipeline."""
    if layout == "per-pipeline" and PIPELINE_ID_RE.fullmatch(pipeline_id):
        return f"{pipeline_id}.jsonl"
    return SINGLE_FILE  # an id the model never lets through would not become a path


def rotated_name(name: str, index: int) -> str:
    """`x.jsonl` for 0, `x.jsonl.1` for 1, ... (logrotate's and shippers' numbering)."""
    return name if index == 0 else f"{name}.{index}"


class RotatingFile:
    """One events file and its rotated predecessors; synchronous, used under the sink's lock."""

    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int,
        max_files: int,
        fsync: Callable[[int], None] | None,
        make_room: Callable[[RotatingFile], bool] = lambda _: False,
    ) -> None:
        """`make_room(self)` closes another open file when the process is out of descriptors;
        False when there is none to close."""
        self.path = path
        self._make_room = make_room
        self._max_bytes = max_bytes
        self._max_files = max_files
        self._fsync = fsync
        self._fd: int | None = None
        self._size = 0
        self.dirty = False

    def write_lines(self, lines: Sequence[bytes]) -> None:
        """Append whole lines, rotating before any line that would take the file past the cap."""
        self._look()
        pending: list[bytes] = []
        pending_size = 0
        for line in lines:
            fd = self._open()
            if self._size + pending_size + len(line) > self._max_bytes and (
                self._size + pending_size > 0
            ):
                self._append(fd, pending)
                pending, pending_size = [], 0
                self._rotate()
            pending.append(line)
            pending_size += len(line)
        if pending:
            self._append(self._open(), pending)

    def sync(self) -> None:
        """fsync the file if anything was written since the last sync."""
        if self._fd is not None and self.dirty and self._fsync is not None:
            self._fsync(self._fd)
        self.dirty = False

    def close(self) -> None:
        """Sync (unless fsync is off) and close; the next write opens the name afresh."""
        if self._fd is None:
            return
        try:
            self.sync()
        finally:
            os.close(self._fd)
            self._fd = None

    def _look(self) -> None:
        """Before a write, one fstat of the open file: drop it if it lost its name (deleted, or
        its folder was), so the lines go to a new file at the name and not to an inode nothing
        will ever read while the checkpoint moves past them; else take its size as it is now
        (a copytruncate shrank it). A rename keeps the name count: lines follow the renamed
        file until `reopen()`, as shippers following inodes expect."""
        if self._fd is None:
            return
        status = os.fstat(self._fd)
        if status.st_nlink == 0:
            self._drop()
        else:
            self._size = status.st_size

    @property
    def is_open(self) -> bool:
        return self._fd is not None

    def _open(self) -> int:
        if self._fd is None:
            self._fd = self._open_path()
            self._size = os.fstat(self._fd).st_size
        return self._fd

    def _open_path(self) -> int:
        """Open the name, making the folder again if it was deleted while the follower ran, and
        closing other files while the process is out of descriptors (EMFILE, or ENFILE for the
        whole system) rather than ending the run while files it could close are open."""
        made_folder = False
        while True:
            try:
                return _open_append(self.path)
            except FileNotFoundError:
                if made_folder:
                    raise
                _make_folder(self.path.parent)
                made_folder = True
            except OSError as exc:
                if exc.errno not in (errno.EMFILE, errno.ENFILE) or not self._make_room(self):
                    raise

    def _drop(self) -> None:
        """Close a file that has no name any more, without syncing: nothing can read it."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
            self.dirty = False

    def _append(self, fd: int, lines: list[bytes]) -> None:
        """Write the lines, then check that the file still has a name: a deletion between
        `_look()` and the write sent them to a nameless inode, so they are written again to a
        new file at the name (a few times at most: a file deleted at every write is an error)."""
        if not lines:
            return
        data = b"".join(lines)
        for _ in range(_NAMELESS_RETRIES):
            try:
                _write_all(fd, data)
            except OSError:
                with contextlib.suppress(OSError):  # best effort: never leave half a line behind
                    os.ftruncate(fd, self._size)
                raise
            status = os.fstat(fd)
            if status.st_nlink > 0:
                self._size = status.st_size
                self.dirty = True
                return
            self._drop()
            fd = self._open()
        raise OSError(errno.ENOENT, "the file is deleted as soon as it is written")

    def _rotate(self) -> None:
        self.close()
        folder, name = self.path.parent, self.path.name
        oldest = folder / rotated_name(name, self._max_files - 1)
        oldest.unlink(missing_ok=True)
        for index in range(self._max_files - 2, -1, -1):  # .1 -> .2 first, the live file last
            source, target = rotated_name(name, index), rotated_name(name, index + 1)
            with contextlib.suppress(FileNotFoundError):
                os.rename(folder / source, folder / target)


def _open_append(path: Path) -> int:
    """Open for appending; a file we create is 0640 whatever the umask, an existing one keeps its
    mode (logrotate's `create` or the operator may have chosen another). A symbolic link or
    anything but a regular file is refused with FileSinkError, never followed or written."""
    while True:
        try:
            fd = os.open(path, _OPEN_FLAGS | os.O_CREAT | os.O_EXCL, FILE_MODE)
        except FileExistsError:
            try:
                fd = os.open(path, _OPEN_FLAGS)
            except FileNotFoundError:  # removed between the two calls: create it after all
                continue
            except OSError:
                _refuse_special(path)  # a symlink (ELOOP) or a FIFO without reader (ENXIO)
                raise
        else:
            try:
                os.fchmod(fd, FILE_MODE)
            except OSError:
                os.close(fd)
                raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise FileSinkError(f"refusing to write events to {path}: not a regular file")
        return fd


def _make_folder(folder: Path) -> None:
    """Make the output folder again after it was deleted, as it was made at start (0750 under
    the umask), but only the folder itself: if its parent is gone too (an unmounted volume, a
    removed tree) the open fails and the run ends with the poll undone, rather than the events
    going to a tree made up on another disk."""
    with contextlib.suppress(FileExistsError):
        folder.mkdir(mode=DIR_MODE)


def _nofile_limit() -> int | None:
    """The soft limit on the descriptors this process may open; None when there is none."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def _refuse_special(path: Path) -> None:
    """Raise FileSinkError if `path` is a symbolic link or exists as anything but a file."""
    try:
        status = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISLNK(status.st_mode):
        raise FileSinkError(f"refusing to write events to {path}: it is a symbolic link")
    if not stat.S_ISREG(status.st_mode):
        raise FileSinkError(f"refusing to write events to {path}: not a regular file")


def check_folder(directory: Path) -> None:
    """OutputFolderError naming the first events file in `directory` that would be refused (a
    symbolic link or not a regular file), so a planted one stops the follower at start."""
    try:
        names = sorted(os.listdir(directory))
    except OSError as exc:
        raise OutputFolderError(
            f"cannot list the output folder {directory}: {exc.strerror}"
        ) from exc
    for name in names:
        if name.endswith(".jsonl"):
            try:
                _refuse_special(directory / name)
            except FileSinkError as exc:  # at start, not while writing: exit 3, not 1
                raise OutputFolderError(str(exc)) from None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class FileSink:
    """A `Sink` that appends JSON Lines to files in `directory`, rotated by size."""

    def __init__(
        self,
        directory: Path,
        *,
        clock: Clock,
        layout: Layout = DEFAULT_LAYOUT,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_files: int = DEFAULT_MAX_FILES,
        fsync: FsyncMode = DEFAULT_FSYNC,
        fsync_interval_s: float = DEFAULT_FSYNC_INTERVAL_S,
        max_open_files: int = DEFAULT_MAX_OPEN,
        fsync_hook: Callable[[int], None] = os.fsync,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    ) -> None:
        """`max_files` counts the live file and its rotated copies (like Docker's `max-file`);
        at most `max_open_files` files are kept open, fewer if RLIMIT_NOFILE asks (OPEN_SHARE).

        Raises OutputFolderError if `directory` cannot be created or holds an events file that is a
        symbolic link or not a regular file; ValueError for bad settings.
        """
        if max_bytes < 1 or max_files < 2 or max_open_files < 1 or fsync_interval_s < 0:
            raise ValueError(
                "FileSink needs max_bytes >= 1, max_files >= 2, max_open_files >= 1 and "
                f"fsync_interval_s >= 0 (got {max_bytes}, {max_files}, {max_open_files}, "
                f"{fsync_interval_s})"
            )
        try:
            directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputFolderError(f"cannot create the output folder {directory}: {exc}") from exc
        check_folder(directory)
        self.directory = directory
        self._line_limit = line_limit(max_line_bytes)
        self._clock = clock
        self._layout = layout
        self._max_bytes = max_bytes
        self._max_files = max_files
        self._fsync_mode = fsync
        self._fsync_interval_s = fsync_interval_s
        limit = _nofile_limit()
        self._max_open = (
            max_open_files if limit is None else min(max_open_files, max(1, limit // OPEN_SHARE))
        )
        self._fsync_hook = fsync_hook
        self._files: dict[str, RotatingFile] = {}  # least recently written first
        self._lock = anyio.Lock(fast_acquire=True)  # no yield to the loop when uncontended
        self._last_sync = clock.monotonic()
        self._reopen = False

    async def write(self, events: Sequence[Event]) -> None:
        """Append the events, one line each, in order; rotate and sync as configured."""
        if not events:
            return
        async with self._lock:
            now = self._clock.monotonic()
            sync = self._fsync_mode == "always" or (
                self._fsync_mode == "interval" and now - self._last_sync >= self._fsync_interval_s
            )
            piece: dict[str, list[bytes]] = {}
            count = size = 0
            lines = encoded_lines(events, self._line_limit)
            for pipeline_id, line in zip(pipeline_ids(events), lines, strict=True):
                piece.setdefault(file_name(pipeline_id, self._layout), []).append(line)
                count, size = count + 1, size + len(line)
                if count >= PIECE_EVENTS or size >= PIECE_BYTES:
                    await self._write_piece(piece, sync=False)
                    piece, count, size = {}, 0, 0
            await self._write_piece(piece, sync=sync)
            if sync:
                self._last_sync = now

    async def _write_piece(self, piece: dict[str, list[bytes]], *, sync: bool) -> None:
        if self._fsync_mode == "never":
            self._write_sync(piece, sync=False)
        else:
            await anyio.to_thread.run_sync(lambda: self._write_sync(piece, sync=sync))

    @property
    def max_open_files(self) -> int:
        """How many files are kept open at most (least recently written closed first)."""
        return self._max_open

    @property
    def open_files(self) -> int:
        """How many events files are open now."""
        return sum(target.is_open for target in self._files.values())

    def reopen(self) -> None:
        """Close every file at the next write and open each name afresh (after logrotate)."""
        self._reopen = True

    async def aclose(self) -> None:
        """Sync (unless fsync is "never") and close every file."""
        async with self._lock:
            if self._fsync_mode == "never":
                self._close_all()
            else:
                await anyio.to_thread.run_sync(self._close_all)

    def _write_sync(self, batches: dict[str, list[bytes]], *, sync: bool) -> None:
        if self._reopen:
            self._reopen = False
            self._close_all()
        for name, lines in batches.items():
            try:
                self._file(name).write_lines(lines)
            except OSError as exc:
                raise FileSinkError(f"cannot write {self.directory / name}: {exc}") from exc
        if sync:
            for target in self._files.values():
                target.sync()

    def _file(self, name: str) -> RotatingFile:
        target = self._files.pop(name, None)
        if target is None:
            target = RotatingFile(
                self.directory / name,
                max_bytes=self._max_bytes,
                max_files=self._max_files,
                fsync=None if self._fsync_mode == "never" else self._fsync_hook,
                make_room=self._make_room,
            )
        self._files[name] = target  # now the most recently used
        while len(self._files) > self._max_open:
            self._files.pop(next(iter(self._files))).close()
        return target

    def _make_room(self, requester: RotatingFile) -> bool:
        """The process is out of descriptors: close the least recently written open file but
        `requester`, and from now on keep open no more than were open (something else in the
        process needs the rest). False when no other file is open."""
        for name, target in self._files.items():
            if target is not requester and target.is_open:
                self._max_open = max(1, min(self._max_open, self.open_files))
                del self._files[name]
                target.close()
                return True
        return False

    def _close_all(self) -> None:
        files, self._files = self._files, {}
        errors: list[OSError] = []
        for target in files.values():
            try:
                target.close()
            except OSError as exc:  # close the others all the same
                errors.append(exc)
        if errors:
            raise FileSinkError(f"closing the events files failed: {errors[0]}") from errors[0]
