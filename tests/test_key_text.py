"""The ServiceKey as text an operator types or pastes: a key file written with a byte order mark,
a control character caught in the key, and (further down) the key pasted into another setting.

Real `follower` processes against the simulator, as users meet them; the key file rotated to a
bad key is driven in process, on the harness's fake clock.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import simulated
from structlog.testing import capture_logs
from test_cli import KEY, closed_port, env_with, follower, served

from follower.api.secret import MASK, ServiceKey
from follower.simulator.world import SimSettings
from follower.testing import MemorySink

LOOK = ("--look-seconds", "1")


async def test_a_bom_at_the_start_of_a_key_file_is_not_part_of_the_key(tmp_path: Path) -> None:
    """A key file saved with a UTF-8 byte order mark (as Notepad and PowerShell write one): the
    key after it is the key, and every check holds."""
    key_file = tmp_path / "key"
    key_file.write_bytes(b"\xef\xbb\xbf" + KEY.encode() + b"\r\n")
    env = env_with(GOLDRUSH_SERVICE_KEY_FILE=str(key_file))
    async with served() as sim, follower(
        "check", "--base-url", sim.base_url, "--no-state", *LOOK, env=env
    ) as run:
        assert await run.exit_code(within_s=30) == 0, "\n".join(run.stdout)
    assert not [line for line in run.stdout if line.startswith("FAIL")]


def key_env(where: str, key: str, tmp_path: Path) -> dict[str, str]:
    """The environment that gives `key` through GOLDRUSH_SERVICE_KEY or a key file."""
    if where == "GOLDRUSH_SERVICE_KEY":
        return env_with(GOLDRUSH_SERVICE_KEY=key)
    key_file = tmp_path / "key"
    key_file.write_bytes(key.encode() + b"\n")
    return env_with(GOLDRUSH_SERVICE_KEY_FILE=str(key_file))


@pytest.mark.parametrize("where", ["GOLDRUSH_SERVICE_KEY", "GOLDRUSH_SERVICE_KEY_FILE"])
@pytest.mark.parametrize(
    ("key", "what"),
    [("cqt_SeCrEt\x07Key42", "a control character"), ("cqt_SeCrEt\x1bKey42", "a control character"),
     ("cqt_SeCrEt Key42", "whitespace"), ("cqt_SeCrEt\u200bKey42", "a control character")],
)
async def test_a_key_with_a_control_character_is_a_bad_configuration(
    tmp_path: Path, where: str, key: str, what: str
) -> None:
    """No request could carry such a key (it is refused before any is sent, which looked like a
    revoked key): `run` and `check` exit 2 naming the variable, what is wrong and the fix."""
    base_url = f"http://127.0.0.1:{closed_port()}"
    env = key_env(where, key, tmp_path)
    async with follower("run", "--base-url", base_url, "--pipeline", "pipe_a", env=env) as run:
        assert await run.exit_code() == 2
    line = "\n".join(run.stderr)
    assert f"{where}:" in line and f"holds {what}" in line and "alone" in line, line
    async with follower("check", "--base-url", base_url, "--no-state", env=env) as check:
        assert await check.exit_code() == 2
    failed = [line for line in check.stdout if line.startswith("FAIL")]
    assert len(failed) == 1 and f"config: {where}:" in failed[0], check.stdout
    assert "Key42" not in run.everything() + check.everything()


async def test_a_key_file_turning_bad_at_runtime_keeps_the_key_in_use(tmp_path: Path) -> None:
    """Rotation: the same key rewritten with a byte order mark is still that key, and a key file
    rewritten with a control character in the key is reported and ignored (the key in use stays,
    polling goes on), as an unreadable key file is."""
    key_file = tmp_path / "key"
    key_file.write_text("e2e-key\n", encoding="utf-8")  # the harness's valid key
    sink = MemorySink()
    logs_at: dict[int, int] = {}

    def rotate(step: int) -> None:
        logs_at[step] = len(sink.of_kind("log"))
        if step == 3:
            key_file.write_bytes(b"\xef\xbb\xbfe2e-key\n")
        if step == 8:
            key_file.write_bytes(b"e2e-\x07key\n")

    async with simulated(SimSettings(pipelines=1, pods=1, rate=5.0, seed=3)) as sim:
        config = sim.config(key=ServiceKey("e2e-key"), key_file=key_file)
        with capture_logs() as logs:
            await sim.follow(config, sink, steps=16, on_step=rotate)
    events = [entry["event"] for entry in logs]
    assert "service_key_rejected" not in events and "service_key_reloaded" not in events
    failed = [entry for entry in logs if entry["event"] == "service_key_reload_failed"]
    assert len(failed) == 1 and "control character" in failed[0]["error"]
    assert not sink.of_kind("api_error")
    assert len(sink.of_kind("log")) > logs_at[8] > logs_at[3]


# --- the key pasted into another setting ---------------------------------------------------------

PASTED = "cqt_SeCrEtKey42"
"""The key, pasted where a URL, a pipeline id or a path belongs."""


def leaks(text: str) -> bool:
    """The key in any letter case (the masking finds it so)."""
    return PASTED.casefold() in text.casefold()


@pytest.mark.parametrize("where", ["GOLDRUSH_SERVICE_KEY", "GOLDRUSH_SERVICE_KEY_FILE"])
@pytest.mark.parametrize(
    ("route", "expected"),
    [
        ("check GOLDRUSH_BASE_URL", 2), ("run GOLDRUSH_BASE_URL", 2), ("run --pipeline", 2),
        ("tail --base-url", 2), ("tail --source", 2), ("pipelines --base-url upper-cased", 2),
        ("run base_url in the config file", 2), ("run GOLDRUSH_STATE_FILE", 2),
        ("check GOLDRUSH_STATE_FILE", 1), ("run usage: --interval", 2),
        ("check usage: a stray argument", 2),
    ],
)
async def test_the_key_pasted_into_another_setting_is_masked_in_the_error(
    tmp_path: Path, where: str, route: str, expected: int
) -> None:
    """Each message about a setting the key was pasted into shows the mask in its place, for
    every command, whichever variable holds the key."""
    env = key_env(where, PASTED, tmp_path)
    closed = f"http://127.0.0.1:{closed_port()}"
    config = tmp_path / "follower.toml"
    config.write_text(f'base_url = "{PASTED}"\n', encoding="utf-8")
    args = {
        "check GOLDRUSH_BASE_URL": ["check", "--no-state"],
        "run GOLDRUSH_BASE_URL": ["run", "--pipeline", "pipe_a", "--no-state"],
        "run --pipeline": ["run", "--pipeline", PASTED, "--base-url", closed],
        "tail --base-url": ["tail", "pipe_a", "--base-url", PASTED],
        "tail --source": ["tail", "pipe_a", "--source", PASTED, "--base-url", closed],
        "pipelines --base-url upper-cased": ["pipelines", "--base-url", PASTED.upper()],
        "run base_url in the config file": ["run", "--config", str(config), "--pipeline",
                                            "pipe_a"],
        "run GOLDRUSH_STATE_FILE": ["run", "--pipeline", "pipe_a", "--base-url", closed],
        "check GOLDRUSH_STATE_FILE": ["check", "--base-url", closed, *LOOK],
        "run usage: --interval": ["run", "--pipeline", "pipe_a", "--interval", PASTED],
        "check usage: a stray argument": ["check", PASTED.lower()],
    }[route]
    if "GOLDRUSH_BASE_URL" in route:
        env["GOLDRUSH_BASE_URL"] = PASTED
    if "GOLDRUSH_STATE_FILE" in route:
        env["GOLDRUSH_STATE_FILE"] = str(tmp_path / "gone" / PASTED)
    async with follower(*args, env=env) as run:
        assert await run.exit_code(within_s=30) == expected, run.everything()
    assert not leaks(run.everything()), run.everything()
    assert MASK in run.everything()
