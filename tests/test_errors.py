"""The error hierarchy: every error that can end the process carries its documented exit code
and one line, and the CLI maps any `FollowerError` by them alone."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import Any

import pytest

import follower
from follower import errors
from follower.api.listing import ListingTruncated
from follower.cli import main as cli
from follower.config import Config
from follower.errors import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    EXIT_START,
    ApiError,
    ConfigError,
    FileSinkError,
    FollowerError,
    NotFoundError,
    OutputFolderError,
    SinkClosedError,
    SinkError,
    StateFileError,
    UnknownPipelineError,
)
from follower.testing import MemorySink

DOCUMENTED = {EXIT_FAILURE, EXIT_CONFIG, EXIT_START}
"""The codes an error may end the process with (docs/operations.md); 0 and 130 are no error."""


def every_follower_error() -> set[type[FollowerError]]:
    """Every subclass of FollowerError the package defines, wherever it lives."""
    for module in pkgutil.walk_packages(follower.__path__, "follower."):
        importlib.import_module(module.name)
    found: set[type[FollowerError]] = set()
    todo: list[type[FollowerError]] = [FollowerError]
    while todo:
        cls = todo.pop()
        found.add(cls)
        todo.extend(cls.__subclasses__())
    return {cls for cls in found if cls.__module__.startswith("follower.")}


def test_every_follower_error_carries_a_documented_exit_code() -> None:
    """Whatever module defines it, a FollowerError ends the process with 1, 2 or 3."""
    found = every_follower_error()
    assert {ConfigError, StateFileError, SinkClosedError, FileSinkError, OutputFolderError,
            ApiError, NotFoundError, ListingTruncated, UnknownPipelineError} <= found
    for cls in found:
        assert cls.exit_code in DOCUMENTED, cls


@pytest.mark.parametrize(("error", "code"), [
    (ConfigError(["interval_s: expected a number"]), EXIT_CONFIG),
    (StateFileError(Path("state.json"), "not valid JSON"), EXIT_CONFIG),
    (OutputFolderError("cannot create the output folder /x"), EXIT_START),
    (FileSinkError("cannot write /x/events.jsonl"), EXIT_FAILURE),
    (SinkClosedError("the output was closed by its reader (broken pipe)"), EXIT_FAILURE),
    (NotFoundError("no such pipeline", status=404), EXIT_FAILURE),
    (ListingTruncated([], 100, "discovery.max_pages"), EXIT_FAILURE),
    (UnknownPipelineError("no pipeline named 'x'"), EXIT_FAILURE),
])
def test_each_error_has_the_code_docs_operations_gives_it(error: FollowerError, code: int) -> None:
    """The table of docs/operations.md, error by error: config and state file 2, the output
    folder at start 3, everything at run time 1."""
    assert error.exit_code == code


def test_sink_errors_share_one_base() -> None:
    """A new sink's errors end the run like the others by subclassing SinkError."""
    assert issubclass(SinkClosedError, SinkError) and issubclass(FileSinkError, SinkError)
    assert issubclass(OutputFolderError, FileSinkError)


def test_the_one_line_is_the_message_unless_the_error_says_more() -> None:
    """describe() is str() by default; the output folder names its flag, a cut listing the keys
    that raise its caps."""
    assert ConfigError(["a: b"]).describe() == str(ConfigError(["a: b"]))
    assert OutputFolderError("cannot list x").describe() == "--output-dir: cannot list x"
    cut = ListingTruncated([], 3, "discovery.max_pages")
    assert cut.describe().startswith(f"{cut}; raise discovery.max_pages")


class Invented(FollowerError):
    """An error the CLI has never heard of."""

    exit_code = EXIT_START

    def describe(self) -> str:
        return "an invented failure, said in one line"


@pytest.fixture(autouse=True)
def _diagnostics_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """The commands below would point structlog at this test's captured stderr for good, and
    later tests would log to a closed file: they keep the diagnostics as they are."""
    monkeypatch.setattr(cli, "_configure_diagnostics", lambda level, config: None)


def exit_of(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as stopped:
        cli.main(argv)
    assert isinstance(stopped.value.code, int)
    return stopped.value.code


def test_the_cli_maps_any_follower_error_by_its_code_and_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An error no CLI code names ends `follower run` with its own exit code and line."""

    def load(ns: Any) -> Config:
        raise Invented("x")

    monkeypatch.setattr(cli, "_load", load)
    assert exit_of(["run"]) == EXIT_START
    assert capsys.readouterr().err == "follower: an invented failure, said in one line\n"


def test_a_runtime_failure_ends_the_run_with_exit_1_and_says_what_was_kept(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An exit-1 error raised while following is reported as a stop, with what it left."""

    class Failed(FollowerError):
        """A runtime failure of some new component."""

    async def follow(config: Config, **kwargs: Any) -> None:
        raise Failed("the new component gave up")

    monkeypatch.setattr(cli, "_load", lambda ns: Config(key=None, pipelines=()))
    monkeypatch.setattr(cli, "build_sink", lambda config, clock: MemorySink())
    monkeypatch.setattr(cli, "follow", follow)
    assert exit_of(["run", "--log-level", "error"]) == EXIT_FAILURE
    assert capsys.readouterr().err.endswith(
        "follower: stopping: the new component gave up; the checkpoint holds what was written\n"
    )


def test_pipelines_maps_any_follower_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`follower pipelines` ends with the error's code and line, whatever the error."""

    async def rows(config: Config, clock: Any) -> list[Any]:
        raise Invented("x")

    monkeypatch.setattr(cli, "_people_config", lambda ns: Config(key=None, pipelines=()))
    monkeypatch.setattr(cli, "pipeline_rows", rows)
    assert exit_of(["pipelines"]) == EXIT_START
    assert capsys.readouterr().err.endswith("follower: an invented failure, said in one line\n")


def test_errors_module_documents_every_exit_code() -> None:
    """The exit codes live with the errors, as docs/operations.md lists them."""
    assert (errors.EXIT_OK, errors.EXIT_FAILURE, errors.EXIT_CONFIG, errors.EXIT_START,
            errors.EXIT_INTERRUPTED) == (0, 1, 2, 3, 130)
