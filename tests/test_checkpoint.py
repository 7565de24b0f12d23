"""Checkpoint files: round trip, atomic replacement, and clear errors for damaged files."""

from __future__ import annotations

import stat
from pathlib import Path

import orjson
import pytest

from follower import checkpoint
from follower.checkpoint import StateFileError
from follower.differ import TailState
from follower.tracker import PodState

PIPE = "pipe_abc123"


def sample() -> dict[str, checkpoint.PipelineState]:
    return {
        PIPE: {
            "pod-a": PodState(TailState.from_lines(["x", "y", "z"]), seq=42, error=None),
            "pod-b": PodState(None, seq=0, error="pods \"pod-b\" not found"),
            "pod-c": PodState(TailState.empty(), seq=7, error=None),
        },
        "pipe_def": {},
    }


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    """encode then decode gives back the same fingerprints, sequence numbers and errors."""
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
        (orjson.dumps({**good_document(), "version": 2}), "version 2 is not 1"),
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


def test_unusable_folder_is_reported_before_start(tmp_path: Path) -> None:
    """A state file in a missing folder, or a folder in its place, is refused up front."""
    with pytest.raises(StateFileError, match="does not exist"):
        checkpoint.check_writable(tmp_path / "nope" / "state.json")
    (tmp_path / "dir").mkdir()
    with pytest.raises(StateFileError, match="not a regular file"):
        checkpoint.check_writable(tmp_path / "dir")
    checkpoint.check_writable(tmp_path / "state.json")
