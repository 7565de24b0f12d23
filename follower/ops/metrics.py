"""Prometheus metrics of one follower process, on a registry of its own.

The runner and poller update these as they work; `follower.ops.server` serves them on `/metrics`. A
registry per `Metrics` (not prometheus-client's global one) keeps tests and several runners in
one process from sharing counters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from follower.core.lifecycle import Phase

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """Every metric the follower exports; methods say what happened, in the follower's words."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._polls = Counter(
            "follower_polls", "Requests answered, by endpoint and outcome (ok or the error kind)",
            ["endpoint", "outcome"], registry=r,
        )
        self._events = Counter(
            "follower_events", "Events written, by kind (log = lines emitted)", ["kind"], registry=r
        )
        self._api_errors = Counter(
            "follower_api_errors", "Failed requests by error kind", ["error"], registry=r
        )
        self._latency = Histogram(
            "follower_request_duration_seconds", "Time from sending a request to its answer",
            ["endpoint"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self._tokens = Counter(
            "follower_budget_requests", "Requests sent against the request budget", registry=r
        )
        self.budget_rate = Gauge(
            "follower_budget_rate_per_second",
            "The budget's current rate (lower than configured after 429s)", registry=r,
        )
        self.budget_shortfall = Gauge(
            "follower_budget_shortfall_per_second",
            "Requests per second the plan needs beyond the budget (0 when covered)", registry=r,
        )
        self.pipelines = Gauge("follower_pipelines", "Pipelines followed", registry=r)
        self.pods = Gauge("follower_pods", "Pods followed", registry=r)
        self._states = Gauge(
            "follower_pipelines_in_state", "Pipelines by lifecycle state", ["state"], registry=r
        )
        self.key_rejected = Gauge(
            "follower_key_rejected", "1 while the API rejects the ServiceKey (401)", registry=r
        )
        self._checkpoint_age = Gauge(
            "follower_checkpoint_age_seconds", "Seconds since the last checkpoint was saved",
            registry=r,
        )
        self._source_pipelines = Gauge(
            "follower_source_pipelines", "Pipelines followed, by source (with several sources)",
            ["source"], registry=r,
        )
        self._source_rate = Gauge(
            "follower_source_budget_rate_per_second",
            "Each source's current budget rate (with several sources)", ["source"], registry=r,
        )
        self._source_key_rejected = Gauge(
            "follower_source_key_rejected",
            "1 while the API rejects the source's ServiceKey (with several sources)",
            ["source"], registry=r,
        )
        self._interval = Gauge(
            "follower_poll_interval_seconds",
            "Mean gap between two polls of a pipeline over the recent polls, as planned and as "
            "achieved", ["kind"], registry=r,
        )
        self._planned = self._interval.labels("planned")
        self._achieved = self._interval.labels("achieved")
        self._answered: dict[tuple[str, str], tuple[Counter, Histogram]] = {}
        self._written: dict[str, Counter] = {}

    def polled(self, endpoint: str, outcome: str, seconds: float) -> None:
        """A request was answered (or failed) after `seconds`."""
        pair = self._answered.get((endpoint, outcome))
        if pair is None:  # labels() validates and takes a lock: once per pair, not per request
            pair = (self._polls.labels(endpoint, outcome), self._latency.labels(endpoint))
            self._answered[endpoint, outcome] = pair
        polls, latency = pair
        polls.inc()
        latency.observe(seconds)
        if outcome != "ok":
            self._api_errors.labels(outcome).inc()

    def pace(self, planned_s: float, achieved_s: float) -> None:
        """The planned and achieved interval between polls of a pipeline."""
        self._planned.set(planned_s)
        self._achieved.set(achieved_s)

    def sent(self) -> None:
        """A request took a token from the budget."""
        self._tokens.inc()

    def wrote(self, kinds: Mapping[str, int]) -> None:
        """Events were written to the sink: how many of each kind."""
        for kind, count in kinds.items():
            counter = self._written.get(kind)
            if counter is None:
                counter = self._written[kind] = self._events.labels(kind)
            counter.inc(count)

    def states(self, phases: Iterable[Phase]) -> None:
        """The lifecycle state of every followed pipeline."""
        counts = dict.fromkeys(Phase, 0)
        for phase in phases:
            counts[phase] += 1
        for phase, count in counts.items():
            self._states.labels(phase.value).set(count)

    def source(self, name: str, pipelines: int, rate_per_s: float, key_rejected: bool) -> None:
        """One source's share: its pipelines, its budget's current rate, its key's state."""
        self._source_pipelines.labels(name).set(pipelines)
        self._source_rate.labels(name).set(rate_per_s)
        self._source_key_rejected.labels(name).set(1 if key_rejected else 0)

    def checkpoint_age_from(self, age: Callable[[], float]) -> None:
        """Read the checkpoint age when scraped (NaN before the first checkpoint)."""
        self._checkpoint_age.set_function(age)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
