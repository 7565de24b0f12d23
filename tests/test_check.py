"""`follower check`: one line per check, ok or FAIL with its fix; exit 0 only when all hold.

Real processes against the simulator (good config, bad key, unreachable API, a budget too small)
and the pure budget estimate on the scheduler's own plans.
"""

from __future__ import annotations

from pathlib import Path

from hostile import ROOT, failure, hostile_api, listing, logs, logs_path
from test_cli import KEY, closed_port, env_with, follower, served

from follower.cli.check import Finding, budget_finding, estimate_budget, render
from follower.core.schedule import PipelinePlan, PodObservation, ScheduleSettings
from follower.simulator.faults import FaultSettings
from follower.simulator.world import SimSettings

LOOK = ("--look-seconds", "1")


def lines_of(stdout: list[str], status: str) -> list[str]:
    return [line for line in stdout if line.startswith(status)]


async def test_good_configuration_passes_every_check() -> None:
    """Against the simulator with its key: every line ok, the pipelines named, exit 0."""
    async with served() as sim, follower("check", "--base-url", sim.base_url, *LOOK) as run:
        assert await run.exit_code(within_s=30) == 0
    checks = [line.split()[1] for line in run.stdout if line.startswith(("ok", "FAIL"))]
    assert checks == ["config:", "state", "key", "api:", "pipelines:", "poll:", "budget:"]
    assert not lines_of(run.stdout, "FAIL")
    text = "\n".join(run.stdout)
    assert f"{len(sim.world.pipeline_ids)} to follow" in text
    for pipeline_id in sim.world.pipeline_ids:
        assert sim.world.info(pipeline_id)["name"] in text
    assert "all checks passed" in text
    assert KEY not in run.everything()


async def test_bad_key_fails_with_401_and_the_fix() -> None:
    """A key the API rejects: `FAIL key` naming the 401 and the variable to set, exit 1."""
    async with served() as sim:
        env = env_with(GOLDRUSH_SERVICE_KEY="not-the-right-key")
        async with follower("check", "--base-url", sim.base_url, *LOOK, env=env) as run:
            assert await run.exit_code(within_s=30) == 1
    failed = lines_of(run.stdout, "FAIL")
    assert len(failed) == 1
    assert failed[0].startswith("FAIL  key:") and "401" in failed[0]
    fix = run.stdout[run.stdout.index(failed[0]) + 1]
    assert fix.strip().startswith("fix:") and "GOLDRUSH_SERVICE_KEY" in fix
    assert "not-the-right-key" not in run.everything()


async def test_unreachable_api_fails_with_the_fix() -> None:
    """Nothing listens at the base URL: `FAIL api` with what to check, exit 1, no traceback."""
    async with follower("check", "--base-url", f"http://127.0.0.1:{closed_port()}", *LOOK) as run:
        assert await run.exit_code(within_s=30) == 1
    failed = lines_of(run.stdout, "FAIL")
    assert len(failed) == 1 and failed[0].startswith("FAIL  api: cannot reach")
    assert "--base-url" in run.stdout[run.stdout.index(failed[0]) + 1]
    assert "Traceback" not in run.everything()


async def test_budget_too_small_fails_with_the_need_and_the_fix() -> None:
    """Busy pods with a short window against a tiny budget: `FAIL budget` with the requests/s
    needed and the budget to set; every other check holds; exit 1."""
    busy = SimSettings(pipelines=3, pods=2, rate=50.0, window=100, line_style="unique", seed=4)
    async with served(settings=busy) as sim, follower(
        "check", "--base-url", sim.base_url, "--budget", "0.2", *LOOK
    ) as run:
        assert await run.exit_code(within_s=30) == 1
    failed = lines_of(run.stdout, "FAIL")
    assert len(failed) == 1 and failed[0].startswith("FAIL  budget:")
    assert "budget 0.2 requests/s" in failed[0]
    assert "--budget" in run.stdout[run.stdout.index(failed[0]) + 1]
    assert len(lines_of(run.stdout, "ok")) == 6  # config, state file, key, api, pipelines, poll


