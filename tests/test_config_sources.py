"""`[[sources]]`: several keys in one configuration, each problem named with its source."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_config import ENV, PIPE, problems_of, write

from follower.config import load_config
from follower.config.sources import DEFAULT_SOURCE

PIPE_B = "pipe_b0b0b0b0b0b0b0b0b0b0b0b0b0"


def key_file(tmp_path: Path, text: str = "sk-from-file") -> Path:
    path = tmp_path / "payments.key"
    path.write_text(text + "\n", encoding="utf-8")
    return path


def test_sources_alone_need_no_top_level_key(tmp_path: Path) -> None:
    """Two sources, keys from a file and from a named variable; inherited base URL and budget;
    no GOLDRUSH_SERVICE_KEY needed since the top level follows nothing."""
    path = write(tmp_path, f"""
base_url = "https://api.example.test"
[budget]
requests_per_s = 7.0
burst = 3

[[sources]]
name = "payments"
service_key_file = "{key_file(tmp_path)}"
pipelines = ["{PIPE}"]

[[sources]]
name = "analytics"
service_key_env = "ANALYTICS_KEY"
base_url = "https://eu.example.test/"
budget = {{ requests_per_s = 2.5 }}
discovery = {{ names = ["prod-*"], statuses = ["running"] }}
""")
    config = load_config(config_path=path, env={"ANALYTICS_KEY": "sk-analytics"}, flags={})
    payments, analytics = config.sources
    assert config.key is None
    assert (payments.name, payments.key.reveal(), payments.settings.pipelines) == (
        "payments", "sk-from-file", (PIPE,)
    )
    assert payments.base_url == "https://api.example.test"
    budget, discovery = payments.settings.budget, payments.settings.discovery
    assert (budget.requests_per_s, budget.burst, discovery.enabled) == (7.0, 3, False)
    assert analytics.key.reveal() == "sk-analytics"
    assert analytics.base_url == "https://eu.example.test"
    budget, discovery = analytics.settings.budget, analytics.settings.discovery
    assert (budget.requests_per_s, budget.burst) == (2.5, 3)
    assert discovery.enabled and discovery.selection.names == ("prod-*",)
    assert discovery.selection.statuses == ("running",)


def test_top_level_pipelines_add_the_default_source(tmp_path: Path) -> None:
    """--pipeline with a sources file: the top-level key follows them as source "default"."""
    path = write(tmp_path, f"""
[[sources]]
name = "payments"
service_key_file = "{key_file(tmp_path)}"
""")
    config = load_config(config_path=path, env=ENV, flags={"pipelines": [PIPE_B]})
    default, payments = config.sources
    assert default.name == DEFAULT_SOURCE and default.settings.pipelines == (PIPE_B,)
    assert default.key.reveal() == "sk-test-123"
    assert payments.settings.discovery.enabled and payments.settings.pipelines == ()
    assert problems_of(config_path=path, env={}, flags={"pipelines": [PIPE_B]})[0].startswith(
        "GOLDRUSH_SERVICE_KEY: no ServiceKey"
    )


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ('service_key_env = "K"', "sources[0].name: missing"),
        ('name = "default"\nservice_key_env = "K"', "'default' is reserved"),
        ('name = "has space"\nservice_key_env = "K"', "sources[0].name: expected a name"),
        ('name = "x"', "sources[0] (x): set exactly one of service_key_file"),
        ('name = "x"\nservice_key_env = "K"\nservice_key_file = "/k"', "set exactly one"),
        ('name = "x"\nservice_key = "sk-inline"', "sources[0] (x).service_key: a ServiceKey is"),
        ('name = "x"\nservice_key_env = "UNSET"', "the variable UNSET is not set or empty"),
        ('name = "x"\nservice_key_file = "/nonexistent/k"', "service_key_file: key file"),
        ('name = "x"\nservice_key_env = "K"\nbase_url = "http://10.1.2.3"',
         "sources[0] (x).base_url: 'http://10.1.2.3' uses plain http"),
        ('name = "x"\nservice_key_env = "K"\npipelines = ["nope"]', "sources[0] (x).pipelines[0]"),
        ('name = "x"\nservice_key_env = "K"\ndiscovery = { enabled = false }',
         "sources[0] (x).pipelines: no pipeline to follow"),
        ('name = "x"\nservice_key_env = "K"\nbudget = { requests_per_s = 0 }',
         "sources[0] (x).budget.requests_per_s: 0 is out of range"),
        ('name = "x"\nservice_key_env = "K"\ncolour = "red"', "sources[0] (x).colour: unknown"),
    ],
)
def test_a_bad_source_is_named_with_the_fix(tmp_path: Path, table: str, expected: str) -> None:
    path = write(tmp_path, f"[[sources]]\n{table}\n")
    problems = problems_of(config_path=path, env={"K": "sk-k"}, flags={})
    assert any(expected in problem for problem in problems), problems
    assert not any("sk-inline" in problem for problem in problems)  # never echoed


def test_names_must_differ_and_pipelines_belong_to_one_source(tmp_path: Path) -> None:
    path = write(tmp_path, f"""
[[sources]]
name = "a"
service_key_env = "K"
pipelines = ["{PIPE}"]
[[sources]]
name = "a"
service_key_env = "K"
pipelines = ["{PIPE_B}"]
[[sources]]
name = "c"
service_key_env = "K"
pipelines = ["{PIPE}"]
""")
    problems = problems_of(config_path=path, env={"K": "sk-k"}, flags={})
    assert "sources: the name 'a' is used by more than one source" in problems
    assert any(f"{PIPE} is listed by both 'a' and 'c'" in problem for problem in problems)
    overlap_with_default = problems_of(
        config_path=write(tmp_path, f'[[sources]]\nname = "b"\nservice_key_env = "K"\n'
                                    f'pipelines = ["{PIPE}"]\n', "b.toml"),
        env={"K": "sk-k", **ENV}, flags={"pipelines": [PIPE]},
    )
    assert any("listed by both 'default' and 'b'" in problem for problem in overlap_with_default)


def test_sources_must_be_tables(tmp_path: Path) -> None:
    problems = problems_of(config_path=write(tmp_path, 'sources = ["a"]\n'), env=ENV, flags={})
    assert any("sources: expected an array of tables" in problem for problem in problems)
