"""What `--help` tells a new user: every command described, the --since defaults plain, and
values that cannot work refused by argparse (exit 2)."""

from __future__ import annotations

import argparse

import pytest

from follower.cli.main import main
from follower.cli.parser import build_parser


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def help_of(command: str) -> str:
    return " ".join(subcommands()[command].format_help().split())


def test_every_command_has_a_summary_and_a_description() -> None:
    """`follower --help` lists each command with a line, and `follower X --help` describes it."""
    top = " ".join(build_parser().format_help().split())
    for name, parser in subcommands().items():
        assert name in top
        assert parser.description, f"{name} has no description"


def test_since_defaults_are_plain_in_both_helps() -> None:
    """run starts with every pod's whole tail; tail with the last lines, and says how to change."""
    run = help_of("run")
    assert "start (the default here, unlike `follower tail`)" in run
    tail = help_of("tail")
    assert "default 10" in tail and "= --tail -1" in tail and "= --tail 0" in tail
    assert "Unlike `follower run`" in tail


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "soon"])
def test_demo_refuses_a_negative_or_meaningless_duration(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`demo --duration -1` would run for ever: argparse refuses it with exit 2."""
    with pytest.raises(SystemExit) as exited:
        main(["demo", "--duration", value])
    assert exited.value.code == 2
    assert "--duration" in capsys.readouterr().err


def test_tail_refuses_a_history_below_minus_one(capsys: pytest.CaptureFixture[str]) -> None:
    """--tail -2 means nothing: exit 2 naming the flag."""
    with pytest.raises(SystemExit) as exited:
        main(["tail", "some-pipeline", "--tail", "-2"])
    assert exited.value.code == 2
    assert "--tail" in capsys.readouterr().err


def test_since_and_tail_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    """--since and --tail say the same thing two ways: only one at a time."""
    with pytest.raises(SystemExit) as exited:
        main(["tail", "p", "--since", "now", "--tail", "3"])
    assert exited.value.code == 2
    assert "not allowed with" in capsys.readouterr().err
