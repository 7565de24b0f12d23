"""One source's pipelines not in flight, each in its `urgency` group (follower/core/schedule.py).

- a pipeline not yet due waits in a heap of due times; once due it joins its group;
- within a group the order is static between polls (a heap) except by risk: OVERDUE polled by
  oldest poll, OVERDUE never polled by longest wait (buckets by when the wait began, since two
  waits that began apart may round to one), PROBE by largest window then oldest poll,
  FIRST_POLL by id, SECOND_LOOK by oldest poll;
- a due pipeline joins OVERDUE when it reaches the ceiling: a heap of ages says when;
- the measured pipelines share a risk pool: a kinetic tournament (follower/core/kinetic.py) for
  those whose risk grows, heaps by oldest poll for the idle ones (rate 0) and for those whose
  last poll is still ahead (risk 0 until then); its best is OVERFLOWING from risk 0.9 on;
- the bests of the groups are compared with `urgency` itself, so ties break as in the reference.

Heaps delete lazily: an entry is (key, pipeline id), live while its pipeline is in the pool, in
the heap's group and with that key (an equal stale entry stands where the live one does), and
the stale ones are dropped when they outnumber the members `STALE_ENTRIES` to one. No sequence
number, no object per entry or per put beyond the tuple: memory is per pipeline. A plan
must not change while its pipeline is in the pool. Pure: `now` is an argument and never goes
back.

Size: over 300 lines because the groups, the liveness of their heaps' entries and the dropping
of stale ones are one invariant (an entry is live exactly when its member stands there), which
split across modules would be checked in one and relied on in another.
"""

from __future__ import annotations

import heapq
import math
from typing import Any, Final

from follower.core.kinetic import RiskTournament
from follower.core.schedule import OVERFLOWING, PipelinePlan, urgency

_PENDING, _OVERDUE_OLD, _OVERDUE_NEW, _PROBE, _FIRST, _SECOND, _RISING, _STARTING, _IDLE = range(9)
STALE_ENTRIES: Final = 2
"""Heap entries per member before the stale ones are dropped (each costs ~60 bytes)."""
STALE_SLACK: Final = 64
"""...plus this many, so that a small pool does not drop them at every change."""


class Member:
    """A pipeline in the ranking: its plan, when it is due, its group and its pool.

    One object per pipeline for as long as it is ranked: a new plan or due time changes it in
    place, and a heap entry is live while the member is in that heap's group with that key.
    """

    __slots__ = ("due_at", "group", "pipeline_id", "plan", "pool", "slot")

    def __init__(self, pipeline_id: str, plan: PipelinePlan, due_at: float, pool: Pool) -> None:
        self.pipeline_id = pipeline_id
        self.plan = plan
        self.due_at = due_at
        self.group = _PENDING
        self.pool: Pool | None = pool
        self.slot = -1
        """Its slot in the pool's risk tournament while RISING (free in the object's size)."""


Entry = tuple[float, str]
"""(key, pipeline id) in a heap; stale unless the member is in the heap's group with that key."""


def _age(plan: PipelinePlan) -> float | None:
    """Since when the ceiling counts: the last poll, or the wait for a first one."""
    return plan.waiting_since if plan.last_poll is None else plan.last_poll


def _key(member: Member, group: int) -> float | None:
    """The key of a live entry of `member` in `group`'s heap (`_PENDING`: the pending heap)."""
    if group == _PENDING:
        return member.due_at
    return 0.0 if group == _FIRST else member.plan.last_poll


