"""`follower check`: would `follower run` with this configuration work, and keep up?

Like `promtool check config` or `filebeat test output`: each check is one line, `ok` or `FAIL`,
and every failure says how to fix it. In order, per source (key): the configuration loads (the
CLI does that part), the key is there, the API answers the list request with it, what would be
followed (count, names, shard), one pipeline's logs poll, and whether the request budget covers
what the tails need: two looks `look_s` apart at a sample of the followed pipelines, folded into
the scheduler's own plans (`follower.core.schedule`), give the requests per second the planner would
spend, compared with the budget.

It reuses the daemon's pieces: `make_api` (client and key holder), `listing.list_all` and
`followed_ids`, `sharding.select`, `PipelineTracker` (the differ) and `PipelinePlan`. The checks
send a handful of requests (list pages, one poll, two per sampled pipeline), each within the
source's request budget as `run` spends it (`RequestBudget`): a check must not be the reason a
key's rate limit answers 429.

Size: over 300 lines because it holds one command's checks, one small function each, in the
order they print; they share the findings and their rendering, and apart they would scatter one
command's output over several files.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from follower.api.client import PipelineApi, create_session
from follower.api.listing import ListingTruncated, list_all
from follower.api.secret import redact_known
from follower.clock import Clock
from follower.config import ENV_KEY, ENV_KEY_FILE, Config, SourceConfig
from follower.config.values import DEFAULT_BASE_URL
from follower.core import sharding
from follower.core.budget import RequestBudget
from follower.core.model import LogsSnapshot, PipelineInfo, PipelinePage
from follower.core.schedule import PipelinePlan, ScheduleSettings, demand_per_s
from follower.core.selection import followed_ids
from follower.core.tail_errors import TailErrorMatcher
from follower.core.tracker import PipelineTracker
from follower.engine import checkpoint
from follower.engine.service import make_api
from follower.engine.sources import take_token
from follower.errors import (
    ApiError,
    AuthError,
    ForbiddenError,
    NetworkError,
    NotFoundError,
    StateFileError,
    ThrottledError,
)
from follower.sinks.terminal import printable

DEFAULT_LOOK_S: Final = 5.0
"""Seconds between the two looks that measure the line rates (the scheduler's own probe)."""
DEFAULT_SAMPLE: Final = 10
"""Pipelines looked at twice for the budget estimate; the rest are assumed alike."""
NAMES_SHOWN: Final = 8
LIST_PAGE_SIZE: Final = 100


@dataclass(frozen=True, slots=True)
class Finding:
    """One check's outcome: its name, whether it holds, what was seen, and the fix if not."""

    check: str
    ok: bool
    detail: str
    fix: str | None = None


def render(findings: Sequence[Finding]) -> str:
    """The report for people: `ok    name: detail`, `FAIL  name: detail` and its `fix:` line.

    Details quote the API (pipeline and pod names, error messages), so every text goes through
    the terminal view's `printable`, as `pipelines` and `tail` do: an escape sequence could
    drive the terminal, and a newline would let the API forge a line of the report. They quote
    the configuration too (the state file's path), where an operator may have pasted the key:
    every key the process has read is masked.
    """
    lines: list[str] = []
    for finding in findings:
        status = "ok" if finding.ok else "FAIL"
        lines.append(f"{status:<5} {_shown(finding.check)}: {_shown(finding.detail)}")
        if not finding.ok and finding.fix:
            lines.append(f"      fix: {_shown(finding.fix)}")
    passed = sum(finding.ok for finding in findings)
    failed = len(findings) - passed
    lines.append(
        "all checks passed" if failed == 0 else f"{failed} of {len(findings)} checks failed"
    )
    return "\n".join(lines)


def _shown(text: str) -> str:
    return printable(redact_known(text))


def config_failure(problems: Sequence[str]) -> list[Finding]:
    """The findings for a configuration that does not load: one per problem."""
    return [
        Finding("config", False, problem, "correct the value named above (flag, environment "
                "variable or config file key); `follower run --help` lists every flag")
        for problem in problems
    ]


# --- the budget estimate (pure) ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BudgetEstimate:
    """Requests per second the planner would need, against the budget."""

    needed_rps: float
    budget_rps: float
    followed: int
    sampled: int
    busiest_lps: float
    """Lines per second of the busiest pod seen in the sample."""
    window: int | None
    """The smallest tail window measured in the sample (None: no tail held a line)."""

    @property
    def covered(self) -> bool:
        """Whether the budget covers the need."""
        return self.needed_rps <= self.budget_rps


def estimate_budget(
    plans: Sequence[PipelinePlan],
    settings: ScheduleSettings,
    *,
    followed: int,
    budget_rps: float,
    listing_rps: float = 0.0,
) -> BudgetEstimate:
    """The requests/s that polling `followed` pipelines needs, extrapolated from the sampled
    `plans` (each folded with two looks), plus `listing_rps` for discovery's re-listing."""
    per_pipeline = demand_per_s(plans, settings) / len(plans) if plans else 0.0
    if settings.fixed_interval_s is not None:
        per_pipeline = 1.0 / settings.fixed_interval_s
    windows = [plan.window for plan in plans if plan.window is not None]
    return BudgetEstimate(
        needed_rps=per_pipeline * followed + listing_rps,
        budget_rps=budget_rps,
        followed=followed,
        sampled=len(plans),
        busiest_lps=max((plan.rate_lps for plan in plans), default=0.0),
        window=min(windows) if windows else None,
    )


def budget_finding(estimate: BudgetEstimate) -> Finding:
    """The budget check's line, with the fix (a higher budget, or fewer pipelines) when short."""
    window = "no tail held a line" if estimate.window is None else f"window {estimate.window}"
    detail = (
        f"about {estimate.needed_rps:.2f} requests/s needed for {estimate.followed} pipelines "
        f"(2 looks at {estimate.sampled} of them: busiest pod {estimate.busiest_lps:.1f} "
        f"lines/s, {window}); budget {estimate.budget_rps:g} requests/s"
    )
    if estimate.covered:
        return Finding("budget", True, detail)
    enough = math.ceil(estimate.needed_rps * 1.25)
    fix = (
        f"raise budget.requests_per_s (--budget) to at least {enough} if the key's rate limit "
        "allows it, or follow fewer pipelines with this key (--pipeline, discovery.names); "
        "short of it, the busiest tails overflow between polls and show gaps"
    )
    return Finding("budget", False, detail, fix)


# --- the checks (I/O) ----------------------------------------------------------------------------


def state_file_finding(path: Path, *, default: bool = False) -> Finding:
    """Whether `follower run` could start from the state file and checkpoint to it. At the
    default location (`default`) run creates a missing folder, so a missing folder is fine."""
    if default and not path.parent.exists():
        return Finding("state file", True,
                       f"{str(path)!r} does not exist yet (first start); run creates its folder")
    try:
        checkpoint.check_writable(path)
        saved = checkpoint.load(path)
    except StateFileError as exc:
        return Finding("state file", False, str(exc),
                       "fix or move the file, or start once with --reset-state")
    what = "does not exist yet (first start)" if saved is None else f"holds {len(saved)} pipelines"
    return Finding("state file", True, f"{str(path)!r} {what}; its folder is writable")


def _key_origin(source: SourceConfig) -> str:
    if source.key_file is not None:
        return f"read from the file {str(source.key_file)!r}"
    if source.key_env is not None:
        return f"read from ${source.key_env}"
    return f"read from ${ENV_KEY}"


def api_failure(error: ApiError, base_url: str) -> Finding:
    """The API check's FAIL line for `error`, naming the fix."""
    where = f"{base_url} answered {error}"
    if isinstance(error, AuthError):
        return Finding("key", False, f"the API rejected the ServiceKey (401): {where}",
                       f"set {ENV_KEY} (or {ENV_KEY_FILE}) to a valid, unrevoked ServiceKey of "
                       "this group")
    if isinstance(error, ForbiddenError):
        return Finding("key", False, f"the key is not allowed (403): {where}",
                       "use a ServiceKey (Pipeline API key), not a regular GoldRush API key")
    if isinstance(error, NetworkError):
        return Finding("api", False, f"cannot reach {base_url}: {error.message}",
                       f"check --base-url / GOLDRUSH_BASE_URL / base_url (the API is "
                       f"{DEFAULT_BASE_URL}), DNS, proxy and firewall")
    if isinstance(error, NotFoundError):
        return Finding("api", False, f"{base_url} has no Pipeline API (404)",
                       f"set the base URL to the host only, e.g. {DEFAULT_BASE_URL}")
    if isinstance(error, ThrottledError):
        return Finding("api", False, f"throttled (429): {where}",
                       "another process is using this key's rate limit; lower its budget or "
                       "try again")
    return Finding("api", False, where, "the API failed; try again later, or check the base URL")


class _Paced:
    """The API calls of the checks, each when the source's budget has a token for it."""

    def __init__(self, api: PipelineApi, budget: RequestBudget, clock: Clock) -> None:
        self._api, self._budget, self._clock = api, budget, clock

    async def list_page(self, page_number: int, page_size: int | None) -> PipelinePage:
        await take_token(self._budget, self._clock)
        return await self._api.list_page(page_number, page_size)

    async def logs(self, pipeline_id: str) -> LogsSnapshot:
        await take_token(self._budget, self._clock)
        return await self._api.logs(pipeline_id)


async def _listing(api: _Paced) -> tuple[list[PipelineInfo], int, bool]:
    """Every listed pipeline, how many pages that took, and whether the listing was cut."""
    pages = 0

    async def page(number: int, size: int | None) -> PipelinePage:
        nonlocal pages
        pages += 1
        return await api.list_page(number, size)

    try:
        items = await list_all(page, LIST_PAGE_SIZE)
    except ListingTruncated as partial:
        return partial.items, pages, True
    return items, pages, False


def _names(ids: Sequence[str], names: dict[str, str]) -> str:
    shown = [names.get(pipeline_id, pipeline_id) for pipeline_id in ids[:NAMES_SHOWN]]
    more = len(ids) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def _describe_poll(snapshot: LogsSnapshot, matcher: TailErrorMatcher) -> str:
    if not snapshot.pods:
        return "no pods (paused, or no replicas yet)"
    parts = []
    for pod in snapshot.pods:
        error = matcher.match(pod.logs)
        if error is not None:
            parts.append(f"{pod.pod}: tail error ({error.splitlines()[0]})")
        else:
            parts.append(f"{pod.pod}: {pod.logs.count(chr(10))} lines")
    return f"{len(snapshot.pods)} pod(s): " + "; ".join(parts)


@dataclass(slots=True)
class _Looks:
    """Two looks at the sampled pipelines, folded into the scheduler's plans."""

    plans: dict[str, PipelinePlan]
    trackers: dict[str, PipelineTracker]
    settings: ScheduleSettings


async def _look(api: _Paced, looks: _Looks, clock: Clock) -> None:
    for pipeline_id, tracker in looks.trackers.items():
        now = clock.monotonic()
        applied = tracker.apply(await api.logs(pipeline_id), now)
        if applied.pods_with_logs or not applied.tail_errors:
            looks.plans[pipeline_id].observe(now, applied.observations, looks.settings)


async def check_source(
    config: Config,
    source: SourceConfig,
    clock: Clock,
    *,
    look_s: float = DEFAULT_LOOK_S,
    sample: int = DEFAULT_SAMPLE,
) -> list[Finding]:
    """Every check of one source, in order; stops at the first that leaves nothing to check."""
    label = "" if len(config.sources) == 1 else f"[{source.name}] "
    findings = [Finding(f"{label}key source", True, f"{_key_origin(source)} (never printed)")]
    matcher = TailErrorMatcher(config.tail_errors.patterns)
    async with create_session() as session:
        budget = source.settings.budget
        api = _Paced(
            make_api(config, session, clock, source),
            RequestBudget(budget.rate_per_s, budget.burst),
            clock,
        )
        sent = clock.monotonic()
        try:
            listed, pages, truncated = await _listing(api)
        except ApiError as error:
            failure = api_failure(error, source.base_url)
            return [*findings, dataclasses.replace(failure, check=label + failure.check)]
        took_ms = (clock.monotonic() - sent) * 1000
        findings.append(Finding(
            f"{label}api", True,
            f"{source.base_url} answered the list with this key ({pages} page(s), "
            f"{took_ms:.0f} ms)",
        ))
        names = {info.id: info.name for info in listed}
        discovery = source.settings.discovery
        wanted = followed_ids(source.settings.pipelines, listed if discovery.enabled else [],
                              discovery.selection)
        mine = sharding.select(wanted, config.shard.index, config.shard.count)
        shard = ("not sharded" if config.shard.count == 1
                 else f"shard index {config.shard.index} of {config.shard.count} shards")
        if not mine:
            findings.append(Finding(
                f"{label}pipelines", False,
                f"nothing to follow: {len(listed)} listed, {len(wanted)} selected, 0 in {shard}",
                "list pipelines (--pipeline pipe_...), widen discovery.names / projects / "
                "statuses, or check that the key belongs to the pipelines' group",
            ))
            return findings
        cut = " (listing cut at the page cap)" if truncated else ""
        findings.append(Finding(
            f"{label}pipelines", True,
            f"{len(mine)} to follow ({len(listed)} listed{cut}, {len(wanted)} selected, {shard})"
            f": {_names(mine, names)}",
        ))
        first = mine[0]
        try:
            snapshot = await api.logs(first)
        except ApiError as error:
            failure = api_failure(error, source.base_url)
            if isinstance(error, NotFoundError):
                failure = Finding("poll", False, f"{first}: not found (404) with this key",
                                  "remove it from the pipelines, or use a key of its group")
            return [*findings, dataclasses.replace(failure, check=f"{label}poll")]
        findings.append(Finding(
            f"{label}poll", True,
            f"{names.get(first, first)} ({first}): {_describe_poll(snapshot, matcher)}",
        ))
        settings = dataclasses.replace(config.schedule, fixed_interval_s=config.interval_s)
        sampled = mine[: max(1, sample)]
        looks = _Looks(
            plans={pipeline_id: PipelinePlan() for pipeline_id in sampled},
            trackers={pipeline_id: PipelineTracker(pipeline_id, "start", matcher)
                      for pipeline_id in sampled},
            settings=settings,
        )
        try:
            await _look(api, looks, clock)
            await clock.sleep(look_s)
            await _look(api, looks, clock)
        except ApiError as error:
            failure = api_failure(error, source.base_url)
            return [*findings, dataclasses.replace(failure, check=f"{label}budget")]
    listing_rps = pages / discovery.interval_s if discovery.enabled else 0.0
    estimate = estimate_budget(
        list(looks.plans.values()), settings, followed=len(mine),
        budget_rps=source.settings.budget.rate_per_s, listing_rps=listing_rps,
    )
    finding = budget_finding(estimate)
    findings.append(dataclasses.replace(finding, check=label + finding.check))
    return findings


async def run_checks(
    config: Config,
    clock: Clock,
    *,
    config_path: str | None = None,
    look_s: float = DEFAULT_LOOK_S,
    sample: int = DEFAULT_SAMPLE,
) -> list[Finding]:
    """The configuration's summary line, then every source's checks."""
    where = "defaults, environment and flags" if config_path is None else repr(config_path)
    sources = ", ".join(
        f"{source.name} ({source.base_url}, "
        f"budget {source.settings.budget.rate_per_s:g} requests/s)"
        for source in config.sources
    )
    findings = [Finding("config", True, f"valid ({where}); source(s): {sources}")]
    if config.state_file is not None:
        findings.append(state_file_finding(config.state_file, default=config.state_file_default))
    for source in config.sources:
        findings.extend(
            await check_source(config, source, clock, look_s=look_s, sample=sample)
        )
    return findings
