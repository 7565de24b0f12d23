"""Deterministic text for the simulated world: hashing, pipeline metadata, pod names, log lines.

Everything here is a pure function of integers, so the world can compute any line, name or
schedule point on demand from the seed instead of storing it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

_M64: Final = (1 << 64) - 1
_UNIT: Final = 1.0 / (1 << 53)


def mix(x: int) -> int:
    """splitmix64's finalizer: a bijection on 64-bit integers that scatters its input."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def hash_ids(*parts: int) -> int:
    """A 64-bit hash of a sequence of integers (stable across runs and platforms)."""
    h = 0
    for part in parts:
        h = mix(h ^ (part & _M64))
    return h


def line_hash(key: int, index: int) -> int:
    """64 scattered bits for line `index` of the incarnation hashed to `key`.

    CPython's tuple hash (xxHash rounds) is ten times faster than `hash_ids` here, where the world
    spends its time, and is the same in every run of a given interpreter on 64-bit platforms
    (integers are not salted by PYTHONHASHSEED).
    """
    return hash((key, index)) & _M64


def unit(h: int) -> float:
    """Map a 64-bit hash to a float in [0, 1)."""
    return (h >> 11) * _UNIT


# --- pipeline metadata ---------------------------------------------------------------------------

CHAINS: Final = (
    ("eth-mainnet", 18_500_000, 12.0),
    ("base-mainnet", 6_000_000, 2.0),
    ("matic-mainnet", 50_000_000, 2.0),
    ("arbitrum-mainnet", 150_000_000, 0.25),
    ("optimism-mainnet", 110_000_000, 2.0),
    ("bsc-mainnet", 33_000_000, 3.0),
)
"""(chain name, block height at `BLOCK_EPOCH`, seconds per block)."""
BLOCK_EPOCH: Final = 1_700_000_000.0
DATASETS: Final = ("blocks", "transactions", "logs", "transfers", "dex-swaps", "nft-sales")
DESTINATIONS: Final = ("postgres", "clickhouse", "kafka", "s3", "bigquery", "webhook", "snowflake")
PROJECTS: Final = ("analytics", "defi-monitor", "nft-indexer", "treasury", "risk-engine")

# --- pod names -----------------------------------------------------------------------------------

# Kubernetes' generateName: the base is cut to 63 - 5 = 58 characters, then 5 characters from
# this alphabet (no vowels, no look-alikes) are appended.
SUFFIX_ALPHABET: Final = "bcdfghjklmnpqrstvwxz2456789"
SUFFIX_LEN: Final = 5
SUFFIX_SPACE: Final = len(SUFFIX_ALPHABET) ** SUFFIX_LEN
MAX_BASE_LEN: Final = 63 - SUFFIX_LEN
_DIGIT: Final = {char: value for value, char in enumerate(SUFFIX_ALPHABET)}


