"""The journal of new numberings: written before the events it covers, read back over the
checkpoint after a crash, and dropped once a checkpoint holds it."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import orjson
import pytest
from test_runner import A, ScriptedSource, drive, logs

from follower.core.differ import TailState
from follower.core.events import Event, LogEvent
from follower.core.tail_errors import TailErrorMatcher
from follower.core.tracker import PodState
from follower.engine import checkpoint, journal
from follower.engine.checkpoint import JournalMark, Saved
from follower.engine.journal import Journal
from follower.engine.runner import Runner
from follower.engine.settings import RunSettings
from follower.engine.sources import Source, SourceSettings
from follower.errors import StateFileError
from follower.testing import FakeClock, MemorySink


def state(seq: int, replay_from: int = 0) -> PodState:
    lines = [f"l{n}" for n in range(1, seq + 1)]
    return PodState(TailState.from_lines(lines), seq, epoch="e1", replay_from=replay_from)


def test_records_read_back_in_order_and_a_checkpoint_drops_those_it_holds(
    tmp_path: Path,
) -> None:
    """Records come back as written; compacting with a mark drops the records it covers and
    keeps the later ones, and with none left the file is its header alone."""
    path = tmp_path / "state.json.journal"
    book = Journal(path)
    book.append(A, [("p1", state(2, 1)), ("p2", state(1, 1))])
    mark = book.mark()
    book.append(A, [("p3", state(3, 1))])
    journal_id, records = journal.read(path)
    assert [(n, pod) for n, _, pod, _ in records] == [(1, "p1"), (2, "p2"), (3, "p3")]
    assert records[0][3] == state(2, 1) and records[0][3].replay_from == 1
    book.compact(mark)
    assert journal.read(path) == (journal_id, records[2:])
    book.append(A, [("p4", state(1, 1))])
    book.compact(book.mark())
    assert journal.read(path) == (journal_id, [])
    assert path.stat().st_mode & 0o777 == 0o600
    book.close()


def test_a_record_cut_short_by_a_crash_is_left_out_and_damage_elsewhere_is_an_error(
    tmp_path: Path,
) -> None:
    """The last line, cut short, is a write the crash interrupted before its events were
    written; a damaged line before it, or a missing header, is a damaged file (exit 2)."""
    path = tmp_path / "j"
    book = Journal(path)
    book.append(A, [("p1", state(1, 1)), ("p2", state(1, 1))])
    book.close()
    whole = path.read_bytes()
    path.write_bytes(whole[:-7])
    assert [pod for _, _, pod, _ in journal.read(path)[1]] == ["p1"]
    lines = whole.split(b"\n")
    path.write_bytes(b"\n".join([lines[0], b"{damaged", lines[2], b""]))
    with pytest.raises(StateFileError, match="line 2"):
        journal.read(path)
    path.write_bytes(b'{"n": 1}\n')
    with pytest.raises(StateFileError, match="header"):
        journal.read(path)
    record = orjson.loads(lines[1])
    record["pipeline"] = "../etc"
    path.write_bytes(b"\n".join([lines[0], orjson.dumps(record), b""]))
    with pytest.raises(StateFileError, match="invalid pipeline id"):
        journal.read(path)
    assert journal.read(tmp_path / "absent") == (None, [])


def test_restore_lays_the_records_a_checkpoint_does_not_hold_over_it() -> None:
    """Records the checkpoint holds (same journal, number within its mark) are skipped; the
    others replace the pod's saved state, the later record of a pod winning."""
    saved = {A: Saved({"p1": state(9)}), "pipe_b": Saved({"q": state(4)})}
    records = [(1, A, "p1", state(1, 1)), (2, A, "p2", state(2, 1)), (3, A, "p2", state(3, 1))]
    merged, applied = journal.restore(saved, ("j1", 1), ("j1", records))
    assert applied == 2 and merged is not None
    assert merged[A].pods == {"p1": state(9), "p2": state(3, 1)}
    assert merged["pipe_b"] == saved["pipe_b"]
    other, applied = journal.restore(saved, ("j0", 5), ("j1", records))
    assert applied == 3 and other is not None and other[A].pods["p1"] == state(1, 1)
    assert journal.restore(None, None, (None, [])) == (None, 0)


def test_a_checkpoint_keeps_replay_from_and_the_mark_it_holds(tmp_path: Path) -> None:
    """A pod restored from a record and not polled since keeps `replay_from` in the next
    checkpoint; the mark comes back with the pipelines; a bad `replay_from` is refused."""
    mark: JournalMark = ("j1", 7)
    raw = checkpoint.encode({A: Saved({"p1": state(3, 2)})}, 1.8e9, mark)
    path = tmp_path / "state.json"
    path.write_bytes(raw)
    assert checkpoint.load_marked(path) == ({A: Saved({"p1": state(3, 2)})}, mark)
    document = orjson.loads(raw)
    document["pipelines"][A]["pods"]["p1"]["replay_from"] = 9
    with pytest.raises(StateFileError, match="replay_from"):
        checkpoint.decode(orjson.dumps(document), path)


