"""What the ops server asks of a run: its gauges, whether it is alive, whether it is ready."""

from __future__ import annotations

from collections.abc import Sequence

from follower.engine.dispatcher import Dispatcher
from follower.engine.keys import KeyWatch
from follower.engine.poller import PollStats
from follower.engine.roster import Roster
from follower.engine.sources import Source
from follower.ops.metrics import Metrics

__all__ = ["Status"]


class Status:
    """Describes the present of a run from its parts (reads them, changes none)."""

    def __init__(
        self,
        *,
        roster: Roster,
        sources: Sequence[Source],
        keys: KeyWatch,
        stats: PollStats,
        metrics: Metrics,
        dispatcher: Dispatcher,
    ) -> None:
        self._roster = roster
        self._sources = tuple(sources)
        self._keys = keys
        self._stats = stats
        self._metrics = metrics
        self._dispatcher = dispatcher
        self.running = False
        """True while the run goes on (the runner sets it)."""

    def refresh_metrics(self) -> None:
        """Set the gauges that describe the present (followed pipelines, states, budget)."""
        metrics, roster = self._metrics, self._roster
        metrics.pipelines.set(len(roster))
        metrics.pods.set(sum(len(f.tracker.pods) for f in roster))
        metrics.states(f.life.phase for f in roster)
        metrics.key_rejected.set(1 if self._keys.rejected() else 0)
        metrics.budget_rate.set(sum(s.budget.current_rate_per_s for s in self._sources))
        metrics.budget_shortfall.set(self._dispatcher.shortfall)
        if len(self._sources) > 1:
            counts = dict.fromkeys(self._sources, 0)
            for each in roster:
                counts[each.source] += 1
            for source, count in counts.items():
                metrics.source(
                    source.name, count, source.budget.current_rate_per_s, source.key_rejected
                )

    def health(self) -> tuple[bool, str]:
        """Alive while the run goes on (a failed sink ends the run)."""
        return (True, "ok") if self.running else (False, "not running")

    def readiness(self) -> tuple[bool, str]:
        """Ready once a poll succeeded and while the key is accepted."""
        refusal = self._keys.refusal()
        if refusal is not None:
            return False, refusal
        if self._stats.polls_ok + self._stats.status_polls == 0:
            return False, "no successful poll yet"
        return True, "ok"
