"""Configuration: sources, precedence, validation that names every bad key, and key handling."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from follower.config import load_config
from follower.errors import ConfigError

PIPE = "pipe_3e8678c5fc9e48a7bf9879ca729"
ENV = {"GOLDRUSH_SERVICE_KEY": "sk-test-123"}


def flags(**values: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"pipelines": [PIPE]}
    base.update(values)
    return base


def problems_of(**kwargs: Any) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as caught:
        load_config(**kwargs)
    return caught.value.problems


def write(tmp_path: Path, text: str, name: str = "follower.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_with_flags_only() -> None:
    """With only a pipeline and a key, every other setting takes its documented default."""
    config = load_config(config_path=None, env=ENV, flags=flags())
    assert config.pipelines == (PIPE,)
    assert config.base_url == "https://api.covalenthq.com"
    assert config.interval_s is None  # adaptive planning
    assert config.since == "start"
    assert not config.discovery.enabled
    assert config.key is not None and config.key.reveal() == "sk-test-123"


def test_toml_file_with_tables(tmp_path: Path) -> None:
    """Keys in [http], [backoff], [tail_errors] and [logging] tables reach the Config."""
    path = write(
        tmp_path,
        f"""
pipelines = ["{PIPE}"]
interval_s = 2
since = "now"
[http]
timeout_s = 3.5
max_in_flight = 4
[backoff]
initial_s = 0.5
max_s = 30
[tail_errors]
patterns = ["^custom failure$"]
[logging]
level = "debug"
""",
    )
    config = load_config(config_path=path, env=ENV, flags={})
    assert (config.interval_s, config.since, config.http.timeout_s) == (2.0, "now", 3.5)
    assert (config.http.max_in_flight, config.backoff.initial_s, config.backoff.max_s) == (
        4, 0.5, 30.0)
    assert config.tail_errors.patterns == ("^custom failure$",)
    assert config.logging.level == "debug"


def test_precedence_flag_over_env_over_file(tmp_path: Path) -> None:
    """A flag beats the environment, which beats the file."""
    path = write(tmp_path, f'pipelines = ["{PIPE}"]\nbase_url = "https://file.example"\n')
    env = {**ENV, "GOLDRUSH_BASE_URL": "https://env.example"}
    assert load_config(config_path=path, env=env, flags={}).base_url == "https://env.example"
    chosen = load_config(config_path=path, env=env, flags={"base_url": "https://flag.example"})
    assert chosen.base_url == "https://flag.example"


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    """One ConfigError lists each bad key with its value and what would be valid."""
    path = write(
        tmp_path,
        'pipelines = ["pipe_ok1", "../etc/passwd"]\ninterval_s = -1\nsince = "yesterday"\n'
        "colour = 3\n[http]\nmax_in_flight = 0\n",
    )
    problems = problems_of(config_path=path, env=ENV, flags={})
    text = "\n".join(problems)
    assert "pipelines[1]: invalid pipeline id '../etc/passwd'" in text
    assert "interval_s: -1 is out of range" in text
    assert "since: 'yesterday' is not one of 'start', 'now'" in text
    assert "colour: unknown key" in text
    assert "http.max_in_flight: 0 is out of range" in text
    assert len(problems) == 5


def test_flag_problems_are_named_as_flags() -> None:
    """A bad flag value is reported under its flag name."""
    problems = problems_of(config_path=None, env=ENV, flags=flags(since="later"))
    assert problems == ("--since: 'later' is not one of 'start', 'now'",)


def test_no_pipelines_means_discovery() -> None:
    """Without --pipeline the follower follows every pipeline the key can see."""
    assert load_config(config_path=None, env=ENV, flags={}).discovery.enabled


def test_no_pipelines_with_discovery_off_and_no_key_are_both_reported() -> None:
    """Nothing to follow and no key: both are named, with the fix."""
    problems = problems_of(config_path=None, env={}, flags={"discovery.enabled": False})
    assert any(p.startswith("pipelines: no pipeline to follow") for p in problems)
    assert any(p.startswith("GOLDRUSH_SERVICE_KEY: no ServiceKey") for p in problems)


@pytest.mark.parametrize(
    ("flags_given", "hostname", "expected"),
    [
        ({"shard.count": 3, "shard.index": 2}, "", (2, 3)),
        ({"shard.count": 3, "shard.from_hostname": True}, "follower-1", (1, 3)),
    ],
)
def test_shard_from_flags_and_hostname(
    flags_given: dict[str, Any], hostname: str, expected: tuple[int, int]
) -> None:
    """The shard index comes from --shard-index or from the hostname's ordinal."""
    config = load_config(config_path=None, env=ENV, flags=flags(**flags_given), hostname=hostname)
    assert (config.shard.index, config.shard.count) == expected


