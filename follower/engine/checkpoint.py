"""Checkpoints: the per-pod diff state in a file, so a restart neither repeats nor loses lines.

The file is JSON (version 3): per pipeline, `pods` and `plan`. Per pod: the sequence number and
its epoch, the last tail error, the fingerprints of the last real tail (little-endian u64,
base64, so a 200-line tail costs about 2 KiB) with the function that made them
(`tail_fingerprint`: "xxh3-64", or "blake2b-64" for a tail restored from version 1 and not
polled since), the open line being written (`pending`: its fingerprint, when it was first seen
and whether a snapshot of it was written) and how long the pod has been missing from the answers.
`plan` is what the scheduler learnt (line rate, window), so the first polls after a restart are
planned from knowledge instead of a cold start. A pod restored from the journal of new numberings
(follower/engine/journal.py) and not polled since keeps its `replay_from`; `journal` says which of
the journal's records the file already holds.

Versions 1 and 2 (per pipeline, the pods only, without epochs) are still read. Version 1
fingerprints are all BLAKE2b-64: such tails are marked legacy, and the differ compares the first
new tail of such a pod with BLAKE2b, so the upgrade neither repeats nor loses a line.

It is written atomically (temporary file in the same folder, fsync, rename, fsync of the folder)
and mode 0600, and only ever describes events that the sink has already flushed; the
runner guarantees the latter by snapshotting under the same lock it holds while writing events.

Decoding is strict: a damaged, truncated or future-version file raises `StateFileError` naming
the file and the way out (`--reset-state`), never a silent fresh start.

Size: over 300 lines because it is the state file's one format: the encoder and the strict
decoder of versions 1 to 3 side by side, so that no field is written one way and read another,
with the lock and the atomic write that guard the file.
"""

from __future__ import annotations

import array
import base64
import binascii
import fcntl
import math
import os
import secrets
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeGuard

import orjson

from follower.core.differ import TailState
from follower.core.model import format_ts, validate_pipeline_id
from follower.core.pending import Pending
from follower.core.schedule import Learned
from follower.core.tracker import PodState
from follower.errors import StateFileError

JournalMark = tuple[str, int]
"""A journal's id and how many of its records (numbered from 1) a checkpoint holds."""
STATE_VERSION: Final = 3
READABLE_VERSIONS: Final = (1, 2, 3)
XXH3 = "xxh3-64"
BLAKE2B = "blake2b-64"


PipelineState = dict[str, PodState]
"""A pipeline's pods by name, as the tracker holds them."""


@dataclass(frozen=True, slots=True)
class Saved:
    """One pipeline as a checkpoint holds it: its pods, and what its plan learnt (if anything)."""

    pods: PipelineState
    plan: Learned | None = None
    window: int = 0
    """The longest tail seen to slide (`PipelineTracker.window`): whether the differ may take
    lines older than a saved tail depends on it, so a restart must align as the saver did."""


def _encode_tail(tail: TailState) -> str:
    fingerprints = tail.fingerprints  # a new array: swapping it in place is safe
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
    return TailState.of(fingerprints, legacy)


def encode_pod(state: PodState) -> dict[str, object]:
    """A pod's state as the state file (and the journal) hold it."""
    entry: dict[str, object] = {
        "seq": state.seq, "epoch": state.epoch, "error": state.error, "tail": None
    }
    if state.tail is not None:
        entry["tail"] = _encode_tail(state.tail)
        entry["tail_fingerprint"] = BLAKE2B if state.tail.legacy else XXH3
    if state.pending is not None:
        held = state.pending
        entry["pending"] = {
            "digest": f"{held.digest:016x}", "seen_at": held.seen_at, "flushed": held.flushed
        }
    if state.missing_since is not None:
        entry["missing"] = {"since": state.missing_since, "answers": state.missing_answers}
    if state.replay_from:
        entry["replay_from"] = state.replay_from
    return entry


def _encode_plan(plan: Learned) -> dict[str, object]:
    return {"rate_lps": plan.rate_lps, "window": plan.window, "window_proven": plan.window_proven}


