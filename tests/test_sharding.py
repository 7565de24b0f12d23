"""Sharding: one owner per pipeline, an even split, little movement, the same in every process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

import pytest

from follower.core.sharding import ordinal_from_hostname, owner, select, validate_shard

IDS = [f"pipe_{i:027x}" for i in range(10_000)]


@pytest.mark.parametrize("count", range(1, 8))
def test_every_pipeline_is_followed_by_exactly_one_shard(count: int) -> None:
    """The shards' selections are disjoint and together cover every id."""
    selections = [select(IDS, index, count) for index in range(count)]
    followed = [pipeline_id for selection in selections for pipeline_id in selection]
    assert len(followed) == len(IDS)
    assert set(followed) == set(IDS)


@pytest.mark.parametrize("count", range(1, 8))
def test_split_is_balanced(count: int) -> None:
    """Each shard gets within 10% of an equal share of 10,000 ids (about 4 standard deviations)."""
    sizes = Counter(owner(pipeline_id, count) for pipeline_id in IDS)
    share = len(IDS) / count
    assert set(sizes) == set(range(count))
    assert all(abs(size - share) <= 0.1 * share for size in sizes.values())


@pytest.mark.parametrize("count", range(1, 7))
def test_growing_by_one_shard_moves_about_one_in_n_plus_1_ids_all_to_the_new_shard(
    count: int,
) -> None:
    """N -> N+1 moves ~1/(N+1) of the ids, and only to shard N: the others keep their state."""
    moved = {
        pipeline_id: owner(pipeline_id, count + 1)
        for pipeline_id in IDS
        if owner(pipeline_id, count) != owner(pipeline_id, count + 1)
    }
    assert set(moved.values()) == {count}
    expected = len(IDS) / (count + 1)
    assert abs(len(moved) - expected) <= 0.1 * expected


PINNED = {
    "pipe_3e8678c5fc9e48a7bf9879ca729": [0, 0, 0, 0, 0, 5, 5],
    "pipe_fa28e4ef28fa4f7b9ffc62e162d": [0, 1, 2, 3, 3, 5, 5],
    "pipe_a": [0, 0, 2, 2, 2, 2, 2],
    "pipe_b": [0, 0, 2, 3, 3, 3, 3],
    "pipe_c": [0, 1, 1, 1, 1, 1, 1],
}


@pytest.mark.parametrize(("pipeline_id", "owners"), PINNED.items())
def test_owners_are_pinned(pipeline_id: str, owners: list[int]) -> None:
    """The split never changes between releases: replicas of different versions must agree."""
    assert [owner(pipeline_id, count) for count in range(1, 8)] == owners


def test_owners_do_not_depend_on_the_process_hash_seed() -> None:
    """Another interpreter with another PYTHONHASHSEED computes the same owners."""
    code = (
        "from follower.core.sharding import owner; import json, sys; "
        "print(json.dumps({p: [owner(p, n) for n in range(1, 8)] for p in sys.argv[1:]}))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code, *PINNED],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    ).stdout
    assert out.strip() == (
        "{" + ", ".join(f'"{p}": [{", ".join(map(str, o))}]' for p, o in PINNED.items()) + "}"
    )


def test_select_keeps_order_and_drops_duplicates() -> None:
    """A shard's selection keeps the given order and lists a repeated id once."""
    ids = ["pipe_c", "pipe_a", "pipe_c", "pipe_b"]
    assert select(ids, 0, 1) == ["pipe_c", "pipe_a", "pipe_b"]
    assert select(ids, 1, 2) == ["pipe_c"]


@pytest.mark.parametrize(
    ("hostname", "ordinal"),
    [
        ("follower-0", 0),
        ("follower-12", 12),
        ("my-app-follower-3", 3),
        ("follower-2.follower.logging.svc.cluster.local", 2),
        ("follower-007", 7),
        ("  follower-4\n", 4),
    ],
)
def test_ordinal_from_hostname(hostname: str, ordinal: int) -> None:
    """The trailing -N of the first DNS label is the StatefulSet ordinal."""
    assert ordinal_from_hostname(hostname) == ordinal


@pytest.mark.parametrize(
    "hostname", ["follower", "follower-", "follower-2a", "3", "", "db.follower-2"]
)
def test_hostname_without_ordinal_is_an_error(hostname: str) -> None:
    """No trailing -N: a clear error that says what was expected and what to do instead."""
    with pytest.raises(ValueError, match=r"does not end in -N .*pass the shard index"):
        ordinal_from_hostname(hostname)


@pytest.mark.parametrize(
    ("index", "count", "message"),
    [
        (0, 0, "shard count must be at least 1, got 0"),
        (3, 3, r"shard index 3 is out of range for shard count 3 \(valid: 0 to 2\)"),
        (-1, 2, "shard index -1 is out of range"),
        (True, 2, "shard index must be an integer"),
        (0, 2.0, "shard count must be an integer"),
    ],
)
def test_invalid_shards_are_named(index: int, count: int, message: str) -> None:
    """Each invalid index or count is rejected with a message naming it."""
    with pytest.raises(ValueError, match=message):
        validate_shard(index, count)
