"""The file sink: rotation that loses and splits nothing, max_files, reopen, modes and fsync."""

from __future__ import annotations

import errno
import os
import random
import shutil
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from follower.core.batch import EventBatch, LogRun
from follower.core.events import Event, GapEvent, LogEvent, PodAddedEvent
from follower.errors import FileSinkError
from follower.sinks import Sink
from follower.sinks import files as files_module
from follower.sinks.files import FileSink, rotated_name
from follower.testing import FakeClock

P1 = "pipe_3e8678c5fc9e48a7bf9879ca729"
P2 = "pipe_0a5bb0d35d46587868de739b149"
POD = "pipeline-covalent-postgres-mlm2"
ROOT = Path(__file__).resolve().parents[1]


def stream(count: int, *, pipeline_id: str = P1, seed: int = 1) -> list[Event]:
    """Log events of varied length, some multi-byte, with a lifecycle event now and then."""
    rng = random.Random(seed)
    events: list[Event] = []
    for seq in range(1, count + 1):
        text = f"line {seq} " + rng.choice(["é", "x", "\U0001f600", '"q"']) * rng.randrange(200)
        events.append(LogEvent(1.8e9 + seq, pipeline_id, POD, seq, text))
        if seq % 97 == 0:
            events.append(GapEvent(1.8e9 + seq, pipeline_id, POD, seq, "no_overlap"))
    return events


def encoded(events: list[Event]) -> list[bytes]:
    return [orjson.dumps(event.to_wire()) + b"\n" for event in events]


def rotation_order(folder: Path, name: str) -> list[Path]:
    """`name.N`, ..., `name.1`, `name`: oldest first, as a shipper reads them."""
    rotated = sorted(
        (p for p in folder.iterdir() if p.name.startswith(f"{name}.")),
        key=lambda p: int(p.name.rsplit(".", 1)[1]),
        reverse=True,
    )
    return [*rotated, folder / name]


