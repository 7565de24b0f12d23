"""The base URL as GoldRush's docs print it (`.../platform/pipeline-api/`) works everywhere a base
URL is read: flag, GOLDRUSH_BASE_URL, config file and [[sources]], with a note on stderr."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from test_cli import KEY, env_with, follower, served
from test_config import ENV, PIPE, flags, write

from follower.config import load_config
from follower.config.values import normalise_base_url

DOCUMENTED = "https://api.covalenthq.com/platform/pipeline-api/"


@pytest.mark.parametrize(
    ("given", "used"),
    [
        (DOCUMENTED, "https://api.covalenthq.com"),
        ("https://api.covalenthq.com/platform/pipeline-api", "https://api.covalenthq.com"),
        ("https://api.covalenthq.com/platform/pipeline-api//", "https://api.covalenthq.com"),
        ("https://proxy.example/goldrush/platform/pipeline-api/", "https://proxy.example/goldrush"),
        ("https://api.covalenthq.com", "https://api.covalenthq.com"),
        ("https://proxy.example/goldrush/", "https://proxy.example/goldrush/"),
    ],
)
def test_the_api_path_is_taken_off(given: str, used: str) -> None:
    """Only a trailing /platform/pipeline-api(/) goes; any other path (a proxy's) stays."""
    assert normalise_base_url(given) == used


def test_flag_and_environment_are_normalised_with_a_notice() -> None:
    """--base-url and GOLDRUSH_BASE_URL in the documented form: the host, and a note naming it."""
    from_flag = load_config(config_path=None, env=ENV, flags=flags(base_url=DOCUMENTED))
    from_env = load_config(
        config_path=None, env={**ENV, "GOLDRUSH_BASE_URL": DOCUMENTED}, flags=flags()
    )
    for config, origin in ((from_flag, "--base_url: "), (from_env, "GOLDRUSH_BASE_URL: ")):
        assert config.base_url == "https://api.covalenthq.com"
        assert len(config.notices) == 1
        assert config.notices[0].startswith(origin)  # names where the URL came from
        assert "/platform/pipeline-api/" in config.notices[0]
    plain = load_config(config_path=None, env=ENV, flags=flags())
    assert plain.notices == ()


def test_config_file_and_sources_are_normalised(tmp_path: Path) -> None:
    """The top-level base_url and a [[sources]] base_url in the documented form both work."""
    path = write(tmp_path, f"""
base_url = "{DOCUMENTED}"
pipelines = ["{PIPE}"]

[[sources]]
name = "eu"
service_key_env = "EU_KEY"
base_url = "https://eu.example.test/platform/pipeline-api/"
""")
    config = load_config(config_path=path, env={**ENV, "EU_KEY": "k"}, flags={})
    assert [s.base_url for s in config.sources] == [
        "https://api.covalenthq.com", "https://eu.example.test",
    ]
    assert len(config.notices) == 2
    assert config.notices[0].startswith("base_url: ")
    assert config.notices[1].startswith("sources[0] (eu).base_url: ")


async def test_run_with_the_documented_base_url_follows_instead_of_404() -> None:
    """A real `follower run --base-url <sim>/platform/pipeline-api/` gets lines, not 404s."""
    async with served() as sim:
        pipeline_id = sim.world.pipeline_ids[0]
        async with follower(
            "run", "--base-url", f"{sim.base_url}/platform/pipeline-api/", "--pipeline",
            pipeline_id, "--interval", "0.2",
        ) as run:
            await run.wait_for('"event":"log"', count=5)
            run.process.send_signal(signal.SIGTERM)
            assert await run.exit_code() == 0
    assert not [e for e in run.events() if e["event"] == "api_error"]
    assert any("note: --base-url:" in line and "/platform/pipeline-api/" in line
               for line in run.stderr)


async def test_pipelines_with_the_documented_base_url_in_the_environment() -> None:
    """GOLDRUSH_BASE_URL in the documented form: `follower pipelines` lists, exit 0."""
    async with served() as sim:
        env = env_with(GOLDRUSH_SERVICE_KEY=KEY,
                       GOLDRUSH_BASE_URL=f"{sim.base_url}/platform/pipeline-api/")
        async with follower("pipelines", env=env) as run:
            assert await run.exit_code() == 0
    listed = {line.split()[0] for line in run.stdout[1:] if line}
    assert listed == set(sim.world.pipeline_ids)
