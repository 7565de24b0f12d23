"""Every shell command in README.md and docs/*.md runs, against the embedded simulator.

The convention the documentation follows:

- Shell commands are fenced as ```sh blocks, one command per line (a trailing backslash continues
  a line, `#` starts a comment). A block fenced as bash, shell, console or sh-session fails this
  test: it would escape it.
- Each block runs in the repository's root with this environment's `follower` first on PATH,
  GOLDRUSH_SERVICE_KEY and GOLDRUSH_BASE_URL pointing at a simulator this module starts on a free
  loopback port, and TMPDIR and the state directory inside the test's own folder. `export` lines
  set variables for the rest of their block.
- Addresses are rewritten to that simulator before a command runs: `127.0.0.1:8080` becomes its
  address, and a simulator the docs start (`follower simulate --port 8080`, `make simulate`)
  listens on a free port instead (`--port 0`, `PORT=0`).
- A command that follows (`follower run`, `tail`, `demo`, `simulate`; `make demo`, `make
  simulate`) runs until it shows that it works (an event or a `pod | line` on stdout, an event in
  its output folder, the simulator's `export` line), then gets SIGTERM, as Ctrl-C or `docker
  stop` would give it, and must exit 0. Every other command must exit 0 within its time limit.
- A block that cannot run here is marked on the line right before its fence with
  `<!-- needs: WHAT -->`, WHAT one of NEEDS below; an unknown WHAT fails. The `follower` commands
  of a marked block are still parsed by the CLI's own argument parser, so a renamed flag fails
  there too.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest

from follower.cli.parser import build_parser

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

NEEDS = {
    "real-api": "a real GoldRush ServiceKey and network access",
    "install": "installs packages or builds an image (network, minutes)",
    "docker": "a Docker engine and a registry",
    "kubernetes": "a Kubernetes cluster",
    "slow": "minutes: the test suite itself, lint, types, benchmarks or the image check",
}
MARKER = re.compile(r"<!--\s*needs:\s*([\w-]+)\s*-->")
FOLLOWING = {("follower", "run"), ("follower", "tail"), ("follower", "demo"),
             ("follower", "simulate"), ("make", "demo"), ("make", "simulate")}
READY_S = 30.0     # a following command must show that it works within this
STOP_S = 15.0      # and exit after SIGTERM within this (shutdown_timeout_s is 5)
COMMAND_S = 30.0   # any other command must finish within this


@dataclass(frozen=True)
class Block:
    """One fenced ```sh block: where it is, its marker if any, and its commands."""

    where: str
    needs: str | None
    commands: tuple[str, ...]


def _commands(lines: list[str]) -> tuple[str, ...]:
    """The block's commands: continuation lines joined, blank and comment-only lines left out."""
    commands: list[str] = []
    pending = ""
    for line in lines:
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        command = (pending + line).strip()
        pending = ""
        if command and not command.startswith("#"):
            commands.append(command)
    return tuple(commands)


def _blocks(path: Path) -> Iterator[Block]:
    """The shell blocks of one Markdown file; other languages (toml, json) are not commands."""
    lines = path.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if not line.startswith("```"):
            index += 1
            continue
        language = line[3:].strip()
        end = next(i for i in range(index + 1, len(lines)) if lines[i].startswith("```"))
        where = f"{path.relative_to(ROOT)}:{index + 1}"
        assert language.split()[:1] not in (["bash"], ["shell"], ["console"], ["sh-session"]), (
            f"{where}: fence shell commands as ```sh so that tests/test_docs.py runs them")
        if language == "sh":
            marker = MARKER.fullmatch(lines[index - 1].strip()) if index else None
            yield Block(where, marker.group(1) if marker else None,
                        _commands(lines[index + 1:end]))
        index = end + 1


BLOCKS = [block for path in DOCUMENTS for block in _blocks(path)]