def test_a_start_after_a_crash_saves_the_records_before_replacing_the_journal(
    tmp_path: Path,
) -> None:
    """The restarted follower lays the crashed one's records over the checkpoint and saves the
    result before its own journal replaces the old one: a second crash loses nothing."""
    path = tmp_path / "state.json"
    checkpoint.save(path, checkpoint.encode({A: Saved({"p1": state(5)})}, 1.8e9))
    book = Journal(journal.journal_path(path))
    book.append(A, [("p2", state(2, 1))])
    book.close()
    restored = journal.restore_state(path, 1.8e9)
    assert restored is not None and restored[A].pods["p2"] == state(2, 1)
    assert checkpoint.load(path) == restored
    journal.start(path).close()
    assert journal.read(journal.journal_path(path))[1] == []
    assert journal.restore_state(path, 1.8e9) == restored


class ReadingSink(MemorySink):
    """Notes, at each write, which pods the journal on disk holds."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.journaled_at_write: list[set[str]] = []

    async def write(self, events: Sequence[Event]) -> None:
        self.journaled_at_write.append({pod for _, _, pod, _ in journal.read(self.path)[1]})
        await super().write(events)


class FailingOnce(Journal):
    """A journal whose first append finds the disk full."""

    failed = False

    def append(self, pipeline_id: str, pods: Iterable[tuple[str, PodState]]) -> None:
        if not self.failed:
            self.failed = True
            raise OSError(28, "No space left on device")
        super().append(pipeline_id, pods)


def runner_with(
    book: Journal, sink: MemorySink, clock: FakeClock, texts: list[str], checkpoints: list[int]
) -> Runner:
    source = ScriptedSource(clock, {A: [logs(A, text) for text in texts]})

    async def checkpointer(pipelines: dict[str, Saved], mark: JournalMark | None) -> bool:
        checkpoints.append(0 if mark is None else mark[1])
        return True

    return Runner(
        sources=[Source(source, SourceSettings(pipelines=(A,)))], sink=sink, clock=clock,
        settings=RunSettings(interval_s=1.0, checkpoint_interval_s=2.5),
        matcher=TailErrorMatcher(), checkpointer=checkpointer, journal=book,
    )


async def test_a_new_pod_is_journaled_before_its_lines_are_written(tmp_path: Path) -> None:
    """The pod first seen is on disk in the journal when its first lines are written; a
    checkpoint then holds it and the journal is emptied."""
    path = tmp_path / "j"
    clock = FakeClock(start=0.0)
    sink = ReadingSink(path)
    checkpoints: list[int] = []
    runner = runner_with(Journal(path), sink, clock, ["1\n", "1\n2\n", "1\n2\n3\n"], checkpoints)
    await drive(runner, clock, [1.0, 1.0, 1.0])
    assert sink.journaled_at_write[0] == {"p1"}
    assert checkpoints and checkpoints[0] == 1
    assert journal.read(path)[1] == []


async def test_a_poll_whose_numbering_cannot_be_journaled_writes_nothing_and_comes_again(
    tmp_path: Path,
) -> None:
    """A full disk: the poll is undone (no event written, no line skipped) and the pipeline's
    next poll numbers its lines, journaled, from the first."""
    clock = FakeClock(start=0.0)
    sink = MemorySink()
    book = FailingOnce(tmp_path / "j")
    runner = runner_with(book, sink, clock, ["1\n", "1\n2\n"], [])
    await drive(runner, clock, [1.0, 1.0])
    assert [e.message for e in sink.events if isinstance(e, LogEvent)] == ["1", "2"]
    assert [e.seq for e in sink.events if isinstance(e, LogEvent)] == [1, 2]


def test_a_record_the_disk_could_not_take_whole_is_taken_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk cuts a record short: the piece written is cut off again and the append
    fails, so the next record starts on a line of its own and the journal stays readable (a
    piece left behind made the next start refuse the file)."""
    path = tmp_path / "j"
    book = Journal(path)
    book.append(A, [("p1", state(1, 1))])
    real_write = os.write

    def half(descriptor: int, data: bytes) -> int:
        return real_write(descriptor, data[: len(data) // 2])

    monkeypatch.setattr(os, "write", half)
    with pytest.raises(OSError, match="short write"):
        book.append(A, [("p2", state(2, 1))])
    monkeypatch.setattr(os, "write", real_write)
    book.append(A, [("p3", state(3, 1))])
    book.close()
    assert [(n, pod) for n, _, pod, _ in journal.read(path)[1]] == [(1, "p1"), (2, "p3")]


def test_a_journal_that_is_not_a_regular_file_is_refused_not_waited_on(tmp_path: Path) -> None:
    """A FIFO at the journal's place would block the start for ever: it is refused (exit 2)."""
    state_file = tmp_path / "state.json"
    os.mkfifo(journal.journal_path(state_file))
    with pytest.raises(StateFileError, match="not a regular file"):
        journal.read(journal.journal_path(state_file))
    with pytest.raises(StateFileError, match="not a regular file"):
        journal.start(state_file)
