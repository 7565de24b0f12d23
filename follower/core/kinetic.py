"""The pipeline of highest risk among many, at increasing times, in O(log n) amortised.

A measured pipeline's risk, `rate * (now - last) / window`, is linear in `now`, so the one of
highest risk changes only where two lines cross. A kinetic tournament keeps that: a binary tree
over the pipelines in which every node holds the winner of its two children at the last time it
was looked at, and a certificate, the time until which that winner cannot lose (computed with
a margin, so rounding never makes a certificate promise too much). Advancing to `now` recomputes
only the nodes whose certificate expired and their ancestors; adding or removing a pipeline
recomputes its path to the root.

Comparisons are the reference's own (`urgency` in follower/core/schedule.py): the same float
expression for the risk, ties to the oldest poll, then to the smallest id. The margin only
decides how long a winner is trusted; two risks within it (a near tie) are compared again at
every later time until they separate, and pipelines whose order can never change (identical or
dominated lines) are never compared again.

Pure: `now` is an argument and must not go back.
"""

from __future__ import annotations

import heapq
import math
from array import array
from typing import Final

MARGIN: Final = 1e-9
"""Relative gap two risks must keep for a certificate to trust their order: far above the
rounding of the three float operations of a risk (about 4e-16), so a trusted order is exact."""
SMALLEST: Final = 1e-300
"""Risks this close to zero are not trusted to keep their order (subnormal rounding)."""
ROUNDING: Final = 4 * 2.0**-53
_SHRINK: Final = 1 - MARGIN
_WIDEN: Final = 1 + MARGIN
_nextafter: Final = math.nextafter
STALE_CERTIFICATES: Final = 2
"""Entries of the certificate heap per leaf before the stale ones are dropped: each costs ~100
bytes (a tuple and a float), and dropping them is one pass over the nodes."""
CERTIFICATE_SLACK: Final = 64
"""...plus this many, so that a small tournament does not drop them at every change."""


