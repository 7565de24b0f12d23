"""The planned-versus-achieved interval check, table-tested on plain numbers."""

from __future__ import annotations

from follower.core.pace import MIN_SAMPLES, PaceMonitor


def feed(monitor: PaceMonitor, planned: float, achieved: float, latency: float, n: int) -> None:
    for i in range(n):
        last = 100.0 * i
        monitor.sent(last + achieved, last + planned, last)
        monitor.answered(latency)


def test_a_kept_plan_says_nothing() -> None:
    """Polls that go when planned (or a little late) report nothing."""
    monitor = PaceMonitor()
    feed(monitor, 1.0, 1.2, 0.1, 64)
    assert monitor.check(8, 30) is None


def test_not_enough_polls_say_nothing() -> None:
    """Fewer than MIN_SAMPLES gaps: too early to judge."""
    monitor = PaceMonitor()
    feed(monitor, 1.0, 30.0, 8.0, MIN_SAMPLES - 1)
    assert monitor.check(8, 30) is None


def test_a_plan_not_kept_is_said_once_then_its_end() -> None:
    """Late polls: one report with the figures, none while it lasts, one when kept again."""
    monitor = PaceMonitor()
    feed(monitor, 1.0, 30.0, 8.0, 64)
    report = monitor.check(8, 30)
    assert report is not None and not report.kept
    assert (report.planned_interval_s, report.achieved_interval_s) == (1.0, 30.0)
    assert (report.max_rate_rps, report.needed_rate_rps, report.cause) == (1.0, 30.0, "latency")
    assert monitor.check(8, 30) is None
    feed(monitor, 1.0, 1.0, 0.1, 64)
    kept = monitor.check(8, 30)
    assert kept is not None and kept.kept


def test_late_for_another_reason_is_not_blamed_on_latency() -> None:
    """Fast answers, late polls (a budget, a backoff): the cause is not latency."""
    monitor = PaceMonitor()
    feed(monitor, 1.0, 10.0, 0.05, 64)
    report = monitor.check(8, 30)
    assert report is not None and report.cause == "other"
