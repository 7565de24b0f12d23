"""How fast the differ is, next to the JSON parsing every poll pays anyway.

Run from the project root: `PYTHONPATH=. python bench/differ.py`. Prints four tables: the
fingerprint options (stdlib and XXH3), typical tails against json/orjson parsing of the same API
body, adversarial tails at two sizes (the ratio shows linear time), and what one pod's state costs
in memory. Figures are the best of several runs, the run least disturbed by the rest of the machine.

The typical tails are diffed as the follower diffs them: `diff_logs` against the state the
previous tail left (so the fast paths of `follower.core.tailshape` may answer). The
adversarial tails are diffed against a state restored from fingerprints alone (as after a
restart), which has no shape, so they measure the full differ: split, fingerprint every line,
align.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from functools import partial
from typing import TypeVar

import orjson
import xxhash

from follower.core.differ import Diff, TailState, diff_logs, fingerprint

REPEAT = 7
MIN_RUN_S = 0.02
RANDOM = random.Random(20240601)
LEVELS = ("DEBUG", "INFO", "INFO", "INFO", "WARN", "ERROR")
K = TypeVar("K")


def calls_per_batch(function: Callable[[], object]) -> int:
    """How many calls of `function` last at least MIN_RUN_S, so the timer's resolution is moot."""
    number = 1
    while True:
        started = time.perf_counter()
        for _ in range(number):
            function()
        if time.perf_counter() - started >= MIN_RUN_S:
            return number
        number *= 2


def best_seconds(functions: dict[K, Callable[[], object]]) -> dict[K, float]:
    """Seconds per call of each function, best of REPEAT batches.

    The functions take turns within each round, so a burst of load elsewhere on the machine
    slows them alike instead of skewing one against another.
    """
    numbers = {name: calls_per_batch(function) for name, function in functions.items()}
    best = dict.fromkeys(functions, float("inf"))
    for _ in range(REPEAT):
        for name, function in functions.items():
            started = time.perf_counter()
            for _ in range(numbers[name]):
                function()
            best[name] = min(best[name], (time.perf_counter() - started) / numbers[name])
    return best


def log_line(index: int) -> str:
    """A realistic log line of about 100 bytes."""
    return (
        f"2024-06-01T12:{index // 60000 % 60:02d}:{index // 1000 % 60:02d}.{index % 1000:03d}Z "
        f"{RANDOM.choice(LEVELS):5} [transform-worker-{RANDOM.randrange(8)}] processed batch "
        f"{index} in {RANDOM.randrange(1, 999)} ms rows={RANDOM.randrange(1, 5000)} status=ok"
    )


def run_differ(previous: TailState, logs: str) -> Diff:
    """What the follower does with one pod's `logs` string."""
    return diff_logs(previous, logs)


def api_body(tail: Sequence[str]) -> bytes:
    """The logs response the API would send for one pod with this tail."""
    body = {
        "data": {
            "uid": "3e8678c5-fc9e-48a7-bf98-79ca72900001",
            "pods": [{"pod": "pipe-3e8678c5fc9e48a7-worker-0", "logs": "\n".join(tail)}],
        },
        "error": False,
        "error_message": None,
    }
    return json.dumps(body).encode()


# --- fingerprint options -------------------------------------------------------------------------

_BLAKE2B_64 = hashlib.blake2b(digest_size=8)


def _prepared_blake2b(data: bytes) -> int:
    hasher = _BLAKE2B_64.copy()
    hasher.update(data)
    return int.from_bytes(hasher.digest(), "little")


FINGERPRINT_OPTIONS: dict[str, tuple[Callable[[bytes], int], str]] = {
    "blake2b(digest_size=8)": (
        lambda data: int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little"),
        "64-bit hash",
    ),
    "prepared blake2b-64 .copy()": (_prepared_blake2b, "64-bit hash, same value"),
    "blake2b-512 first 8 bytes": (
        lambda data: int.from_bytes(hashlib.blake2b(data).digest()[:8], "little"),
        "64-bit hash",
    ),
    "md5 first 8 bytes": (
        lambda data: int.from_bytes(
            hashlib.md5(data, usedforsecurity=False).digest()[:8], "little"
        ),
        "64-bit hash",
    ),
    "sha1 first 8 bytes": (
        lambda data: int.from_bytes(
            hashlib.sha1(data, usedforsecurity=False).digest()[:8], "little"
        ),
        "64-bit hash",
    ),
    "sha256 first 8 bytes": (
        lambda data: int.from_bytes(hashlib.sha256(data).digest()[:8], "little"),
        "64-bit hash",
    ),
    "crc32 << 32 | adler32": (
        lambda data: zlib.crc32(data) << 32 | zlib.adler32(data),
        "linear checksums, ~57 bits on short lines",
    ),
    "crc32": (zlib.crc32, "32 bits only: too few"),
    "xxh3_64": (xxhash.xxh3_64_intdigest, "64-bit hash, stable (XXH3 frozen since 0.8.0)"),
}


CHOSEN_ONE = "differ.fingerprint(), one line"
CHOSEN_TAIL = "differ, a whole tail into its array"
CHOSEN_MAP = "xxh3_64 through map, as the differ"


def fingerprint_all(function: Callable[[bytes], int], lines: Sequence[str]) -> list[int]:
    """Fingerprint each line with `function`, encoding included as the differ must."""
    return [function(line.encode()) for line in lines]


