"""Checkpoint files: round trip, atomic replacement, and clear errors for damaged files."""

from __future__ import annotations

import base64
import stat
import struct
from pathlib import Path

import orjson
import pytest
from test_differ import legacy_fingerprint

from follower.core.differ import TailState, diff_logs
from follower.core.pending import Pending
from follower.core.schedule import Learned
from follower.core.tracker import PodState
from follower.engine import checkpoint
from follower.engine.checkpoint import Saved
from follower.errors import StateFileError

PIPE = "pipe_abc123"


def sample() -> dict[str, Saved]:
    return {
        PIPE: Saved(
            {
                "pod-a": PodState(
                    TailState.from_lines(["x", "y", "z"]), seq=42, error=None, epoch="abc234",
                    pending=Pending(2**64 - 1, 1.8e9 + 0.5, True),
                ),
                "pod-b": PodState(None, seq=0, error="pods \"pod-b\" not found"),
                "pod-c": PodState(
                    TailState.empty(), seq=7, error=None, missing_since=1.7e9, missing_answers=2
                ),
            },
            Learned(12.5, 200, True),
        ),
        "pipe_def": Saved({}),
    }


def v2(pods: dict[str, object]) -> bytes:
    return orjson.dumps({"version": 2, "pipelines": {PIPE: pods}})


def v3(entry: dict[str, object]) -> bytes:
    return orjson.dumps({"version": 3, "pipelines": {PIPE: entry}})


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    """encode then decode gives back the same fingerprints, sequence numbers, epochs, errors,
    open lines, absences and learnt plans."""
    decoded = checkpoint.decode(checkpoint.encode(sample(), 1.8e9), tmp_path / "s.json")
    assert decoded == sample()


def test_save_is_atomic_private_and_leaves_no_temporary(tmp_path: Path) -> None:
    """save replaces the file whole, with mode 0600, and removes its temporary file."""
    path = tmp_path / "state.json"
    path.write_bytes(b"old")
    checkpoint.save(path, b"new")
    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_missing_file_means_first_start(tmp_path: Path) -> None:
    """No state file yet is not an error: load returns None."""
    assert checkpoint.load(tmp_path / "absent.json") is None


def good_document() -> dict[str, object]:
    loaded = orjson.loads(checkpoint.encode(sample(), 1.8e9))
    assert isinstance(loaded, dict)
    return loaded


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "not valid JSON"),
        (checkpoint.encode(sample(), 1.8e9)[:-20], "not valid JSON"),
        (b"[]", "top level is not a JSON object"),
        (orjson.dumps({**good_document(), "version": 4}), "version 4 is not one this follower"),
        (orjson.dumps({**good_document(), "version": True}), "version True is not one"),
        (
            orjson.dumps({"version": 2, "pipelines": {PIPE: {"p": {
                "seq": 1, "tail": "", "tail_fingerprint": "md5"}}}}),
            f"pipelines.{PIPE}.p.tail_fingerprint: expected",
        ),
        (orjson.dumps({"version": 1}), "'pipelines' is missing"),
        (orjson.dumps({"version": 1, "pipelines": {"../x": {}}}), "invalid pipeline id"),
        (orjson.dumps({"version": 1, "pipelines": {PIPE: []}}), "expected an object of pods"),
        (
            orjson.dumps({"version": 1, "pipelines": {PIPE: {"p": {"seq": -1, "tail": None}}}}),
            f"pipelines.{PIPE}.p.seq: expected a non-negative integer",
        ),
        (
            orjson.dumps({"version": 1, "pipelines": {PIPE: {"p": {"seq": 1, "tail": "@@"}}}}),
            f"pipelines.{PIPE}.p.tail: not base64",
        ),
        (
            orjson.dumps({"version": 1, "pipelines": {PIPE: {"p": {"seq": 1, "tail": "AAA="}}}}),
            "not a whole number of fingerprints",
        ),
        (
            orjson.dumps({"version": 1, "pipelines": {PIPE: {"p": {"seq": 1, "error": 5}}}}),
            "error: expected a string or null",
        ),
        (v3({"pods": {"p": {"seq": 1, "epoch": "a/b"}}}), "p.epoch: expected letters"),
        (v3({"pods": {"p": {"seq": 1, "pending": {"digest": "zz"}}}}), "pending.digest"),
        (
            v3({"pods": {"p": {"seq": 1, "pending": {
                "digest": "0" * 16, "seen_at": "x", "flushed": True}}}}),
            "pending.seen_at",
        ),
        (v3({"pods": {"p": {"seq": 1, "missing": {"since": 1.0, "answers": 0}}}}), "answers"),
        (v3({"pods": {}, "plan": {"rate_lps": -1, "window": 2, "window_proven": True}}),
         "plan.rate_lps"),
        (v3({"pods": {}, "plan": {"rate_lps": 1, "window": 0, "window_proven": True}}),
         "plan.window"),
        (v3([]), "expected an object with pods and plan"),
        (v2({"p": {"seq": 1, "tail": "", "tail_fingerprint": "md5"}}), "tail_fingerprint"),
    ],
)
def test_damaged_files_name_the_file_reason_and_choice(
    tmp_path: Path, raw: bytes, reason: str
) -> None:
    """Every kind of damage raises StateFileError naming the file, the reason and --reset-state."""
    path = tmp_path / "state.json"
    path.write_bytes(raw)
    with pytest.raises(StateFileError) as caught:
        checkpoint.load(path)
    message = str(caught.value)
    assert str(path) in message
    assert reason in message
    assert "--reset-state" in message