def _words(command: str) -> list[str]:
    """The command's words without leading `VAR=value` assignments."""
    words = shlex.split(command, comments=True)
    while words and re.fullmatch(r"[A-Za-z_]\w*=.*", words[0]):
        words.pop(0)
    return words


def _kind(command: str) -> tuple[str, str]:
    """The program and its first argument, e.g. ("follower", "run")."""
    words = _words(command)
    return (words[0] if words else "", words[1] if len(words) > 1 else "")


class Simulator:
    """`follower simulate` on a free loopback port, for every block of this module."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "follower", "simulate", "--port", "0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        )
        self.base_url = ""
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(READY_S) or not self.base_url:
            self.stop()
            pytest.fail("the simulator did not start")

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:  # read to the end, so the pipe never fills
            found = re.search(r"listening on (http://\S+)", line)
            if found and not self.base_url:
                self.base_url = found.group(1)
                self._ready.set()
        self._ready.set()

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(STOP_S)
        self._reader.join(STOP_S)
        assert self.process.stderr is not None
        self.process.stderr.close()


@pytest.fixture(scope="module")
def simulator() -> Iterator[Simulator]:
    served = Simulator()
    try:
        yield served
    finally:
        served.stop()


@dataclass
class Output:
    """What a running command has written so far, line by line."""

    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    changed: threading.Event = field(default_factory=threading.Event)

    def read(self, stream: IO[str], into: list[str]) -> None:
        for line in stream:
            into.append(line.rstrip("\n"))
            self.changed.set()
        self.changed.set()

    def text(self) -> str:
        return "\n".join(["stdout:", *self.stdout[-20:], "stderr:", *self.stderr[-20:]])


def _is_event(line: str) -> bool:
    try:
        value = json.loads(line)
    except ValueError:
        return False
    return isinstance(value, dict) and "event" in value


def _ready_check(command: str, env: dict[str, str]) -> Callable[[Output], bool]:
    """How a following command shows that it works."""
    words = _words(command)
    if _kind(command)[1] == "simulate":
        return lambda out: any("export GOLDRUSH_SERVICE_KEY=" in line
                               for line in out.stdout + out.stderr)
    if "--output-dir" in words:
        word = words[words.index("--output-dir") + 1]
        expanded = subprocess.run(["bash", "-c", f'printf %s "{word}"'], env=env, cwd=ROOT,
                                  capture_output=True, text=True, check=True).stdout
        folder = ROOT / expanded
        return lambda out: any(_is_event(line) for path in folder.glob("*.jsonl")
                               for line in path.read_text(encoding="utf-8").splitlines())
    return lambda out: any(_is_event(line) or " | " in line for line in out.stdout)


def _descendants(pid: int) -> list[int]:
    """`pid` and every process below it."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found = [pid]
    for current in found:
        found.extend(child for child, parent in parents.items() if parent == current)
    return found


def _stop(process: subprocess.Popen[str]) -> None:
    """SIGTERM to the follower the command started (the leaves: not make or a shell)."""
    tree = _descendants(process.pid)
    parents = set()
    for pid in tree:
        try:
            parents.add(int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1]))
        except OSError:
            continue
    for pid in tree:
        if pid not in parents:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue


def _run(command: str, env: dict[str, str], where: str) -> None:
    """Run one command; a following one until it works, then SIGTERM. It must exit 0."""
    following = _kind(command) in FOLLOWING
    ready = _ready_check(command, env) if following else None
    output = Output()
    with subprocess.Popen(["bash", "-c", command], cwd=ROOT, env=env, text=True,
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, start_new_session=True) as process:
        readers = [threading.Thread(target=output.read, args=(stream, into), daemon=True)
                   for stream, into in ((process.stdout, output.stdout),
                                        (process.stderr, output.stderr))]
        for reader in readers:
            reader.start()
        try:
            if ready is not None:
                _wait_until_ready(process, output, ready, f"{where}: `{command}`")
                _stop(process)
            code = process.wait(STOP_S if following else COMMAND_S)
        except (subprocess.TimeoutExpired, AssertionError):
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise
        finally:
            for reader in readers:
                reader.join(STOP_S)
    assert code == 0, f"{where}: `{command}` exited {code}\n{output.text()}"
    if ready is not None:
        assert ready(output), f"{where}: `{command}` showed nothing\n{output.text()}"


