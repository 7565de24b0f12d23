"""Which pipeline gets the next token, without looking at every pipeline per token.

`Ranking` holds, per source, the followed pipelines not in flight (a `Pool` each,
follower/core/pool.py), and answers what `most_at_risk` (follower/core/schedule.py, the
reference it is property-tested against) would answer over the pipelines due whose source may
send: in O(log n) amortised per token instead of a scan of every pipeline.

A plan must not change while its pipeline is in the ranking: take it out (`remove`) before its
poll and `put` it back after. Every change of a due time must be `put` too.

Pure: `now` is an argument and must not go back.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from typing import Generic, TypeVar

from follower.core.pool import Member, Pool
from follower.core.schedule import PipelinePlan, urgency

S = TypeVar("S", bound=Hashable)


class Ranking(Generic[S]):
    """The followed pipelines not in flight, per source, ranked as `most_at_risk` ranks them."""

    def __init__(self, ceiling_s: float = math.inf) -> None:
        self._ceiling_s = _positive(ceiling_s)
        self._clear()

    def _clear(self) -> None:
        self._pools: dict[S, Pool] = {}
        self._members: dict[str, Member] = {}
        """Every ranked pipeline, whatever its source: one dict shared by the pools."""

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, pipeline_id: object) -> bool:
        return pipeline_id in self._members

    def put(self, pipeline_id: str, plan: PipelinePlan, source: S, due_at: float) -> None:
        """Add a pipeline, or tell a new due time or plan: it may go from `due_at` on."""
        pool = self._pools.get(source)
        if pool is None:
            pool = self._pools[source] = Pool(self._ceiling_s, self._members)
        member = self._members.get(pipeline_id)
        if member is not None and member.pool is not pool:
            self.remove(pipeline_id)
            member = None
        if member is None:
            member = self._members[pipeline_id] = Member(pipeline_id, plan, due_at, pool)
            pool.add(member)
        else:
            pool.put(member, plan, due_at)

    def remove(self, pipeline_id: str) -> None:
        """Take a pipeline out: chosen (in flight) or no longer followed."""
        member = self._members.pop(pipeline_id, None)
        if member is not None and member.pool is not None:
            member.pool.remove(member)

    def reconfigure(self, ceiling_s: float) -> None:
        """A new ceiling: every pipeline is placed again."""
        if _positive(ceiling_s) == self._ceiling_s:
            return
        members = [
            (m.pipeline_id, m.plan, s, m.due_at)
            for s, pool in self._pools.items()
            for m in self._members.values()
            if m.pool is pool
        ]
        self._ceiling_s = ceiling_s
        self._clear()
        for pipeline_id, plan, source, due_at in members:
            self.put(pipeline_id, plan, source, due_at)

    def pick(self, now: float, ready: Mapping[S, float | None]) -> tuple[str | None, float | None]:
        """The pipeline to poll at `now`, or None and the earliest time one could go (None: none
        could before a source's `ready` time changes).

        A pipeline may go when it is due and its source is ready (`ready[source] <= now`; None:
        the source may not send at all); the best of the ready sources is the one
        `most_at_risk` would choose over every pipeline that may go.
        """
        chosen: Member | None = None
        chosen_key: tuple[tuple[int, float, float], str] | None = None
        wait = math.inf
        for source, pool in self._pools.items():
            at = ready.get(source)
            if at is None or not pool.size:
                continue
            if at <= now:
                pool.advance(now)
                best = pool.best()
                if best is not None:
                    key = (urgency(best.plan, now, self._ceiling_s), best.pipeline_id)
                    if chosen_key is None or key < chosen_key:
                        chosen, chosen_key = best, key
                    continue
            due = pool.next_due()
            if due is not None:
                wait = min(wait, max(due, at))
        if chosen is not None:
            return chosen.pipeline_id, None
        return None, None if wait == math.inf else wait


def _positive(ceiling_s: float) -> float:
    """A ceiling of 0 or less would make every pipeline overdue at once (and NaN none)."""
    if not ceiling_s > 0:
        raise ValueError(f"ceiling_s must be positive, got {ceiling_s!r}")
    return ceiling_s