def encode(
    pipelines: Mapping[str, Saved], now: float, journal: JournalMark | None = None
) -> bytes:
    """The checkpoint bytes for `pipelines` (pods with no real tail yet keep only seq/error),
    which hold the journal's records up to `journal`."""
    document: dict[str, object] = {
        "version": STATE_VERSION,
        "written_at": format_ts(now),
        "pipelines": {
            pipeline_id: {
                "pods": {pod: encode_pod(state) for pod, state in saved.pods.items()},
                "plan": None if saved.plan is None else _encode_plan(saved.plan),
                **({"window": saved.window} if saved.window else {}),
            }
            for pipeline_id, saved in pipelines.items()
        },
    }
    if journal is not None:
        document["journal"] = {"id": journal[0], "covered": journal[1]}
    return orjson.dumps(document)


def decode(raw: bytes, path: Path) -> dict[str, Saved]:
    """The pipelines saved in `raw`; StateFileError says what is wrong and where."""
    return _decode_document(raw, path)[0]


def _decode_document(raw: bytes, path: Path) -> tuple[dict[str, Saved], JournalMark | None]:
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
            _checked_id(pipeline_id): _decode_pipeline(entry, pipeline_id, version)
            for pipeline_id, entry in pipelines.items()
        }, _decode_mark(document.get("journal"))
    except ValueError as exc:
        raise StateFileError(path, str(exc)) from None


def _decode_mark(entry: Any) -> JournalMark | None:
    if entry is None:
        return None
    journal_id = entry.get("id") if isinstance(entry, dict) else None
    covered = entry.get("covered") if isinstance(entry, dict) else None
    if not isinstance(journal_id, str) or type(covered) is not int or covered < 0:
        raise ValueError(f"journal: expected an id and a count of records, got {entry!r}")
    return journal_id, covered


def _checked_id(pipeline_id: str) -> str:
    validate_pipeline_id(pipeline_id)
    return pipeline_id


def _decode_pipeline(entry: Any, pipeline_id: str, version: int) -> Saved:
    if version < 3:
        return Saved(_decode_pods(entry, pipeline_id, version))
    where = f"pipelines.{pipeline_id}"
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected an object with pods and plan")
    plan, window = entry.get("plan"), entry.get("window", 0)
    if type(window) is not int or window < 0:
        raise ValueError(f"{where}.window: expected a non-negative integer, got {window!r}")
    return Saved(
        _decode_pods(entry.get("pods"), pipeline_id, version),
        None if plan is None else _decode_plan(plan, f"{where}.plan"),
        window,
    )


def _decode_plan(plan: Any, where: str) -> Learned:
    if not isinstance(plan, dict):
        raise ValueError(f"{where}: expected an object")
    rate, window, proven = plan.get("rate_lps"), plan.get("window"), plan.get("window_proven")
    if not _number(rate) or not 0 <= rate < math.inf:
        raise ValueError(f"{where}.rate_lps: expected a non-negative number, got {rate!r}")
    if window is not None and (type(window) is not int or window < 1):
        raise ValueError(f"{where}.window: expected a positive integer or null, got {window!r}")
    if type(proven) is not bool:
        raise ValueError(f"{where}.window_proven: expected true or false, got {proven!r}")
    return Learned(float(rate), window, proven)


