"""The Grafana dashboard and the Prometheus alert rules in deploy/: they load, and every metric
they name is one a live `follower run --listen` process exports."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families
from test_cli import follower, run_args, served
from test_ops import get

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "goldrush-follower.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"
METRIC = re.compile(r"\bfollower_[a-z_]+\b")
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count",
                                                             "_created"), "gauge": ("",)}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    exprs = [t["expr"] for panel in dashboard()["panels"] for t in panel["targets"]]
    exprs += [v["definition"] for v in dashboard()["templating"]["list"] if "definition" in v]
    return exprs


def test_the_dashboard_loads_with_unique_panels_and_queries() -> None:
    """Valid JSON, a uid, panels with unique ids, each with at least one PromQL query."""
    board = dashboard()
    assert board["uid"] == "goldrush-follower" and board["title"]
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    assert all(panel["targets"] and all(t["expr"] for t in panel["targets"])
               for panel in board["panels"])


def test_the_alert_rules_load_and_say_what_to_do() -> None:
    """Valid YAML in Prometheus' rule-file shape: each alert with expr, for, a severity and a
    summary and description; unique names."""
    loaded = rules()
    names = [rule["alert"] for rule in loaded]
    assert len(names) == len(set(names))
    for rule in loaded:
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


async def test_every_metric_named_is_exported_by_a_live_process(tmp_path: Path) -> None:
    """Scrape /metrics of a real `follower run --listen` against the simulator: each metric in
    the dashboard and the rules is there (`up` is Prometheus' own)."""
    async with served() as sim:
        ids = sim.world.pipeline_ids
        args = run_args(sim.base_url, ids, "--listen", "127.0.0.1:0", "--state-file",
                        str(tmp_path / "state.json"))
        async with follower(*args) as run:
            await run.wait_for("ops_server_listening", where="stderr")
            line = next(line for line in run.stderr if "ops_server_listening" in line)
            match = re.search(r'"url": "(http://[^"]+)"', line)
            assert match is not None
            await run.wait_for('"event":"log"', count=20)
            status, text = await get(f"{match.group(1)}/metrics")
            run.process.send_signal(signal.SIGTERM)
            assert await run.exit_code() == 0
    assert status == 200
    exported = {
        family.name + suffix
        for family in text_string_to_metric_families(text)
        for suffix in SUFFIXES.get(family.type, ("",))
    }
    named = {name for expr in dashboard_exprs() for name in METRIC.findall(expr)}
    named |= {name for rule in rules() for name in METRIC.findall(rule["expr"])}
    assert named, "no metric found in the dashboard or the rules"
    assert named <= exported, sorted(named - exported)
    for wanted in ("follower_events_total", "follower_budget_shortfall_per_second",
                   "follower_api_errors_total", "follower_pipelines_in_state",
                   "follower_key_rejected", "follower_checkpoint_age_seconds",
                   "follower_request_duration_seconds_bucket"):
        assert wanted in named, f"{wanted} is on neither the dashboard nor the rules"