class RiskTournament:
    """The pipeline of highest risk among those added, ties to the oldest poll, then the id.

    Every pipeline added must have a positive rate and `last <= now`.
    """

    def __init__(self) -> None:
        self._size = 1
        """Leaves (a power of two); leaf `i` is node `size + i`."""
        self._ids: list[str] = [""]
        # Per slot (leaf), in lists: the rate and last poll are the plan's own float objects (8
        # bytes a pointer, as in an array), and reading them from a list makes no new float
        # object, where an array boxes every read (the comparisons read four per node).
        self._rate: list[float] = [0.0]
        self._last: list[float] = [0.0]
        self._window: list[int] = [1]
        self._winner = array("i", [-1, -1])
        """Per node, the slot of its winner; -1: an empty subtree."""
        self._until = array("d", [math.inf, math.inf])
        """Per node, until when its winner is certain to stay."""
        self._expiring: list[tuple[float, int]] = []
        """(certificate, node): a node to look at again once `now` passes its certificate."""
        self._free: list[int] = [0]
        """The slots not taken; the caller keeps each pipeline's (`add` returns it)."""
        self._count = 0
        self._now = -math.inf

    def __len__(self) -> int:
        return self._count

    def add(self, pipeline_id: str, rate: float, last: float, window: int, now: float) -> int:
        """Take part from `now` on (`rate > 0`, `last <= now`); returns the pipeline's slot, which
        `remove` takes (the caller keeps it: no dict of slots by id here)."""
        self._advance(now)
        if not self._free:
            self._grow()
        slot = self._free.pop()
        self._count += 1
        self._ids[slot] = pipeline_id
        self._rate[slot] = rate
        self._last[slot] = last
        self._window[slot] = window
        self._set_leaf(slot, slot)
        return slot

    def remove(self, slot: int) -> None:
        """The pipeline `add` gave `slot` takes no further part (nothing if the slot is free)."""
        if self._winner[self._size + slot] < 0:
            return
        self._free.append(slot)
        self._count -= 1
        self._set_leaf(slot, -1)

    def best(self, now: float) -> str | None:
        """The pipeline of highest risk at `now` (None when empty)."""
        self._advance(now)
        winner = self._winner[1]
        return None if winner < 0 else self._ids[winner]

    # --- the tree ------------------------------------------------------------------------------

    def _set_leaf(self, slot: int, value: int) -> None:
        node = self._size + slot
        self._winner[node] = value
        node >>= 1
        while node:
            if not self._recompute(node):
                return
            node >>= 1

    def _advance(self, now: float) -> None:
        """Recompute the nodes whose certificate `now` passed, and their ancestors as needed."""
        self._now = max(self._now, now)
        now = self._now
        until = self._until
        # `self._expiring` is read at every turn: a recompute may replace the heap (dropping
        # its stale entries), and a local name would go on draining the old one.
        while self._expiring and self._expiring[0][0] < now:
            at, node = heapq.heappop(self._expiring)
            if until[node] == at:
                while self._recompute(node) and node > 1:
                    node >>= 1

    def _recompute(self, node: int) -> bool:
        """The node's winner and certificate at the current time; True if its winner changed."""
        winners = self._winner
        one, other = winners[2 * node], winners[2 * node + 1]
        if one < 0 or other < 0:
            winner, until = (other if one < 0 else one), math.inf
        else:
            # The risk as in schedule.urgency (same float operations), then the tie-breaks.
            now, rate, last, window = self._now, self._rate, self._last, self._window
            last_one, last_other = last[one], last[other]
            risk_one = rate[one] * (now - last_one if now > last_one else 0.0) / window[one]
            risk_other = rate[other] * (now - last_other if now > last_other else 0.0) / window[
                other
            ]
            if risk_other > risk_one or (risk_other == risk_one and (
                last_other < last_one
                or (last_other == last_one and self._ids[other] < self._ids[one])
            )):
                one, other = other, one
            winner, until = one, self._certificate(one, other)
        self._until[node] = until
        if until != math.inf:
            heapq.heappush(self._expiring, (until, node))
            if len(self._expiring) > STALE_CERTIFICATES * self._size + CERTIFICATE_SLACK:
                self._drop_stale_certificates()
        if winner == winners[node]:
            return False
        winners[node] = winner
        return True

    def _drop_stale_certificates(self) -> None:
        """Keep one entry per node with a finite certificate: the heap is mostly stale."""
        self._expiring = [(u, n) for n, u in enumerate(self._until) if u != math.inf]
        heapq.heapify(self._expiring)

    def _certificate(self, winner: int, loser: int) -> float:
        """Until when `winner` (which beats `loser` now) is certain to go on beating it."""
        rate, window, last = self._rate, self._window, self._last
        last_w, last_l = last[winner], last[loser]
        if (
            rate[winner] >= rate[loser] and window[winner] <= window[loser] and last_w <= last_l
            and (last_w < last_l or self._ids[winner] < self._ids[loser])
        ):
            return math.inf  # dominated: every risk operation rounds in the winner's favour
        now = self._now
        slope_w, slope_l = rate[winner] / window[winner], rate[loser] / window[loser]
        gap = slope_w * (now - last_w) * _SHRINK - slope_l * (now - last_l) * _WIDEN
        if gap <= SMALLEST:
            return now  # a near tie: compare again at the next later time
        closing = slope_l * _WIDEN - slope_w * _SHRINK + ROUNDING * (slope_l + slope_w)
        if closing <= 0:
            return math.inf  # the gap only grows
        # The whole time until the widened lines meet: there the winner still leads by about
        # 2 MARGIN of its risk, millions of roundings, and a pair whose risks cross is compared
        # again once there, not at each halving of the time left.
        until = _nextafter(now + gap / closing, -math.inf)
        return until if until > now else now

    def _grow(self) -> None:
        """Double the leaves and rebuild every node at the current time."""
        old = self._size
        size = 2 * old
        extra = size - old
        self._ids += [""] * extra
        self._rate += [0.0] * extra
        self._last += [0.0] * extra
        self._window += [1] * extra
        winner = array("i", [-1]) * (2 * size)
        winner[size:size + old] = self._winner[old:2 * old]
        self._winner = winner
        self._until = array("d", [math.inf]) * (2 * size)
        self._expiring = []
        self._size = size
        self._free.extend(range(size - 1, old - 1, -1))
        for node in range(size - 1, 0, -1):
            self._recompute(node)