async def test_the_checks_keep_to_the_budget(tmp_path: Path) -> None:
    """An API that answers 429 above 5 requests/s (burst 5), and a budget of 4 requests/s with
    a burst of 4: the 22 requests of the checks (a list, a poll, two looks at 10 pipelines) keep
    to the budget as `run` would, so none is throttled and every check holds. (Sent at once, as
    before, they met the 429. The API's limit is a little above the budget, as it should be:
    the time each request takes to arrive varies, so a client paced at exactly the server's
    rate can still reach it early.)"""
    config = tmp_path / "follower.toml"
    config.write_text("[budget]\nrequests_per_s = 4.0\nburst = 4\n", encoding="utf-8")
    limited = FaultSettings(rate_limit_rps=5.0)
    many = SimSettings(pipelines=12, pods=1, rate=1.0, seed=4)
    async with served(faults=limited, settings=many) as sim, follower(
        "check", "--base-url", sim.base_url, "--config", str(config), *LOOK
    ) as run:
        assert await run.exit_code(within_s=60) == 0, "\n".join(run.stdout)
    assert not lines_of(run.stdout, "FAIL")


async def test_invalid_configuration_exits_2_naming_each_problem() -> None:
    """A bad flag value: a FAIL config line per problem, exit 2, before any request."""
    async with follower("check", "--interval", "0", "--base-url", "ftp://x") as run:
        assert await run.exit_code() == 2
    failed = lines_of(run.stdout, "FAIL")
    assert any("--interval" in line for line in failed)
    assert any("--base-url" in line and "ftp://x" in line for line in failed)


FORGED = "\x1b]0;PWNED\x07\x1b[2J\nok    key: FAKE LINE\r"
"""API text that sets the terminal's title, clears the screen and forges a line of the report."""


async def test_api_text_is_escaped_and_forges_no_line() -> None:
    """A pipeline name, a pod name and an error message holding ESC, BEL, CR and a newline:
    `check` shows them escaped, as `pipelines` and `tail` do, so none reaches the terminal raw
    and the API cannot add a line to the report."""
    async with hostile_api() as api:
        api.script(ROOT, listing([{"id": "pipe_a", "name": f"evil{FORGED}", "project": "p",
                                   "status": "running"}]))
        api.script(logs_path("pipe_a"), logs({f"pod{FORGED}": "one line\n"}),
                   failure(500, f"boom{FORGED}"))
        async with follower("check", "--base-url", api.base_url, "--no-state", *LOOK) as run:
            assert await run.exit_code(within_s=30) == 1
    text = "\n".join(run.stdout)
    for raw in ("\x1b", "\x07", "\r"):
        assert raw not in text
    assert not any("FAKE LINE" in line and "evil" not in line and "pod" not in line
                   and "boom" not in line for line in run.stdout)
    assert "evil" in text and "pod" in text and "boom" in text  # shown, escaped
    assert [line.split()[0] for line in run.stdout] == [
        "ok", "ok", "ok", "ok", "ok", "FAIL", "fix:", "1"
    ], text


def test_estimate_extrapolates_the_sample_with_the_schedule_math() -> None:
    """Two looks 5 s apart at a pod writing 20 lines/s into a 200-line window: the planner polls
    every 0.5 * 200 / 20 = 5 s, so 10 such pipelines need 2 requests/s."""
    settings = ScheduleSettings()
    plan = PipelinePlan()
    plan.observe(0.0, [PodObservation(200, 200)], settings)
    plan.observe(5.0, [PodObservation(99, 200, previous_tail_lines=200)], settings)
    estimate = estimate_budget([plan], settings, followed=10, budget_rps=1.0)
    assert abs(estimate.needed_rps - 2.0) < 1e-9
    assert not estimate.covered
    finding = budget_finding(estimate)
    assert not finding.ok and finding.fix is not None and "at least 3" in finding.fix
    fixed = estimate_budget([plan], ScheduleSettings(fixed_interval_s=2.0), followed=10,
                            budget_rps=10.0, listing_rps=0.5)
    assert fixed.needed_rps == 5.5 and fixed.covered


def test_render_marks_each_check_and_counts_failures() -> None:
    """ok / FAIL columns, the fix under a failure, and a last line with the count."""
    text = render([Finding("api", True, "answered"), Finding("key", False, "401", "set it")])
    assert text.splitlines() == [
        "ok    api: answered", "FAIL  key: 401", "      fix: set it", "1 of 2 checks failed",
    ]


async def test_a_damaged_state_file_fails_with_the_fix(tmp_path: Path) -> None:
    """`run` would refuse to start from a damaged state file: check says so first, exit 1."""
    state = tmp_path / "state.json"
    state.write_text("{not json", encoding="utf-8")
    async with served() as sim, follower(
        "check", "--base-url", sim.base_url, "--state-file", str(state), *LOOK
    ) as run:
        assert await run.exit_code(within_s=30) == 1
    failed = lines_of(run.stdout, "FAIL")
    assert len(failed) == 1 and failed[0].startswith("FAIL  state file:")
    assert "--reset-state" in run.stdout[run.stdout.index(failed[0]) + 1]