def names(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def modes(folder: Path) -> set[int]:
    return {stat.S_IMODE(path.stat().st_mode) for path in folder.iterdir()}


def read_lines(paths: list[Path]) -> list[bytes]:
    return [line for path in paths for line in path.read_bytes().splitlines(keepends=True)]


def batches(events: list[Event], rng: random.Random) -> Iterator[list[Event]]:
    start = 0
    while start < len(events):
        size = rng.randrange(1, 40)
        yield events[start : start + size]
        start += size


def sink(folder: Path, clock: FakeClock | None = None, **settings: object) -> FileSink:
    return FileSink(folder, clock=clock or FakeClock(), **settings)  # type: ignore[arg-type]


async def test_a_file_sink_is_a_sink(tmp_path: Path) -> None:
    """FileSink satisfies the Sink protocol the runner writes to."""
    target: Sink = sink(tmp_path)
    await target.aclose()


async def test_rotation_under_a_stream_loses_and_splits_nothing(tmp_path: Path) -> None:
    """Read back in rotation order, the files hold every line once, in order, each whole."""
    events = stream(2000)
    target = sink(tmp_path, max_bytes=20_000, max_files=1000, fsync="never")
    for batch in batches(events, random.Random(2)):
        await target.write(batch)
    await target.aclose()
    paths = rotation_order(tmp_path, "events.jsonl")
    assert len(paths) > 10
    lines = read_lines(paths)
    assert lines == encoded(events)
    for line in lines:
        orjson.loads(line)
    for path in paths:
        data = path.read_bytes()
        assert data.endswith(b"\n")
        assert len(data) <= 20_000 or data.count(b"\n") == 1


async def test_rotation_happens_before_the_write_that_would_overflow(tmp_path: Path) -> None:
    """A file is filled up to max_bytes at most: the line that would overflow starts a new file."""
    events = stream(30)
    sizes = [len(line) for line in encoded(events)]
    target = sink(tmp_path, max_bytes=sum(sizes[:3]), max_files=100)
    await target.write(events)
    await target.aclose()
    oldest = rotation_order(tmp_path, "events.jsonl")[0]
    assert oldest.read_bytes() == b"".join(encoded(events)[:3])


async def test_an_event_larger_than_max_bytes_goes_alone_into_a_fresh_file(
    tmp_path: Path,
) -> None:
    """A huge event is written whole, alone in its file; the next event starts another file."""
    small = LogEvent(1.8e9, P1, POD, 1, "small")
    huge = LogEvent(1.8e9, P1, POD, 2, "h" * 5000)
    after = LogEvent(1.8e9, P1, POD, 3, "after")
    target = sink(tmp_path, max_bytes=1000, max_files=10)
    await target.write([small, huge, after])
    await target.aclose()
    files = [path.read_bytes() for path in rotation_order(tmp_path, "events.jsonl")]
    assert files == [b"".join(encoded([e])) for e in (small, huge, after)]


async def test_max_files_keeps_the_newest_and_deletes_the_oldest(tmp_path: Path) -> None:
    """With max_files=3 only events.jsonl, .1 and .2 remain, holding the end of the stream."""
    events = stream(500)
    target = sink(tmp_path, max_bytes=4_000, max_files=3)
    for batch in batches(events, random.Random(3)):
        await target.write(batch)
    await target.aclose()
    assert names(tmp_path) == [
        "events.jsonl", "events.jsonl.1", "events.jsonl.2",
    ]
    kept = read_lines(rotation_order(tmp_path, "events.jsonl"))
    assert kept == encoded(events)[-len(kept) :]


async def test_per_pipeline_layout_writes_one_file_per_pipeline(tmp_path: Path) -> None:
    """layout per-pipeline: `<pipeline_id>.jsonl` each, every pipeline's events in order."""
    first, second = stream(300, pipeline_id=P1), stream(300, pipeline_id=P2, seed=9)
    mixed = [event for pair in zip(first, second, strict=False) for event in pair]
    target = sink(tmp_path, layout="per-pipeline", max_bytes=10_000, max_files=100,
                  max_open_files=1)
    for batch in batches(mixed, random.Random(4)):
        await target.write(batch)
    await target.aclose()
    assert read_lines(rotation_order(tmp_path, f"{P1}.jsonl")) == encoded(first)
    assert read_lines(rotation_order(tmp_path, f"{P2}.jsonl")) == encoded(second)
    assert not (tmp_path / "events.jsonl").exists()


async def test_per_pipeline_layout_routes_the_runs_of_a_batch(tmp_path: Path) -> None:
    """A tracker's batch (runs of lines, not events) goes to the same files, line for line, as
    its events one by one."""
    batch = EventBatch([
        PodAddedEvent(1.8e9, P1, POD),
        LogRun(1.8e9, P1, POD, 1, [f"one {n}" for n in range(300)], "e1"),
        LogRun(1.8e9, P2, POD, 7, [f"two {n}" for n in range(5)], "e2"),
        LogEvent(1.8e9, P1, POD, 301, "after", epoch="e1"),
    ])
    target = sink(tmp_path, layout="per-pipeline", max_bytes=10**6)
    await target.write(batch)
    await target.aclose()
    for pipeline_id in (P1, P2):
        expected = encoded([event for event in batch if event.pipeline_id == pipeline_id])
        assert read_lines([tmp_path / f"{pipeline_id}.jsonl"]) == expected


async def test_reopen_after_an_external_rename_starts_a_new_file(tmp_path: Path) -> None:
    """logrotate renames the file and sends SIGHUP: the next write creates a new events.jsonl."""
    target = sink(tmp_path)
    await target.write([PodAddedEvent(1.8e9, P1, POD)])
    (tmp_path / "events.jsonl").rename(tmp_path / "events.jsonl-20261128")
    target.reopen()
    await target.write([LogEvent(1.8e9, P1, POD, 1, "after")])
    await target.aclose()
    assert (tmp_path / "events.jsonl-20261128").read_bytes().count(b"\n") == 1
    assert b'"after"' in (tmp_path / "events.jsonl").read_bytes()
    assert (tmp_path / "events.jsonl").read_bytes().count(b"\n") == 1


async def test_without_reopen_writes_follow_the_renamed_file(tmp_path: Path) -> None:
    """Until reopen() the open file keeps receiving lines, as a shipper following inodes expects."""
    target = sink(tmp_path)
    await target.write([PodAddedEvent(1.8e9, P1, POD)])
    (tmp_path / "events.jsonl").rename(tmp_path / "moved")
    await target.write([LogEvent(1.8e9, P1, POD, 1, "still here")])
    await target.aclose()
    assert (tmp_path / "moved").read_bytes().count(b"\n") == 2
    assert not (tmp_path / "events.jsonl").exists()


async def test_a_deleted_events_file_is_made_again_and_keeps_every_line(tmp_path: Path) -> None:
    """The events file is deleted while open: the next write goes to a new file at its name,
    not to the nameless inode (whose lines a checkpoint would cover and a restart skip)."""
    events = stream(20)
    target = sink(tmp_path, fsync="never")
    await target.write(events[:10])
    (tmp_path / "events.jsonl").unlink()
    await target.write(events[10:])
    await target.aclose()
    assert read_lines([tmp_path / "events.jsonl"]) == encoded(events[10:])
    assert modes(tmp_path) == {0o640}


@pytest.mark.parametrize("fsync", ["never", "always"])
async def test_a_deleted_output_folder_is_made_again_and_keeps_every_line(
    tmp_path: Path, fsync: str
) -> None:
    """`rm -r` of the output folder at runtime: the next write makes the folder (0750) and each
    file again, so every line written after the deletion is in a file that exists."""
    folder = tmp_path / "out"
    first, second = stream(40, pipeline_id=P1), stream(40, pipeline_id=P2, seed=9)
    target = sink(folder, layout="per-pipeline", fsync=fsync)
    await target.write(first[:20] + second[:20])
    shutil.rmtree(folder)
    await target.write(first[20:] + second[20:])
    await target.aclose()
    assert read_lines([folder / f"{P1}.jsonl"]) == encoded(first[20:])
    assert read_lines([folder / f"{P2}.jsonl"]) == encoded(second[20:])
    assert stat.S_IMODE(folder.stat().st_mode) == 0o750


async def test_a_file_deleted_during_a_write_gets_the_lines_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deletion between the look at the file and the write itself: the lines that went to the
    nameless inode are written again to a new file at the name."""
    target = sink(tmp_path, fsync="never")
    await target.write([PodAddedEvent(1.8e9, P1, POD)])
    real_write = os.write
    deleted: list[bool] = []

    def delete_then_write(fd: int, data: bytes | memoryview) -> int:
        if not deleted:
            deleted.append(True)
            (tmp_path / "events.jsonl").unlink()
        return real_write(fd, data)

    monkeypatch.setattr(files_module.os, "write", delete_then_write)
    events = stream(5)
    await target.write(events)
    await target.aclose()
    assert deleted
    assert read_lines([tmp_path / "events.jsonl"]) == encoded(events)


async def test_a_deleted_folder_whose_parent_is_gone_ends_the_run(tmp_path: Path) -> None:
    """Only the output folder itself is made again, never the folders above it (an unmounted
    volume must not become a tree on another disk): FileSinkError, the poll is undone."""
    folder = tmp_path / "volume" / "out"
    target = sink(folder, fsync="never")
    await target.write([PodAddedEvent(1.8e9, P1, POD)])
    shutil.rmtree(tmp_path / "volume")
    with pytest.raises(FileSinkError, match="cannot write"):
        await target.write([LogEvent(1.8e9, P1, POD, 1, "lost?")])
    assert not (tmp_path / "volume").exists()
    await target.aclose()


MANY_PIPELINES = """
import asyncio, resource, sys
from pathlib import Path
from follower.core.events import LogEvent
from follower.sinks.files import FileSink
from follower.testing import FakeClock

hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))