def test_version_1_tails_are_read_as_blake2b_fingerprints(tmp_path: Path) -> None:
    """A file written by the previous release (version 1, BLAKE2b-64 fingerprints) loads with its
    tails marked legacy, so the differ compares the next tail with BLAKE2b; saved again before
    that, a legacy tail stays marked."""
    fingerprints = [legacy_fingerprint(line) for line in ["x", "y", "z"]]
    v1_tail = base64.b64encode(struct.pack("<3Q", *fingerprints)).decode()
    document = {"version": 1, "written_at": "2026-11-28T10:00:00.000Z", "pipelines": {
        PIPE: {"pod-a": {"seq": 42, "error": None, "tail": v1_tail}}}}
    path = tmp_path / "state.json"
    path.write_bytes(orjson.dumps(document))
    loaded = checkpoint.load(path)
    assert loaded is not None
    tail = loaded[PIPE].pods["pod-a"].tail
    assert tail is not None and tail.legacy and tail.to_list() == fingerprints
    again = checkpoint.decode(checkpoint.encode(loaded, 1.8e9), path)
    restored = again[PIPE].pods["pod-a"].tail
    assert again == loaded and restored is not None and restored.legacy
    diff = diff_logs(tail, "y\nz\nnew\n")
    assert (diff.new_lines, diff.gap, diff.state.legacy) == (["new"], False, False)


def test_files_name_the_fingerprint_function(tmp_path: Path) -> None:
    """Version 3 files (like 2) say which function made each tail's fingerprints."""
    document = orjson.loads(checkpoint.encode(sample(), 1.8e9))
    assert document["version"] == 3
    pods = document["pipelines"][PIPE]["pods"]
    assert pods["pod-a"]["tail_fingerprint"] == "xxh3-64"
    assert "tail_fingerprint" not in pods["pod-b"]


def test_version_2_files_load_without_epochs_or_plans(tmp_path: Path) -> None:
    """A file of the previous release loads: its pods keep their ids' old form (no epoch) and
    their plans start from scratch."""
    tail = checkpoint.decode(checkpoint.encode(sample(), 1.8e9), tmp_path / "s")[PIPE].pods
    encoded = orjson.loads(checkpoint.encode(sample(), 1.8e9))["pipelines"][PIPE]["pods"]["pod-a"]
    loaded = checkpoint.decode(
        v2({"pod-a": {"seq": 42, "error": None, "tail": encoded["tail"]}}), tmp_path / "s"
    )
    pod = loaded[PIPE].pods["pod-a"]
    assert loaded[PIPE].plan is None
    assert (pod.seq, pod.epoch, pod.tail) == (42, None, tail["pod-a"].tail)


def test_unusable_folder_is_reported_before_start(tmp_path: Path) -> None:
    """A state file in a missing folder, or a folder in its place, is refused up front."""
    with pytest.raises(StateFileError, match="does not exist"):
        checkpoint.check_writable(tmp_path / "nope" / "state.json")
    (tmp_path / "dir").mkdir()
    with pytest.raises(StateFileError, match="not a regular file"):
        checkpoint.check_writable(tmp_path / "dir")
    checkpoint.check_writable(tmp_path / "state.json")


def test_save_never_writes_through_a_planted_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A symlink already at the temporary's name is neither followed nor replaced: save draws
    another name (created exclusively) and the link's target keeps its content."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    names = iter(["guessed", "fresh"])
    monkeypatch.setattr(checkpoint.secrets, "token_hex", lambda _: next(names))
    (tmp_path / ".state.json.tmp-guessed").symlink_to(victim)
    checkpoint.save(tmp_path / "state.json", b"new")
    assert victim.read_bytes() == b"precious"
    assert (tmp_path / "state.json").read_bytes() == b"new"
    assert (tmp_path / ".state.json.tmp-guessed").is_symlink()


def test_a_state_file_whose_folder_takes_no_lock_file_points_to_another_state_file() -> None:
    """`--state-file /proc/version`: the lock file beside it cannot be created, which starting
    afresh (--reset-state) cannot change; the hint is another --state-file, or --no-state."""
    with pytest.raises(StateFileError) as refused, checkpoint.claimed(Path("/proc/version")):
        pass
    text = str(refused.value)
    assert "its lock file '/proc/.version.lock' cannot be opened" in text
    assert "--reset-state" not in text
    assert "another --state-file" in text and "--no-state" in text


def test_the_proven_window_is_kept_and_checked(tmp_path: Path) -> None:
    """A pipeline's proven window comes back (a restart must align as the saver did); a bad one
    is refused like any damaged value."""
    saved = {PIPE: Saved({}, None, 200)}
    assert checkpoint.decode(checkpoint.encode(saved, 1.8e9), tmp_path / "s") == saved
    with pytest.raises(StateFileError, match="window"):
        checkpoint.decode(v3({"pods": {}, "plan": None, "window": -1}), tmp_path / "s")
