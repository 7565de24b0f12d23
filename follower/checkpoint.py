"""Checkpoints: the per-pod diff state in a file, so a restart neither repeats nor loses lines.

The file is JSON (version 2): per pipeline, per pod, the sequence number, the last tail error and
the fingerprints of the last real tail (little-endian u64, base64, so a 200-line tail costs about
2 KiB) with the function that made them (`tail_fingerprint`: "xxh3-64", or "blake2b-64" for a
tail restored from version 1 and not polled since). Version 1 files, whose fingerprints are all
BLAKE2b-64, are still read: their tails are marked legacy, and the differ compares the first new
tail of such a pod with BLAKE2b, so the upgrade neither repeats nor loses a line.

It is written atomically (temporary file in the same folder, fsync, rename, fsync of the folder)
and mode 0600, and only ever describes events that the sink has already flushed; the
runner guarantees the latter by snapshotting under the same lock it holds while writing events.

Decoding is strict: a damaged, truncated or future-version file raises `StateFileError` naming
the file and the way out (`--reset-state`), never a silent fresh start.
"""

from __future__ import annotations

import array
import base64
import binascii
import os
import secrets
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import orjson

from follower.differ import TailState
from follower.model import format_ts, validate_pipeline_id
from follower.tracker import PodState

STATE_VERSION: Final = 2
READABLE_VERSIONS: Final = (1, 2)
XXH3 = "xxh3-64"
BLAKE2B = "blake2b-64"


class StateFileError(Exception):
    """The state file cannot be used; the message names the file, the reason and the choice."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(
            f"state file {str(path)!r} cannot be used: {reason}. Fix or move it, or start "
            "with --reset-state to begin afresh (every pod then starts with a gap event)"
        )


PipelineState = dict[str, PodState]
"""A pipeline's pods by name, as the tracker holds them."""


def _encode_tail(tail: TailState) -> str:
    fingerprints = array.array("Q", tail.fingerprints)
    if sys.byteorder == "big":
        fingerprints.byteswap()
    return base64.b64encode(fingerprints.tobytes()).decode("ascii")


def _decode_tail(text: object, *, legacy: bool) -> TailState:
    if not isinstance(text, str):
        raise ValueError(f"expected a base64 string, got {type(text).__name__}")
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError(f"not base64: {exc}") from None
    if len(raw) % 8:
        raise ValueError(f"{len(raw)} bytes is not a whole number of fingerprints")
    fingerprints = array.array("Q")
    fingerprints.frombytes(raw)
    if sys.byteorder == "big":
        fingerprints.byteswap()
    return TailState(fingerprints, legacy)


def _encode_pod(state: PodState) -> dict[str, object]:
    entry: dict[str, object] = {"seq": state.seq, "error": state.error, "tail": None}
    if state.tail is not None:
        entry["tail"] = _encode_tail(state.tail)
        entry["tail_fingerprint"] = BLAKE2B if state.tail.legacy else XXH3
    return entry


def encode(pipelines: Mapping[str, PipelineState], now: float) -> bytes:
    """The checkpoint bytes for `pipelines` (pods with no real tail yet keep only seq/error)."""
    document = {
        "version": STATE_VERSION,
        "written_at": format_ts(now),
        "pipelines": {
            pipeline_id: {pod: _encode_pod(state) for pod, state in pods.items()}
            for pipeline_id, pods in pipelines.items()
        },
    }
    return orjson.dumps(document)


def decode(raw: bytes, path: Path) -> dict[str, PipelineState]:
    """The pipelines saved in `raw`; StateFileError says what is wrong and where."""
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise StateFileError(path, f"not valid JSON (truncated or damaged?): {exc}") from None
    if not isinstance(document, dict):
        raise StateFileError(path, "the top level is not a JSON object")
    version = document.get("version")
    if type(version) is not int or version not in READABLE_VERSIONS:
        raise StateFileError(
            path,
            f"version {version!r} is not one this follower reads "
            f"({', '.join(map(str, READABLE_VERSIONS))})",
        )
    pipelines = document.get("pipelines")
    if not isinstance(pipelines, dict):
        raise StateFileError(path, "'pipelines' is missing or not an object")
    try:
        return {
            _checked_id(pipeline_id): _decode_pods(pods, pipeline_id, version)
            for pipeline_id, pods in pipelines.items()
        }
    except ValueError as exc:
        raise StateFileError(path, str(exc)) from None


def _checked_id(pipeline_id: str) -> str:
    validate_pipeline_id(pipeline_id)
    return pipeline_id


def _decode_pods(pods: Any, pipeline_id: str, version: int) -> PipelineState:
    if not isinstance(pods, dict):
        raise ValueError(f"pipelines.{pipeline_id}: expected an object of pods")
    where = f"pipelines.{pipeline_id}"
    return {pod: _decode_pod(entry, f"{where}.{pod}", version) for pod, entry in pods.items()}


def _decode_pod(entry: Any, where: str, version: int) -> PodState:
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected an object")
    seq, error, tail = entry.get("seq"), entry.get("error"), entry.get("tail")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise ValueError(f"{where}.seq: expected a non-negative integer, got {seq!r}")
    if error is not None and not isinstance(error, str):
        raise ValueError(f"{where}.error: expected a string or null")
    kind = BLAKE2B if version == 1 else entry.get("tail_fingerprint", XXH3)
    if kind not in (XXH3, BLAKE2B):
        raise ValueError(f"{where}.tail_fingerprint: expected {XXH3!r} or {BLAKE2B!r}")
    try:
        state = None if tail is None else _decode_tail(tail, legacy=kind == BLAKE2B)
    except ValueError as exc:
        raise ValueError(f"{where}.tail: {exc}") from None
    return PodState(tail=state, seq=seq, error=error)


def load(path: Path) -> dict[str, PipelineState] | None:
    """The saved state, or None when the file does not exist yet (first start)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateFileError(path, f"cannot be read: {exc.strerror}") from None
    return decode(raw, path)


def check_writable(path: Path) -> None:
    """Fail at start, not at the first checkpoint, when the state file's folder is unusable."""
    folder = path.parent
    if not folder.is_dir():
        raise StateFileError(path, f"its folder {str(folder)!r} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise StateFileError(path, f"its folder {str(folder)!r} is not writable")
    if path.exists() and not path.is_file():
        raise StateFileError(path, "it exists and is not a regular file")


def save(path: Path, data: bytes) -> None:
    """Replace `path` by `data` atomically: a crash leaves the old file or the new, never half.

    The temporary file gets a random name and is created exclusively, never through a symbolic
    link (O_EXCL, O_NOFOLLOW): a daemon running as root in a shared folder must not write its
    state into whatever a planted `.state.json.tmp-...` link points at.
    """
    folder = path.parent
    for attempt in range(_TEMPORARY_ATTEMPTS):
        temporary = folder / f".{path.name}.tmp-{secrets.token_hex(8)}"
        try:
            descriptor = os.open(temporary, _TEMPORARY_FLAGS, 0o600)
        except FileExistsError:  # someone else's file (or link) by that name: draw another
            if attempt == _TEMPORARY_ATTEMPTS - 1:
                raise
            continue
        break
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    folder_descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(folder_descriptor)
    finally:
        os.close(folder_descriptor)


_TEMPORARY_FLAGS: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_TEMPORARY_ATTEMPTS: Final = 8
