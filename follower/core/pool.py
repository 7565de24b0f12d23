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

Heaps delete lazily (a sequence number per pipeline) and are rebuilt when mostly stale. A plan
must not change while its pipeline is in the pool. Pure: `now` is an argument and never goes
back.
"""

from __future__ import annotations

import heapq
import math

from follower.core.kinetic import RiskTournament
from follower.core.schedule import OVERFLOWING, PipelinePlan, urgency

_PENDING, _OVERDUE_OLD, _OVERDUE_NEW, _PROBE, _FIRST, _SECOND, _RISING, _STARTING, _IDLE = range(9)


class Member:
    """A pipeline in a pool: its plan, when it is due, its group and its sequence number."""

    __slots__ = ("due_at", "group", "pipeline_id", "plan", "seq")

    def __init__(self, pipeline_id: str, plan: PipelinePlan, due_at: float, seq: int) -> None:
        self.pipeline_id = pipeline_id
        self.plan = plan
        self.due_at = due_at
        self.seq = seq
        self.group = _PENDING


Entry = tuple[float, str, int]
"""(key, pipeline id, sequence number) in a heap; stale when the sequence number moved on."""


class Pool:
    """One source's pipelines not in flight, in their `urgency` groups."""

    def __init__(self, ceiling_s: float) -> None:
        self.ceiling_s = ceiling_s
        self._clear()

    def _clear(self) -> None:
        self.members: dict[str, Member] = {}
        self.due = 0
        """How many members are due (in a group)."""
        self.now = -math.inf
        self.entries = 0
        self._seq = 0
        self._pending: list[Entry] = []
        self._ages: list[Entry] = []
        self._heaps: dict[int, list[Entry]] = {
            group: [] for group in (_OVERDUE_OLD, _FIRST, _SECOND, _STARTING, _IDLE)
        }
        self._probe: list[tuple[float, float, str, int]] = []
        self._waits: dict[float, list[tuple[str, int]]] = {}
        """OVERDUE never polled, by when their wait began; `_wait_starts` is a heap of the keys."""
        self._wait_starts: list[float] = []
        self._rising = RiskTournament()

    # --- changing ------------------------------------------------------------------------------

    def put(self, pipeline_id: str, plan: PipelinePlan, due_at: float) -> None:
        """Add a pipeline or tell its new due time or plan (placed at the next `advance`)."""
        member = self.members.get(pipeline_id)
        if member is not None and member.plan is plan:
            if member.group != _PENDING and due_at <= self.now:
                member.due_at = due_at  # still due, in the same place
                return
            if member.group == _PENDING and due_at == member.due_at:
                return
        self.remove(pipeline_id)
        self._seq += 1
        member = Member(pipeline_id, plan, due_at, self._seq)
        self.members[pipeline_id] = member
        self._push(self._pending, (due_at, pipeline_id, member.seq))
        if self.entries > 4 * len(self.members) + 64:
            self._rebuild()

    def remove(self, pipeline_id: str) -> None:
        """Take a pipeline out (nothing if it is not in)."""
        member = self.members.pop(pipeline_id, None)
        if member is None:
            return
        if member.group != _PENDING:
            self.due -= 1
        if member.group == _RISING:
            self._rising.remove(pipeline_id)

    def _rebuild(self) -> None:
        """Drop every stale heap entry: every member waits again, placed at the next advance."""
        members = list(self.members.values())
        self._clear()
        for member in members:
            self.put(member.pipeline_id, member.plan, member.due_at)

    def _push(self, heap: list[Entry], entry: Entry) -> None:
        self.entries += 1
        heapq.heappush(heap, entry)

    def _live(self, heap: list[Entry], group: int) -> Member | None:
        """The member at the top of a group's heap, after dropping stale entries."""
        members = self.members
        while heap:
            _, pipeline_id, seq = heap[0]
            member = members.get(pipeline_id)
            if member is not None and member.seq == seq and member.group == group:
                return member
            heapq.heappop(heap)
            self.entries -= 1
        return None

    # --- time ----------------------------------------------------------------------------------

    def advance(self, now: float) -> None:
        """Place the members due by `now`; move those that reached the ceiling or their poll."""
        self.now = max(self.now, now)
        now = self.now
        pending, members = self._pending, self.members
        while pending and pending[0][0] <= now:
            _, pipeline_id, seq = heapq.heappop(pending)
            self.entries -= 1
            member = members.get(pipeline_id)
            if member is not None and member.seq == seq and member.group == _PENDING:
                self.due += 1
                self._place(member, now)
        ages, ceiling = self._ages, self.ceiling_s
        while ages and now - ages[0][0] >= ceiling:
            _, pipeline_id, seq = heapq.heappop(ages)
            self.entries -= 1
            member = members.get(pipeline_id)
            if member is not None and member.seq == seq and member.group > _OVERDUE_NEW:
                if member.group == _RISING:
                    self._rising.remove(pipeline_id)
                self._overdue(member)
        starting = self._heaps[_STARTING]
        while (member := self._live(starting, _STARTING)) is not None:
            last = member.plan.last_poll
            assert last is not None
            if last > now:
                break
            self._rise(member, last, now)

    def _place(self, member: Member, now: float) -> None:
        plan, pipeline_id, seq = member.plan, member.pipeline_id, member.seq
        last = plan.last_poll
        age = plan.waiting_since if last is None else last
        if age is not None and now - age >= self.ceiling_s:
            self._overdue(member)
            return
        if age is not None:
            self._push(self._ages, (age, pipeline_id, seq))
        if last is None:
            member.group = _FIRST
            self._push(self._heaps[_FIRST], (0.0, pipeline_id, seq))
        elif plan.samples == 0 and plan.looks_busy:
            member.group = _PROBE
            self.entries += 1
            heapq.heappush(self._probe, (-float(plan.window or 0), last, pipeline_id, seq))
        elif plan.samples == 0:
            member.group = _SECOND
            self._push(self._heaps[_SECOND], (last, pipeline_id, seq))
        elif plan.rate_lps > 0 and last <= now:
            self._rise(member, last, now)
        else:
            member.group = _IDLE if plan.rate_lps <= 0 else _STARTING
            self._push(self._heaps[member.group], (last, pipeline_id, seq))

    def _rise(self, member: Member, last: float, now: float) -> None:
        member.group = _RISING
        plan = member.plan
        self._rising.add(member.pipeline_id, plan.rate_lps, last, plan.window or 1, now)

    def _overdue(self, member: Member) -> None:
        last = member.plan.last_poll
        if last is not None:
            member.group = _OVERDUE_OLD
            self._push(self._heaps[_OVERDUE_OLD], (last, member.pipeline_id, member.seq))
            return
        member.group = _OVERDUE_NEW
        since = member.plan.waiting_since
        assert since is not None
        bucket = self._waits.get(since)
        if bucket is None:
            bucket = self._waits[since] = []
            heapq.heappush(self._wait_starts, since)
        self.entries += 1
        heapq.heappush(bucket, (member.pipeline_id, member.seq))

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
            _, _, pipeline_id, seq = probe[0]
            member = self.members.get(pipeline_id)
            if member is not None and member.seq == seq and member.group == _PROBE:
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
            member = self._bucket_top(waits[since])
            if member is None:
                del waits[since]
                heapq.heappop(starts)
                continue
            if found and now - since != waited:
                break
            waited = now - since
            found.append((heapq.heappop(starts), member))
        for since, _ in found:
            heapq.heappush(starts, since)
        return min((member for _, member in found), key=lambda m: m.pipeline_id, default=None)

    def _bucket_top(self, bucket: list[tuple[str, int]]) -> Member | None:
        while bucket:
            pipeline_id, seq = bucket[0]
            member = self.members.get(pipeline_id)
            if member is not None and member.seq == seq and member.group == _OVERDUE_NEW:
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