@pytest.mark.parametrize(
    ("flags_given", "hostname", "expected"),
    [
        ({"shard.count": 3, "shard.index": 3}, "", "shard.index"),
        ({"shard.count": 3, "shard.from_hostname": True}, "laptop", "shard.from_hostname"),
    ],
)
def test_bad_shards_are_named(flags_given: dict[str, Any], hostname: str, expected: str) -> None:
    """An index out of range or a hostname without an ordinal is a named config error."""
    problems = problems_of(
        config_path=None, env=ENV, flags=flags(**flags_given), hostname=hostname
    )
    assert problems[0].startswith(f"{expected}: ")


def test_key_in_config_file_is_refused_and_not_echoed(tmp_path: Path) -> None:
    """A key written into the TOML file is rejected, and the error does not repeat the key."""
    path = write(tmp_path, f'pipelines = ["{PIPE}"]\nservice_key = "sk-secret-999"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(config_path=path, env=ENV, flags={})
    assert "service_key: the ServiceKey is never read from the config file" in str(caught.value)
    assert "sk-secret-999" not in str(caught.value)


def test_key_from_file(tmp_path: Path) -> None:
    """GOLDRUSH_SERVICE_KEY_FILE is read and stripped; the path is kept for rotation."""
    key_file = write(tmp_path, "sk-from-file\n", "key")
    config = load_config(
        config_path=None, env={"GOLDRUSH_SERVICE_KEY_FILE": str(key_file)}, flags=flags()
    )
    assert config.key.reveal() == "sk-from-file"
    assert config.key_file == key_file


@pytest.mark.parametrize(
    ("content", "expected"),
    [(None, "does not exist"), ("", "is empty"), ("two words", "whitespace inside the key")],
)
def test_bad_key_files(tmp_path: Path, content: str | None, expected: str) -> None:
    """A missing, empty or garbled key file is named in the error."""
    key_file = tmp_path / "key"
    if content is not None:
        key_file.write_text(content, encoding="utf-8")
    problems = problems_of(
        config_path=None, env={"GOLDRUSH_SERVICE_KEY_FILE": str(key_file)}, flags=flags()
    )
    assert len(problems) == 1
    assert problems[0].startswith("GOLDRUSH_SERVICE_KEY_FILE: key file")
    assert expected in problems[0]


def test_key_and_key_file_together_is_ambiguous(tmp_path: Path) -> None:
    """Both key sources set is refused rather than silently preferring one."""
    key_file = write(tmp_path, "sk-a", "key")
    env = {**ENV, "GOLDRUSH_SERVICE_KEY_FILE": str(key_file)}
    problems = problems_of(config_path=None, env=env, flags=flags())
    assert problems == ("GOLDRUSH_SERVICE_KEY: set either GOLDRUSH_SERVICE_KEY or "
                        "GOLDRUSH_SERVICE_KEY_FILE, not both",)


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://api.covalenthq.com", True),
        ("https://api.covalenthq.com/", True),
        ("http://127.0.0.1:8080", True),
        ("http://localhost:8080", True),
        ("http://[::1]:8080", True),
        ("http://api.covalenthq.com", False),
        ("ftp://api.covalenthq.com", False),
        ("https://user:pw@api.covalenthq.com", False),
        ("not a url", False),
    ],
)
def test_base_url_rules(url: str, allowed: bool) -> None:
    """HTTPS anywhere; plain HTTP only to loopback; no credentials in the URL."""
    if allowed:
        config = load_config(config_path=None, env=ENV, flags=flags(base_url=url))
        assert config.base_url == url.rstrip("/")
    else:
        problems = problems_of(config_path=None, env=ENV, flags=flags(base_url=url))
        assert problems[0].startswith("--base_url") or problems[0].startswith("base_url")