def _wait_until_ready(process: subprocess.Popen[str], output: Output,
                      ready: Callable[[Output], bool], what: str) -> None:
    """Wait for the command's output to pass `ready`, or for it to end on its own."""
    expired = threading.Event()
    timer = threading.Timer(READY_S, expired.set)
    timer.start()
    try:
        while not ready(output) and process.poll() is None:
            output.changed.clear()
            assert not expired.is_set(), f"{what} showed nothing in {READY_S:g} s\n{output.text()}"
            # Woken by every new line; the short bound re-checks an output folder, which no
            # pipe announces, and whether the command has ended.
            output.changed.wait(0.25)
    finally:
        timer.cancel()


def _environment(simulator: Simulator, tmp_path: Path) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items()
           if name not in ("GOLDRUSH_SERVICE_KEY_FILE", "GOLDRUSH_STATE_FILE", "NO_COLOR")}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        GOLDRUSH_SERVICE_KEY="sim-key",
        GOLDRUSH_BASE_URL=simulator.base_url,
        TMPDIR=str(tmp_path),
        PORT="0",  # `make simulate` without PORT=...
    )
    return env


def _to_simulator(command: str, base_url: str) -> str:
    """The command as it runs here: the docs' simulator address is this module's."""
    command = command.replace("http://127.0.0.1:8080", base_url)
    command = re.sub(r"--port 8080\b", "--port 0", command)
    return re.sub(r"\bPORT=8080\b", "PORT=0", command)


def test_every_block_is_fenced_and_marked_as_this_module_knows() -> None:
    """The docs hold shell blocks, and every marker is one this module knows."""
    assert len(BLOCKS) >= 10
    for block in BLOCKS:
        assert block.commands, f"{block.where}: an empty ```sh block"
        assert block.needs is None or block.needs in NEEDS, (
            f"{block.where}: unknown marker needs: {block.needs}; known: {sorted(NEEDS)}")
    assert any(block.needs is None for block in BLOCKS if block.where.startswith("README"))


@pytest.mark.parametrize("block", BLOCKS, ids=[block.where for block in BLOCKS])
def test_documented_commands_work(block: Block, simulator: Simulator, tmp_path: Path) -> None:
    """Each documented command exits 0 against the simulator; a marked block is parsed only."""
    if block.needs is not None:
        _parse_follower_commands(block)
        pytest.skip(f"needs {block.needs}: {NEEDS.get(block.needs, '?')}")
    env = _environment(simulator, tmp_path)
    for documented in block.commands:
        command = _to_simulator(documented, simulator.base_url)
        words = _words(command)
        if words[:1] == ["export"]:
            for assignment in words[1:]:
                name, _, value = assignment.partition("=")
                env[name] = value
            continue
        _run(command, env, block.where)


def _parse_follower_commands(block: Block) -> None:
    """A block that cannot run still names only flags and commands the CLI has."""
    for command in block.commands:
        words = _words(command)
        if words[:1] != ["follower"]:
            continue
        try:
            build_parser().parse_args(words[1:])
        except SystemExit as exc:
            pytest.fail(f"{block.where}: `{command}` is refused by the CLI's parser ({exc})")


def test_check_passes_before_the_first_run(simulator: Simulator, tmp_path: Path) -> None:
    """`follower check` on a machine where no follower has run yet (no state folder) passes."""
    env = _environment(simulator, tmp_path)
    env["XDG_STATE_HOME"] = str(tmp_path / "never-used")
    _run("follower check --look-seconds 1", env, "a new machine")