def _number(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _decode_pods(pods: Any, pipeline_id: str, version: int) -> PipelineState:
    if not isinstance(pods, dict):
        raise ValueError(f"pipelines.{pipeline_id}: expected an object of pods")
    where = f"pipelines.{pipeline_id}"
    return {pod: decode_pod(entry, f"{where}.{pod}", version) for pod, entry in pods.items()}


def decode_pod(entry: Any, where: str, version: int = STATE_VERSION) -> PodState:
    """A pod's state from `encode_pod`'s form; ValueError names what is wrong at `where`."""
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
    epoch = entry.get("epoch")
    if epoch is not None and (not isinstance(epoch, str) or not epoch.isalnum()):
        raise ValueError(f"{where}.epoch: expected letters and digits or null, got {epoch!r}")
    missing = _decode_missing(entry.get("missing"), f"{where}.missing")
    replay_from = entry.get("replay_from", 0)
    if type(replay_from) is not int or not 0 <= replay_from <= seq + 1:
        raise ValueError(f"{where}.replay_from: expected an integer from 0 to seq + 1")
    return PodState(
        tail=state, seq=seq, error=error, epoch=epoch,
        pending=_decode_pending(entry.get("pending"), f"{where}.pending"),
        missing_since=None if missing is None else missing[0],
        missing_answers=0 if missing is None else missing[1],
        replay_from=replay_from,
    )


def _decode_pending(entry: Any, where: str) -> Pending | None:
    if entry is None:
        return None
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected an object or null")
    digest, seen_at, flushed = entry.get("digest"), entry.get("seen_at"), entry.get("flushed")
    try:
        value = int(digest, 16) if isinstance(digest, str) and len(digest) == 16 else -1
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(f"{where}.digest: expected 16 hex digits, got {digest!r}")
    if not _number(seen_at) or not math.isfinite(seen_at):
        raise ValueError(f"{where}.seen_at: expected a number, got {seen_at!r}")
    if type(flushed) is not bool:
        raise ValueError(f"{where}.flushed: expected true or false, got {flushed!r}")
    return Pending(value, float(seen_at), flushed)


def _decode_missing(entry: Any, where: str) -> tuple[float, int] | None:
    if entry is None:
        return None
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected an object or null")
    since, answers = entry.get("since"), entry.get("answers")
    if not _number(since) or not math.isfinite(since):
        raise ValueError(f"{where}.since: expected a number, got {since!r}")
    if type(answers) is not int or answers < 1:
        raise ValueError(f"{where}.answers: expected a positive integer, got {answers!r}")
    return float(since), answers


def load(path: Path) -> dict[str, Saved] | None:
    """The saved state, or None when the file does not exist yet (first start)."""
    loaded = load_marked(path)
    return None if loaded is None else loaded[0]


def load_marked(path: Path) -> tuple[dict[str, Saved], JournalMark | None] | None:
    """The saved state and the journal records it holds (`encode`'s `journal`), or None when
    the file does not exist yet."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateFileError(path, f"cannot be read: {exc.strerror}") from None
    return _decode_document(raw, path)


def _elsewhere(folder: Path) -> str:
    return (
        f"Create the folder (mkdir -p {str(folder)!r}) or make it writable, or choose another "
        "--state-file (or --no-state to run without one)"
    )


def check_writable(path: Path) -> None:
    """Fail at start, not at the first checkpoint, when the state file's folder is unusable."""
    folder = path.parent
    if not folder.is_dir():
        raise StateFileError(path, f"its folder {str(folder)!r} does not exist", _elsewhere(folder))
    if not os.access(folder, os.W_OK | os.X_OK):
        raise StateFileError(path, f"its folder {str(folder)!r} is not writable",
                             _elsewhere(folder))
    if path.exists() and not path.is_file():
        raise StateFileError(path, "it exists and is not a regular file")


@contextmanager
def claimed(path: Path, *, create_folder: bool = False) -> Iterator[None]:
    """Hold the state file for this process: a second follower on the same file would make
    each overwrite the other's checkpoints, so it is refused at start (a lock file beside it,
    released when the process ends, however it ends). `create_folder` makes a missing folder
    (mode 0700), as for the default location."""
    if create_folder:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    check_writable(path)
    lock = path.parent / f".{path.name}.lock"
    try:
        descriptor = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        # Starting afresh (--reset-state) would meet the same folder: only another place helps.
        raise StateFileError(
            path, f"its lock file {str(lock)!r} cannot be opened: {exc.strerror}",
            "Choose another --state-file in a folder that takes new files (or --no-state to run "
            "without one)",
        ) from None
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StateFileError(
                path, "another follower process is using it",
                "Give each follower its own --state-file (or stop the other one)",
            ) from None
        yield
    finally:
        os.close(descriptor)  # releases the lock


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
