"""Split the followed pipelines between N followers: each pipeline has exactly one owner.

Rendezvous (highest-random-weight) hashing: every shard scores every pipeline id with a stable
hash of (shard, id) and the highest score owns it. Every follower computes the same owner without
talking to the others, the split is even, and when N grows to N+1 only the ids the new shard now
wins move (about 1/(N+1) of them), all to the new shard; the rest stay where their state is.

The hash is BLAKE2b, the same in every process, Python version and platform. Python's `hash()`
of a str is salted per process (PYTHONHASHSEED) and would give every replica a different split.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

_ORDINAL: Final = re.compile(r"-([0-9]+)\Z")
_PERSON: Final = b"gr-follower-shd"  # BLAKE2b personalisation: these scores are for sharding only


@dataclass(frozen=True, slots=True)
class ShardSettings:
    """Which share of the pipelines this follower takes: `shard.*` in the configuration."""

    index: int = 0
    count: int = 1


def _score(shard: int, pipeline_id: str) -> int:
    """The weight of `pipeline_id` for `shard`: 64 bits of BLAKE2b over both."""
    data = shard.to_bytes(4, "big") + pipeline_id.encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8, person=_PERSON).digest(), "big")


def validate_shard(index: int, count: int) -> None:
    """ValueError naming the problem unless 0 <= index < count."""
    for name, value in (("shard count", count), ("shard index", index)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an integer, got {value!r}")
    if count < 1:
        raise ValueError(f"shard count must be at least 1, got {count}")
    if not 0 <= index < count:
        valid = f"valid: 0 to {count - 1}"
        raise ValueError(f"shard index {index} is out of range for shard count {count} ({valid})")


def owner(pipeline_id: str, shard_count: int) -> int:
    """The shard (0 to shard_count - 1) that follows `pipeline_id`."""
    validate_shard(0, shard_count)
    # max() keeps the first of equal scores, so a 64-bit tie (never seen) still has one owner.
    return max(range(shard_count), key=lambda shard: _score(shard, pipeline_id))


def select(pipeline_ids: Iterable[str], shard_index: int, shard_count: int) -> list[str]:
    """The ids shard `shard_index` of `shard_count` follows, in their given order, once each."""
    validate_shard(shard_index, shard_count)
    seen: set[str] = set()
    mine: list[str] = []
    for pipeline_id in pipeline_ids:
        if pipeline_id not in seen:
            seen.add(pipeline_id)
            if owner(pipeline_id, shard_count) == shard_index:
                mine.append(pipeline_id)
    return mine


def ordinal_from_hostname(hostname: str) -> int:
    """The trailing ordinal of a StatefulSet pod's hostname: `follower-2` -> 2.

    Only the first DNS label counts, so `follower-2.follower.ns.svc.cluster.local` works too.
    """
    label = hostname.strip().split(".", 1)[0]
    match = _ORDINAL.search(label)
    if match is None:
        raise ValueError(
            f"hostname {hostname!r} does not end in -N (as a StatefulSet pod's does, e.g. "
            "follower-2): pass the shard index explicitly"
        )
    return int(match.group(1))