class Pool:
    """One source's pipelines not in flight, in their `urgency` groups.

    `members` is shared by every pool of a ranking (one dict, not one per source): a pool's
    members are those whose `pool` is it.
    """

    def __init__(self, ceiling_s: float, members: dict[str, Member]) -> None:
        self.ceiling_s = ceiling_s
        self.members = members
        self.size = 0
        """How many members are in this pool."""
        self.due = 0
        """How many members are due (in a group)."""
        self.now = -math.inf
        self.entries = 0
        self._pending: list[Entry] = []
        self._ages: list[Entry] = []
        self._heaps: dict[int, list[Entry]] = {
            group: [] for group in (_OVERDUE_OLD, _FIRST, _SECOND, _STARTING, _IDLE)
        }
        self._probe: list[tuple[float, float, str]] = []
        self._waits: dict[float, list[str]] = {}
        """OVERDUE never polled, by when their wait began; `_wait_starts` is a heap of the keys."""
        self._wait_starts: list[float] = []
        self._rising = RiskTournament()

    # --- changing ------------------------------------------------------------------------------

    def add(self, member: Member) -> None:
        """Take in a member of no pool (placed at the next `advance`)."""
        member.pool, member.group = self, _PENDING
        self.size += 1
        self._wait(member)

    def put(self, member: Member, plan: PipelinePlan, due_at: float) -> None:
        """Tell a member's new due time or plan (placed at the next `advance`)."""
        if member.plan is plan:
            if member.group != _PENDING and due_at <= self.now:
                member.due_at = due_at  # still due, in the same place
                return
            if member.group == _PENDING and due_at == member.due_at:
                return
        self._leave(member)
        member.plan, member.due_at = plan, due_at
        self._wait(member)

    def remove(self, member: Member) -> None:
        """Take a member out (it is in this pool)."""
        self._leave(member)
        member.pool = None
        self.size -= 1

    def _leave(self, member: Member) -> None:
        """Out of its group: its heap entries go stale."""
        if member.group != _PENDING:
            self.due -= 1
            if member.group == _RISING:
                self._rising.remove(member.slot)
            member.group = _PENDING

    def _wait(self, member: Member) -> None:
        self._push(self._pending, (member.due_at, member.pipeline_id))
        if self.entries > STALE_ENTRIES * self.size + STALE_SLACK:
            self._compact()

    def _push(self, heap: list[Entry], entry: Entry) -> None:
        self.entries += 1
        heapq.heappush(heap, entry)

    def _in(self, pipeline_id: str, group: int) -> Member | None:
        """The pipeline's member if it is in this pool and in `group`."""
        member = self.members.get(pipeline_id)
        if member is None or member.pool is not self or member.group != group:
            return None
        return member

    def _live(self, heap: list[Entry], group: int) -> Member | None:
        """The member at the top of a group's heap, after dropping stale entries."""
        while heap:
            key, pipeline_id = heap[0]
            member = self._in(pipeline_id, group)
            if member is not None:
                expected = _key(member, group)
                if key is expected or key == expected:
                    return member
            heapq.heappop(heap)
            self.entries -= 1
        return None

    def _aging(self, age: float, pipeline_id: str) -> Member | None:
        """The member an ages entry stands for, if it is live (due, not overdue, that age)."""
        member = self.members.get(pipeline_id)
        if member is None or member.pool is not self or member.group <= _OVERDUE_NEW:
            return None
        current = _age(member.plan)
        return member if age is current or age == current else None

    def _probing(self, entry: tuple[float, float, str]) -> Member | None:
        member = self._in(entry[2], _PROBE)
        if member is None:
            return None
        plan = member.plan
        return member if entry[:2] == (-float(plan.window or 0), plan.last_poll) else None

    def _waiting(self, since: float, pipeline_id: str) -> Member | None:
        member = self._in(pipeline_id, _OVERDUE_NEW)
        return member if member is not None and member.plan.waiting_since == since else None

    def _compact(self) -> None:
        """Drop every stale heap entry: the heaps hold mostly entries of earlier places."""
        live = self._live_entry
        self._pending = [e for e in self._pending if live(e, _PENDING)]
        self._ages = [e for e in self._ages if self._aging(*e) is not None]
        for group, heap in self._heaps.items():
            self._heaps[group] = [e for e in heap if live(e, group)]
        self._probe = [e for e in self._probe if self._probing(e) is not None]
        waits = {
            since: [p for p in bucket if self._waiting(since, p) is not None]
            for since, bucket in self._waits.items()
        }
        self._waits = {since: bucket for since, bucket in waits.items() if bucket}
        self._wait_starts = list(self._waits)
        heaps: list[list[Any]] = [
            self._pending,
            self._ages,
            self._probe,
            self._wait_starts,
            *self._heaps.values(),
            *self._waits.values(),
        ]
        for heap in heaps:
            heapq.heapify(heap)
        self.entries = sum(len(heap) for heap in heaps) - len(self._wait_starts)

    def _live_entry(self, entry: Entry, group: int) -> bool:
        member = self._in(entry[1], group)
        return member is not None and entry[0] == _key(member, group)

    # --- time ----------------------------------------------------------------------------------

    def advance(self, now: float) -> None:
        """Place the members due by `now`; move those that reached the ceiling or their poll."""
        self.now = max(self.now, now)
        now = self.now
        pending = self._pending
        while pending and pending[0][0] <= now:
            due_at, pipeline_id = heapq.heappop(pending)
            self.entries -= 1
            member = self._in(pipeline_id, _PENDING)
            if member is not None and (due_at is member.due_at or due_at == member.due_at):
                self.due += 1
                self._place(member, now)
        ages, ceiling = self._ages, self.ceiling_s
        while ages and now - ages[0][0] >= ceiling:
            member = self._aging(*heapq.heappop(ages))
            self.entries -= 1
            if member is not None:
                if member.group == _RISING:
                    self._rising.remove(member.slot)
                self._overdue(member)
        starting = self._heaps[_STARTING]
        while (member := self._live(starting, _STARTING)) is not None:
            last = member.plan.last_poll
            assert last is not None
            if last > now:
                break
            self._rise(member, last, now)

    def _place(self, member: Member, now: float) -> None:
        plan, pipeline_id = member.plan, member.pipeline_id
        last = plan.last_poll
        age = plan.waiting_since if last is None else last
        if age is not None and now - age >= self.ceiling_s:
            self._overdue(member)
            return
        if age is not None:
            self._push(self._ages, (age, pipeline_id))
        if last is None:
            member.group = _FIRST
            self._push(self._heaps[_FIRST], (0.0, pipeline_id))
        elif plan.samples == 0 and plan.looks_busy:
            member.group = _PROBE
            self.entries += 1
            heapq.heappush(self._probe, (-float(plan.window or 0), last, pipeline_id))
        elif plan.samples == 0:
            member.group = _SECOND
            self._push(self._heaps[_SECOND], (last, pipeline_id))
        elif plan.rate_lps > 0 and last <= now:
            self._rise(member, last, now)
        else:
            member.group = _IDLE if plan.rate_lps <= 0 else _STARTING
            self._push(self._heaps[member.group], (last, pipeline_id))

    def _rise(self, member: Member, last: float, now: float) -> None:
        member.group = _RISING
        plan = member.plan
        window = plan.window or 1
        member.slot = self._rising.add(member.pipeline_id, plan.rate_lps, last, window, now)

    def _overdue(self, member: Member) -> None:
        last = member.plan.last_poll
        if last is not None:
            member.group = _OVERDUE_OLD
            self._push(self._heaps[_OVERDUE_OLD], (last, member.pipeline_id))
            return
        member.group = _OVERDUE_NEW
        since = member.plan.waiting_since
        assert since is not None
        bucket = self._waits.get(since)
        if bucket is None:
            bucket = self._waits[since] = []
            heapq.heappush(self._wait_starts, since)
        self.entries += 1
        heapq.heappush(bucket, member.pipeline_id)

    # --- choosing ------------------------------------------------------------------------------

    def best(self) -> Member | None:
        """The due member `most_at_risk` would choose at the last `advance` (None: none due)."""
        if not self.due:
            return None
        now, ceiling = self.now, self.ceiling_s
        overdue = [m for m in (self._live(self._heaps[_OVERDUE_OLD], _OVERDUE_OLD),
                               self._longest_wait()) if m is not None]
        if overdue:
            return min(overdue, key=lambda m: (urgency(m.plan, now, ceiling), m.pipeline_id))
        probe = self._probe
        while probe:
            member = self._probing(probe[0])
            if member is not None:
                return member
            heapq.heappop(probe)
            self.entries -= 1
        risky = self._riskiest()
        if risky is not None and urgency(risky.plan, now, ceiling)[0] == OVERFLOWING:
            return risky
        for group in (_FIRST, _SECOND):
            member = self._live(self._heaps[group], group)
            if member is not None:
                return member
        return risky

    def _riskiest(self) -> Member | None:
        rising = self._rising.best(self.now)
        candidates = [m for m in (
            None if rising is None else self.members[rising],
            self._live(self._heaps[_STARTING], _STARTING),
            self._live(self._heaps[_IDLE], _IDLE),
        ) if m is not None]
        if len(candidates) < 2:
            return candidates[0] if candidates else None
        now, ceiling = self.now, self.ceiling_s
        return min(candidates, key=lambda m: (urgency(m.plan, now, ceiling), m.pipeline_id))

    def _longest_wait(self) -> Member | None:
        """The never-polled OVERDUE member waiting longest, ties (equal rounded waits, even from
        different starts) to the smallest id."""
        starts, waits, now = self._wait_starts, self._waits, self.now
        found: list[tuple[float, Member]] = []
        waited = -math.inf
        while starts:
            since = starts[0]
            member = self._bucket_top(since, waits[since])
            if member is None:
                del waits[since]
                heapq.heappop(starts)
                continue
            if found and now - since != waited:
                break
            waited = now - since
            found.append((heapq.heappop(starts), member))
        if not found:  # nearly every pick: nothing has waited past the ceiling
            return None
        for since, _ in found:
            heapq.heappush(starts, since)
        return min((member for _, member in found), key=lambda m: m.pipeline_id)

    def _bucket_top(self, since: float, bucket: list[str]) -> Member | None:
        while bucket:
            member = self._waiting(since, bucket[0])
            if member is not None:
                return member
            heapq.heappop(bucket)
            self.entries -= 1
        return None

    def next_due(self) -> float | None:
        """The earliest due time of a member (-inf when one is due; None: no member)."""
        if self.due:
            return -math.inf
        if self._live(self._pending, _PENDING) is None:
            return None
        return self._pending[0][0]