def _rotate(x: int) -> int:
    """Move the lowest base-27 digit to the top (a bijection on [0, SUFFIX_SPACE))."""
    low, rest = x % len(SUFFIX_ALPHABET), x // len(SUFFIX_ALPHABET)
    return low * (SUFFIX_SPACE // len(SUFFIX_ALPHABET)) + rest


def _unrotate(x: int) -> int:
    top, rest = divmod(x, SUFFIX_SPACE // len(SUFFIX_ALPHABET))
    return rest * len(SUFFIX_ALPHABET) + top


def scramble(serial: int, mul: int, add: int) -> int:
    """A seeded bijection on [0, SUFFIX_SPACE), so consecutive serials get unrelated suffixes.

    `mul` must not be a multiple of 3 (then it is invertible modulo 27 ** 5).
    """
    once = _rotate((serial * mul + add) % SUFFIX_SPACE)
    return (once * mul + add) % SUFFIX_SPACE


def unscramble(number: int, mul_inv: int, add: int) -> int:
    """The inverse of `scramble`; `mul_inv` is `mul`'s inverse modulo SUFFIX_SPACE."""
    once = _unrotate(((number - add) * mul_inv) % SUFFIX_SPACE)
    return ((once - add) * mul_inv) % SUFFIX_SPACE


def encode_suffix(number: int) -> str:
    """The 5-character suffix for `number` (0 <= number < SUFFIX_SPACE)."""
    chars = []
    for _ in range(SUFFIX_LEN):
        number, digit = divmod(number, len(SUFFIX_ALPHABET))
        chars.append(SUFFIX_ALPHABET[digit])
    return "".join(chars)


def decode_suffix(suffix: str) -> int | None:
    """The inverse of `encode_suffix`, or None when `suffix` is not one."""
    if len(suffix) != SUFFIX_LEN:
        return None
    number = 0
    for char in reversed(suffix):
        digit = _DIGIT.get(char)
        if digit is None:
            return None
        number = number * len(SUFFIX_ALPHABET) + digit
    return number


# --- timestamps ----------------------------------------------------------------------------------


_SECONDS: dict[int, str] = {}
_SECONDS_KEPT: Final = 4096


def _second(epoch_s: int) -> str:
    """`YYYY-MM-DDTHH:MM:SS` of a whole second, memoized (formatting dominates line building)."""
    found = _SECONDS.get(epoch_s)
    if found is None:
        if len(_SECONDS) >= _SECONDS_KEPT:
            _SECONDS.clear()
        found = _SECONDS[epoch_s] = datetime.fromtimestamp(epoch_s, tz=UTC).strftime(
            "%Y-%m-%dT%H:%M:%S"
        )
    return found


def iso_seconds(epoch_s: float) -> str:
    """RFC 3339 UTC to the second, as the API writes `created_at` and `start_time`."""
    return _second(int(epoch_s)) + "Z"


def iso_micros(epoch_s: float) -> str:
    """RFC 3339 UTC with microseconds, like `kubectl logs --timestamps`."""
    whole = int(epoch_s)
    return f"{_second(whole)}.{int((epoch_s - whole) * 1_000_000):06d}Z"


# --- log lines -----------------------------------------------------------------------------------

REPETITIVE_LINES: Final = ("INFO heartbeat", "INFO heartbeat ok", "WARN sink slow")


def unique_line(h: int, incarnation: int, index: int) -> str:
    """A short line that no other line of the same pod name repeats."""
    return f"line {incarnation}.{index} {h & 0xFFFFFF:06x}"


def repetitive_line(h: int) -> str:
    """One of three lines, so identical lines follow each other often."""
    return REPETITIVE_LINES[h % len(REPETITIVE_LINES)]


def realistic_line(h: int, index: int, wall: float, block: int, destination: str) -> str:
    """A line like a blockchain indexer's, with a timestamp prefix that makes it unique."""
    pick = h % 100
    a = (h >> 8) & 0xFFFF
    b = (h >> 24) & 0xFFFF
    offset = index * 64 + (a & 63)
    if pick < 35:
        body = (
            f"INFO  indexer: processed block {block} hash=0x{h:016x} "
            f"txs={a % 400} logs={b % 1500} in {5 + a % 120}ms"
        )
    elif pick < 55:
        records = 1 + b % 500
        body = f"INFO  sink: committed {records} records to {destination} (offset {offset})"
    elif pick < 70:
        body = f"DEBUG rpc: eth_getBlockReceipts block={block} took {3 + b % 250}ms"
    elif pick < 80:
        body = f"INFO  checkpoint: saved cursor block={block} offset={offset}"
    elif pick < 88:
        body = f"INFO  indexer: lag {a % 40} blocks behind head {block + a % 40}"
    elif pick < 94:
        body = (
            f"WARN  rpc: eth_getLogs timed out after {1000 + b % 9000}ms, "
            f"retrying (attempt {1 + a % 5}/5)"
        )
    elif pick < 97:
        body = f"WARN  indexer: reorg detected at block {block}, depth {1 + a % 4}, rewinding"
    else:
        body = (
            f"ERROR sink: write to {destination} failed: connection reset by peer, "
            f"retrying in {1 + a % 30}s"
        )
    return f"{iso_micros(wall)} {body}"


# --- tail errors ---------------------------------------------------------------------------------

TAIL_ERRORS: Final = (
    'unable to upgrade connection: container not found ("worker")',
    'container "worker" in pod "{pod}" is waiting to start: ContainerCreating',
    'container "worker" in pod "{pod}" is waiting to start: PodInitializing',
    'previous terminated container "worker" in pod "{pod}" not found',
    'pods "{pod}" not found',
)
"""What Kubernetes says instead of logs while a container is scheduled, starting or gone."""


def tail_error(number: int, pod: str) -> str:
    """The `number`-th tail error message (cycling) for `pod`."""
    return TAIL_ERRORS[number % len(TAIL_ERRORS)].replace("{pod}", pod)


def progress_line(h: int) -> str:
    """A progress bar rewritten in place with carriage returns, as one line of output."""
    task = ("snapshot", "backfill", "reindex", "upload")[h % 4]
    steps = [f"{task} {pct:3d}% [{'#' * (pct // 10):<10}]" for pct in range(0, 101, 25)]
    return "\r".join(steps)
