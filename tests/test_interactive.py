"""`follower tail` and `follower pipelines` as people run them: piped, on a terminal, Ctrl-C,
beside a `follower run`."""

from __future__ import annotations

import os
import pty
import signal
import sys
from pathlib import Path

import anyio
from test_cli import KEY, env_with, follower, run_args, served

from follower.simulator.world import SimSettings
from follower.sinks.terminal import short_pod


async def test_tail_by_name_piped_has_no_colour_and_ends_on_ctrl_c() -> None:
    """Piped output: `name/pod | line`, no escape codes; filters apply; SIGINT exits 0."""
    async with served() as sim:
        name = sim.world.info(sim.world.pipeline_ids[0])["name"]
        async with follower(
            "tail", name, "--base-url", sim.base_url, "--since", "start", "--interval", "0.2",
            "--exclude", "DEBUG",
        ) as run:
            await run.wait_for(" | ", count=10)
            run.process.send_signal(signal.SIGINT)
            assert await run.exit_code() == 0
    shown = [line for line in run.stdout if " | " in line]
    pods = set(sim.world.pod_names(sim.world.pipeline_ids[0], sim.world.start + 5))
    assert {line.split(" | ", 1)[0] for line in shown} <= {
        short_pod(sim.world.pipeline_ids[0], pod) for pod in pods
    }
    assert any(line.startswith(f"+ {name} ") for line in run.stdout)
    assert not any("\x1b[" in line for line in run.stdout)
    assert not any("DEBUG" in line.split(" | ", 1)[1] for line in shown)
    assert KEY not in run.everything()


async def test_tail_json_output_is_the_run_event_stream() -> None:
    """--output json prints the same JSON events as `follower run`."""
    async with served() as sim:
        pipeline_id = sim.world.pipeline_ids[0]
        async with follower(
            "tail", pipeline_id, "--base-url", sim.base_url, "--since", "start",
            "--output", "json", "--interval", "0.2",
        ) as run:
            await run.wait_for('"event":"log"', count=5)
            run.process.send_signal(signal.SIGINT)
            assert await run.exit_code() == 0
    assert {e["pipeline_id"] for e in run.events()} == {pipeline_id}


async def run_on_a_terminal(
    args: list[str], extra_env: dict[str, str], *, marker: bytes | None = b" | ", count: int = 5
) -> str:
    """Run `follower` with stdout on a pseudo-terminal until it printed `count` lines holding
    `marker` (then SIGINT), or with no marker until it exits by itself; its text."""
    controller, terminal = pty.openpty()
    process = await anyio.open_process(
        [sys.executable, "-m", "follower", *args],
        env=env_with(GOLDRUSH_SERVICE_KEY=KEY, **extra_env), stdout=terminal,
    )
    os.close(terminal)
    output = b""
    signalled = False
    with anyio.fail_after(30):
        while True:  # read until the terminal closes: a full one would block the process
            if marker is not None and not signalled and output.count(marker) >= count:
                process.send_signal(signal.SIGINT)
                signalled = True
            await anyio.wait_readable(controller)
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the process closed the terminal (exited)
                chunk = b""
            if not chunk:
                break
            output += chunk
        assert await process.wait() == 0
    os.close(controller)
    return output.decode(errors="replace")


async def test_tail_on_a_terminal_colours_pods_unless_no_color() -> None:
    """On a TTY each pod gets a colour; NO_COLOR turns colours off."""
    async with served() as sim:
        args = ["tail", sim.world.pipeline_ids[0], "--base-url", sim.base_url, "--since",
                "start", "--interval", "0.2"]
        coloured = await run_on_a_terminal(args, {})
        plain = await run_on_a_terminal(args, {"NO_COLOR": "1"})
    assert "\x1b[" in coloured
    assert "\x1b[" not in plain


async def test_unknown_pipeline_name_is_a_clear_error() -> None:
    """A name no pipeline has: exit 1 and a sentence saying so."""
    async with served() as sim, follower(
        "tail", "no-such-pipeline", "--base-url", sim.base_url
    ) as run:
        assert await run.exit_code() == 1
    assert "no pipeline named 'no-such-pipeline'" in "\n".join(run.stderr)


async def test_pipelines_table_shows_phase_and_replicas() -> None:
    """`follower pipelines` prints an aligned row per pipeline with phase and ready/replicas."""
    async with served() as sim, follower("pipelines", "--base-url", sim.base_url) as run:
        assert await run.exit_code() == 0
    header, *rows = [line for line in run.stdout if line]
    assert header.split() == ["ID", "NAME", "PROJECT", "STATUS", "PHASE", "READY"]
    assert len(rows) == len(sim.world.pipeline_ids)
    assert all("RUNNING" in row and "2/2" in row for row in rows)
    assert {row.split()[0] for row in rows} == set(sim.world.pipeline_ids)


UNIQUE = SimSettings(pipelines=1, pods=2, rate=20.0, window=200, line_style="unique")


async def test_tail_leaves_the_default_state_file_to_run(tmp_path: Path) -> None:
    """`follower tail` keeps no state: the lines it showed are not skipped by a later plain
    `follower run` (same XDG state directory), which starts with every pod's whole tail."""
    env = env_with(GOLDRUSH_SERVICE_KEY=KEY, XDG_STATE_HOME=str(tmp_path / "xdg"))
    async with served(settings=UNIQUE) as sim:
        pipeline_id = sim.world.pipeline_ids[0]
        async with follower(
            "tail", pipeline_id, "--base-url", sim.base_url, "-o", "json", "--interval", "0.2",
            env=env,
        ) as tailing:
            await tailing.wait_for('"event":"log"', count=40)
            tailing.process.send_signal(signal.SIGINT)
            assert await tailing.exit_code() == 0
        assert not (tmp_path / "xdg" / "goldrush-follower" / "state.json").exists()
        async with follower(*run_args(sim.base_url, [pipeline_id]), env=env) as running:
            await running.wait_for('"event":"log"', count=40)
            running.process.send_signal(signal.SIGTERM)
            assert await running.exit_code() == 0
    shown = [(e["pod"], e["message"]) for e in tailing.events() if e["event"] == "log"]
    emitted = {(e["pod"], e["message"]) for e in running.events() if e["event"] == "log"}
    assert shown[:10] and set(shown[:10]) <= emitted  # tail's first look, still in the window


async def test_tail_works_while_run_holds_the_default_state_file(tmp_path: Path) -> None:
    """A `follower run` holding the default state file does not stop a `follower tail` of the
    same pipeline, which needs no state file."""
    env = env_with(GOLDRUSH_SERVICE_KEY=KEY, XDG_STATE_HOME=str(tmp_path / "xdg"))
    async with served(settings=UNIQUE) as sim:
        pipeline_id = sim.world.pipeline_ids[0]
        async with follower(*run_args(sim.base_url, [pipeline_id]), env=env) as running:
            await running.wait_for('"event":"log"')
            async with follower(
                "tail", pipeline_id, "--base-url", sim.base_url, "--interval", "0.2", env=env,
            ) as tailing:
                await tailing.wait_for(" | ", count=5)
                tailing.process.send_signal(signal.SIGINT)
                assert await tailing.exit_code() == 0
            running.process.send_signal(signal.SIGTERM)
            assert await running.exit_code() == 0
    assert "state file" not in "\n".join(tailing.stderr)