def bench_fingerprints() -> None:
    """ns per line for each stdlib option on ~100-byte lines, encoding included, then the differ."""
    lines = [log_line(index) for index in range(2000)]
    average = sum(map(len, lines)) // len(lines)
    print(f"Fingerprint options ({len(lines)} lines of {average} bytes on average)")
    functions: dict[str, Callable[[], object]] = {
        name: partial(fingerprint_all, function, lines)
        for name, (function, _) in FINGERPRINT_OPTIONS.items()
    }
    functions[CHOSEN_ONE] = lambda: [fingerprint(line) for line in lines]
    functions[CHOSEN_TAIL] = lambda: TailState.from_lines(lines)
    encoded = [line.encode() for line in lines]
    functions[CHOSEN_MAP] = lambda: list(map(xxhash.xxh3_64_intdigest, encoded))
    notes = {name: note for name, (_, note) in FINGERPRINT_OPTIONS.items()}
    notes[CHOSEN_MAP] = "chosen: lines already UTF-8 bytes, no encoding in the timing"
    print(f"  {'option':34} {'ns/line':>8}  collision risk")
    for name, seconds in best_seconds(functions).items():
        note = notes.get(name, "chosen: xxh3_64, encoding included")
        print(f"  {name:34} {seconds / len(lines) * 1e9:8.0f}  {note}")
    print()


# --- typical tails -------------------------------------------------------------------------------


def bench_typical() -> None:
    """Lines/s through diff_logs, beside parsing the API body that held the tail.

    The previous state is what diffing the previous tail's `logs` left, as in the follower; 0%
    new is an idle pod (the same tail again), 10% and 50% a tail that slid by that much.
    """
    print("Typical tails: diff_logs, against parsing the API body of the same tail")
    header = (
        f"  {'tail':>5} {'new':>4} {'differ us':>10} {'lines/s':>10} {'json us':>9} "
        f"{'orjson us':>10} {'/json':>6} {'/orjson':>8}"
    )
    print(header)
    for size in (200, 500, 2000):
        history = [log_line(index) for index in range(2 * size)]
        previous = diff_logs(None, "\n".join(history[:size])).state
        for percent in (0, 10, 50):
            shift = size * percent // 100
            body = api_body(history[shift : shift + size])
            logs = orjson.loads(body)["data"]["pods"][0]["logs"]
            diff = run_differ(previous, logs)
            assert len(diff.new_lines) == shift and not diff.gap
            seconds = best_seconds(
                {
                    "differ": partial(run_differ, previous, logs),
                    "json": partial(json.loads, body),
                    "orjson": partial(orjson.loads, body),
                }
            )
            differ_s, json_s, orjson_s = seconds["differ"], seconds["json"], seconds["orjson"]
            print(
                f"  {size:5} {percent:3}% {differ_s * 1e6:10.0f} {size / differ_s:10,.0f} "
                f"{json_s * 1e6:9.0f} {orjson_s * 1e6:10.0f} "
                f"{differ_s / json_s:6.1f} {differ_s / orjson_s:8.1f}"
            )
    print()


# --- adversarial tails ---------------------------------------------------------------------------


def adversarial_tails(shape: str, size: int) -> tuple[list[str], list[str]]:
    """(previous tail, new tail) of `size` lines that would make a naive alignment quadratic."""
    line = log_line(0)
    if shape == "identical":
        return [line] * size, [line] * size
    if shape.startswith("period-"):
        period = int(shape.removeprefix("period-"))
        cycle = [log_line(index) for index in range(period)]
        history = [cycle[index % period] for index in range(size + 1)]
        return history[:size], history[1:]
    # near-miss: the first candidate does not fit, so the KMP scan runs
    return [log_line(1)] + [line] * (size - 1), [line] * size


def bench_adversarial() -> None:
    """Lines/s on repetitive tails of 1,000 and 10,000 lines; linear time keeps the ratio ~10."""
    print("Adversarial tails: the full differ, from a restored state (ratio = 10,000 / 1,000)")
    print(f"  {'shape':12} {'1,000 us':>9} {'10,000 us':>10} {'lines/s':>10} {'ratio':>6}")
    for shape in ("identical", "period-3", "period-7", "near-miss"):
        functions: dict[int, Callable[[], object]] = {}
        for size in (1_000, 10_000):
            old, new = adversarial_tails(shape, size)
            functions[size] = partial(run_differ, TailState.from_lines(old), "\n".join(new))
        seconds = best_seconds(functions)
        print(
            f"  {shape:12} {seconds[1_000] * 1e6:9.0f} {seconds[10_000] * 1e6:10.0f} "
            f"{10_000 / seconds[10_000]:10,.0f} {seconds[10_000] / seconds[1_000]:6.1f}"
        )
    print()


def bench_state_size() -> None:
    """Bytes one pod's differ state holds: the TailState and its packed fingerprints and shape."""
    print("Per-pod differ state (sys.getsizeof of the TailState and of its packed bytes: "
          "fingerprints and shape)")
    for size in (200, 2000):
        state = diff_logs(None, "\n".join(log_line(index) for index in range(size))).state
        assert state.has_shape
        total = sys.getsizeof(state) + sys.getsizeof(state.packed)
        print(f"  {size:5}-line tail: {total:6,} bytes ({total / size:.1f} bytes/line)")


def main() -> None:
    print(f"Python {sys.version.split()[0]}, orjson {orjson.__version__}\n")
    bench_fingerprints()
    bench_typical()
    bench_adversarial()
    bench_state_size()


if __name__ == "__main__":
    main()