def test_insecure_http_can_be_allowed_explicitly() -> None:
    """allow_insecure_http = true admits plain HTTP to a remote host."""
    config = load_config(
        config_path=None,
        env=ENV,
        flags=flags(base_url="http://api.internal", **{"http.allow_insecure_http": True}),
    )
    assert config.base_url == "http://api.internal"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("interval_s = ", "is not valid TOML"), (None, "does not exist")],
)
def test_unreadable_config_file_is_named(tmp_path: Path, text: str | None, expected: str) -> None:
    """A missing or broken TOML file is named with the reason."""
    path = tmp_path / "follower.toml"
    if text is not None:
        path.write_text(text, encoding="utf-8")
    problems = problems_of(config_path=path, env=ENV, flags=flags())
    assert problems[0].startswith("--config: ") and expected in problems[0]


def test_invalid_tail_error_pattern_is_named() -> None:
    """A bad extra tail-error regex names its index."""
    problems = problems_of(
        config_path=None, env=ENV, flags=flags(**{"tail_errors.patterns": ["ok", "("]})
    )
    assert problems[0].startswith("tail_errors.patterns[1]")


def test_repeated_pipeline_is_followed_once() -> None:
    """A pipeline given twice is followed once, in first-seen order."""
    other = "pipe_aaaa"
    config = load_config(config_path=None, env=ENV, flags=flags(pipelines=[PIPE, other, PIPE]))
    assert config.pipelines == (PIPE, other)


def test_the_example_config_is_valid() -> None:
    """config/follower.toml, as shipped, loads without a problem."""
    path = Path(__file__).parent.parent / "config" / "follower.toml"
    config = load_config(config_path=path, env=ENV, flags={})
    assert config.pipelines == (PIPE,)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({}, 10.0),  # adaptive: the default budget
        ({"interval_s": 1.0, "pipelines": [f"pipe_{i}" for i in range(40)]}, 50.0),
        ({"interval_s": 5.0}, 10.0),  # one pipeline every 5 s fits the default
        ({"interval_s": 1.0, "pipelines": [f"pipe_{i}" for i in range(40)],
          "budget.requests_per_s": 4.0}, 4.0),  # an explicit budget wins
    ],
)
def test_default_budget_keeps_an_explicit_interval(given: dict[str, Any], expected: float) -> None:
    """Without a configured budget, a fixed --interval over many pipelines raises the default."""
    config = load_config(config_path=None, env=ENV, flags=flags(**given))
    assert config.sources[0].settings.budget.requests_per_s == expected


def test_config_defaults_are_the_engines_defaults() -> None:
    """Each default is written once: a Config left at its defaults becomes exactly the engine's
    default settings, the adaptive schedule (no fixed interval) included."""
    from follower.api.secret import ServiceKey
    from follower.config import Config
    from follower.engine.service import run_settings, source_settings
    from follower.engine.settings import RunSettings
    from follower.engine.sources import SourceSettings

    assert RunSettings().interval_s is None and Config().interval_s is None
    assert run_settings(Config()) == RunSettings()
    pipeline = "pipe_" + "a" * 26
    config = Config(key=ServiceKey("k"), pipelines=(pipeline,))
    (settings,) = source_settings(config)
    assert dataclasses.replace(settings, budget=SourceSettings().budget) == SourceSettings(
        pipelines=(pipeline,))
    assert settings.budget.rate_per_s == SourceSettings().budget.rate_per_s


def test_loading_nothing_but_a_key_gives_the_default_config() -> None:
    """`follower run --pipeline P` with no file: every value is Config's default, so the
    defaults the loader checks against are the ones Config holds."""
    from follower.config import Config

    pipeline = "pipe_" + "a" * 26
    config = load_config(config_path=None, env={"GOLDRUSH_SERVICE_KEY": "k", "HOME": "/home/u"},
                         flags={"pipelines": [pipeline]})
    default = Config(key=config.key, pipelines=(pipeline,))
    for name in ("interval_s", "since", "budget", "schedule", "shard", "output", "pods",
                 "discovery", "backoff", "http", "enrich", "tail_errors", "ops", "logging"):
        assert getattr(config, name) == getattr(default, name), name