async def main() -> None:
    target = FileSink(Path(sys.argv[1]), clock=FakeClock(), layout="per-pipeline")
    for seq in range(1, 4):
        for n in range(150):
            await target.write([LogEvent(1.8e9, f"pipe_{n:04d}", "pod", seq, f"line {seq}")])
    await target.aclose()

asyncio.run(main())
"""


def test_many_pipelines_under_a_low_open_file_limit(tmp_path: Path) -> None:
    """150 per-pipeline files under `ulimit -n 64`: the sink keeps fewer open than the process
    may, and every line reaches its file (it used to end with EMFILE at the 60th file)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.getenv("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", MANY_PIPELINES, str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert len(names(tmp_path)) == 150
    for n in range(150):
        lines = (tmp_path / f"pipe_{n:04d}.jsonl").read_bytes().splitlines()
        assert [orjson.loads(line)["message"] for line in lines] == ["line 1", "line 2", "line 3"]


async def test_too_many_open_files_closes_the_least_recent_and_retries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EMFILE on open (something else took the descriptors): the least recently written file
    is closed and the open tried again; the write succeeds and the cap comes down."""
    target = sink(tmp_path, layout="per-pipeline", fsync="never")
    await target.write([PodAddedEvent(1.8e9, P1, POD)])
    await target.write([PodAddedEvent(1.8e9, P2, POD)])
    real_open = os.open
    failed: list[str | os.PathLike[str]] = []

    def full_once(path: str | os.PathLike[str], flags: int, mode: int = 0o777) -> int:
        if not failed:
            failed.append(path)
            raise OSError(errno.EMFILE, "Too many open files")
        return real_open(path, flags, mode)

    monkeypatch.setattr(files_module.os, "open", full_once)
    third = "pipe_third"
    await target.write([PodAddedEvent(1.8e9, third, POD)])
    await target.write([LogEvent(1.8e9, P2, POD, 1, "P2 stayed open")])
    monkeypatch.undo()
    assert [str(path) for path in failed] == [str(tmp_path / f"{third}.jsonl")]
    assert target.open_files == 2  # P1 was closed to make room; two are kept open from now on
    await target.write([LogEvent(1.8e9, P1, POD, 1, "P1 opened again")])
    await target.aclose()
    assert (tmp_path / f"{third}.jsonl").read_bytes().count(b"\n") == 1
    assert (tmp_path / f"{P1}.jsonl").read_bytes().count(b"\n") == 2
    assert (tmp_path / f"{P2}.jsonl").read_bytes().count(b"\n") == 2


async def test_too_many_open_files_with_nothing_to_close_ends_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EMFILE with no other events file open: nothing can be freed, FileSinkError."""
    target = sink(tmp_path, fsync="never")

    def full(path: str | os.PathLike[str], flags: int, mode: int = 0o777) -> int:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(files_module.os, "open", full)
    with pytest.raises(FileSinkError, match="Too many open files"):
        await target.write([PodAddedEvent(1.8e9, P1, POD)])
    monkeypatch.undo()
    await target.aclose()


def test_the_open_files_are_a_share_of_the_process_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cap is max_open_files or a quarter of RLIMIT_NOFILE's soft limit, whichever is
    lower, so sockets, the state file and the journal keep room."""
    monkeypatch.setattr(files_module, "_nofile_limit", lambda: 64)
    assert sink(tmp_path, max_open_files=128).max_open_files == 16
    assert sink(tmp_path, max_open_files=8).max_open_files == 8
    monkeypatch.setattr(files_module, "_nofile_limit", lambda: 2)
    assert sink(tmp_path).max_open_files == 1
    monkeypatch.setattr(files_module, "_nofile_limit", lambda: None)
    assert sink(tmp_path).max_open_files == files_module.DEFAULT_MAX_OPEN


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
async def test_files_are_created_0640_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    """The live file and every file rotation creates are rw-r----- under any umask."""
    previous = os.umask(umask)
    try:
        target = sink(tmp_path, max_bytes=500, max_files=5)
        await target.write(stream(20))
        await target.aclose()
    finally:
        os.umask(previous)
    assert modes(tmp_path) == {0o640}


async def test_an_existing_file_is_appended_to_and_keeps_its_mode(tmp_path: Path) -> None:
    """A restarted follower continues the live file (counting its size) and leaves its mode."""
    live = tmp_path / "events.jsonl"
    live.write_bytes(b'{"old":1}\n')
    live.chmod(0o644)
    target = sink(tmp_path, max_bytes=30, max_files=3)
    await target.write([PodAddedEvent(1.8e9, P1, POD)])  # 10 + its line > 30: rotates first
    await target.aclose()
    assert (tmp_path / "events.jsonl.1").read_bytes() == b'{"old":1}\n'
    assert stat.S_IMODE((tmp_path / "events.jsonl.1").stat().st_mode) == 0o644
    assert stat.S_IMODE(live.stat().st_mode) == 0o640


class FsyncCounter:
    """An fsync hook that counts calls and remembers the threads that made them."""

    def __init__(self) -> None:
        self.calls = 0
        self.threads: set[int] = set()

    def __call__(self, fd: int) -> None:
        os.fstat(fd)  # a real descriptor, still open
        self.calls += 1
        self.threads.add(threading.get_ident())


async def test_fsync_never_syncs_nothing(tmp_path: Path) -> None:
    """fsync = never: no fsync at all, not even at close."""
    counter = FsyncCounter()
    target = sink(tmp_path, fsync="never", fsync_hook=counter)
    for batch in batches(stream(50), random.Random(5)):
        await target.write(batch)
    await target.aclose()
    assert counter.calls == 0


async def test_fsync_always_syncs_every_batch_off_the_event_loop(tmp_path: Path) -> None:
    """fsync = always: one fsync per batch, in a worker thread; nothing left to sync at close."""
    counter = FsyncCounter()
    target = sink(tmp_path, fsync="always", fsync_hook=counter)
    for event in stream(5):
        await target.write([event])
    assert counter.calls == 5
    await target.aclose()
    assert counter.calls == 5
    assert threading.get_ident() not in counter.threads


async def test_fsync_always_also_syncs_a_file_before_rotating_it(tmp_path: Path) -> None:
    """A rotation within a batch syncs the full file before renaming it."""
    counter = FsyncCounter()
    events = stream(10)
    total = sum(len(line) for line in encoded(events))
    target = sink(tmp_path, fsync="always", fsync_hook=counter, max_bytes=total - 1)
    await target.write(events)  # the last line does not fit: one rotation
    assert counter.calls == 2  # the first file at rotation, the second at the end of the batch
    await target.aclose()


async def test_fsync_interval_syncs_once_per_interval_and_at_close(tmp_path: Path) -> None:
    """fsync = interval: a write syncs when the interval has passed since the last sync."""
    clock = FakeClock()
    counter = FsyncCounter()
    target = sink(tmp_path, clock, fsync="interval", fsync_interval_s=1.0, fsync_hook=counter)
    events = stream(6)
    await target.write(events[0:1])
    assert counter.calls == 0  # less than a second since the sink was made
    clock.advance(1.0)
    await target.write(events[1:2])
    assert counter.calls == 1
    clock.advance(0.5)
    await target.write(events[2:3])
    assert counter.calls == 1
    clock.advance(0.5)
    await target.write(events[3:4])
    assert counter.calls == 2
    await target.write(events[4:5])
    await target.aclose()
    assert counter.calls == 3  # the unsynced write is synced at close
    assert threading.get_ident() not in counter.threads


async def test_a_failed_write_leaves_no_partial_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Disk full halfway through a write: the file is cut back and FileSinkError is raised."""
    target = sink(tmp_path, fsync="never")
    await target.write([PodAddedEvent(1.8e9, P1, POD)])
    before = (tmp_path / "events.jsonl").read_bytes()
    real_write = os.write

    def half_then_full(fd: int, data: bytes | memoryview) -> int:
        if len(data) > 10:
            return real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files_module.os, "write", half_then_full)
    with pytest.raises(FileSinkError, match="No space left"):
        await target.write([LogEvent(1.8e9, P1, POD, 1, "x" * 100)])
    monkeypatch.undo()
    assert (tmp_path / "events.jsonl").read_bytes() == before
    await target.write([LogEvent(1.8e9, P1, POD, 1, "x")])  # and the sink still works after
    await target.aclose()
    assert (tmp_path / "events.jsonl").read_bytes().count(b"\n") == 2


def test_an_output_folder_that_cannot_be_made_is_reported(tmp_path: Path) -> None:
    """A folder under a regular file cannot exist: FileSinkError names it at construction."""
    (tmp_path / "file").write_text("")
    with pytest.raises(FileSinkError, match="cannot create the output folder"):
        sink(tmp_path / "file" / "events")


@pytest.mark.parametrize(
    "settings",
    [{"max_bytes": 0}, {"max_files": 1}, {"max_open_files": 0}, {"fsync_interval_s": -1}],
)
def test_impossible_settings_are_refused(tmp_path: Path, settings: dict[str, object]) -> None:
    """max_files below 2 (no rotated copy), an empty file or a negative interval: ValueError."""
    with pytest.raises(ValueError, match="FileSink needs"):
        sink(tmp_path, **settings)


def test_rotated_names_follow_logrotate() -> None:
    """x.jsonl, x.jsonl.1, x.jsonl.2: the numbering shippers and logrotate use."""
    assert [rotated_name("x.jsonl", i) for i in range(3)] == ["x.jsonl", "x.jsonl.1", "x.jsonl.2"]
