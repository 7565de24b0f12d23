"""The tree says which code is pure: follower/core/, and everything it imports from the package,
does no I/O, reads no clock and knows nothing of the async shell (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "follower"

FORBIDDEN_MODULES = frozenset({
    # the async shell's libraries
    "anyio", "aiohttp", "asyncio", "socket", "ssl", "selectors",
    # files, processes and the environment
    "os", "pathlib", "io", "shutil", "tempfile", "subprocess", "fcntl", "signal",
    # the clock: core takes `now` as an argument
    "time",
    # our own diagnostics go to stderr
    "logging", "structlog",
})
FORBIDDEN_PACKAGE = (
    "follower.engine", "follower.api.client", "follower.sinks", "follower.ops", "follower.cli",
)
FORBIDDEN_CALLS = frozenset({"open", "print", "input"})
CLOCK_READS = frozenset({"now", "utcnow", "today"})  # fromtimestamp(x) converts, reads nothing


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_path(name: str) -> Path | None:
    """The file of a `follower...` module, or None when `name` is not one (an attribute)."""
    base = PACKAGE.parent.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported(tree: ast.Module, name: str, *, is_package: bool = False) -> set[str]:
    """Every module `tree` (the module `name`) imports, as absolute dotted names; for `from a
    import b` both `a` and `a.b` (b may be a submodule)."""
    found: set[str] = set()
    package = name if is_package else name.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def problems_in(tree: ast.Module, name: str, *, is_package: bool = False) -> list[str]:
    """What in one module breaks purity: forbidden imports, file or console I/O, clock reads."""
    problems = []
    for module in sorted(imported(tree, name, is_package=is_package)):
        if module.split(".")[0] in FORBIDDEN_MODULES:
            problems.append(f"{name} imports {module}")
        if module.startswith(FORBIDDEN_PACKAGE):
            problems.append(f"{name} imports {module}")
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        if isinstance(node.func, ast.Name) and node.func.id in FORBIDDEN_CALLS:
            problems.append(f"{name}:{node.lineno} calls {node.func.id}()")
        if isinstance(node.func, ast.Attribute) and node.func.attr in CLOCK_READS:
            problems.append(f"{name}:{node.lineno} reads the clock (.{node.func.attr}())")
    return problems


def closure(roots: list[Path]) -> dict[str, tuple[ast.Module, bool]]:
    """The modules `roots` import from the package, transitively, with the packages' own
    `__init__` modules (importing `a.b.c` runs `a/__init__` and `a/b/__init__`)."""
    seen: dict[str, tuple[ast.Module, bool]] = {}
    todo = list(roots)
    while todo:
        path = todo.pop()
        name = module_name(path)
        if name in seen:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        seen[name] = tree, is_package
        parts = name.split(".")
        wanted = [".".join(parts[:i]) for i in range(1, len(parts))]
        wanted += [m for m in imported(tree, name, is_package=is_package)
                   if m.split(".")[0] == "follower"]
        todo += [p for m in wanted if (p := module_path(m)) is not None]
    return seen


def core_modules() -> list[Path]:
    return sorted((PACKAGE / "core").rglob("*.py"))


def test_core_and_what_it_imports_are_pure() -> None:
    """follower/core/ and every package module it reaches import no I/O, async or clock library,
    nothing of the engine, client, sinks, ops or CLI, and call no open/print/datetime.now."""
    modules = closure(core_modules())
    assert "follower.core.differ" in modules and "follower.core.tracker" in modules
    problems = [problem for name, (tree, is_package) in sorted(modules.items())
                for problem in problems_in(tree, name, is_package=is_package)]
    assert problems == []


@pytest.mark.parametrize(
    "source",
    [
        "import anyio",
        "from aiohttp import web",
        "import os.path",
        "from pathlib import Path",
        "from time import monotonic",
        "from datetime import datetime\nx = datetime.now()",
        "from follower.engine.runner import Runner",
        "from follower.api import client",
        "from follower.sinks.jsonlines import JsonLinesSink",
        "from ..ops import metrics",
        "data = open('x').read()",
    ],
)
def test_the_purity_check_sees_each_kind_of_impurity(source: str) -> None:
    """The check is not vacuous: each forbidden import or call in a core module is reported."""
    assert problems_in(ast.parse(source), "follower.core.sample")


def test_every_folder_is_a_package_and_no_two_modules_say_discovery() -> None:
    """Each folder of follower/ has an `__init__.py` (so the wheel and mypy see it), and the
    old `discovery`/`discovering` pair is gone."""
    folders = [p for p in PACKAGE.rglob("*") if p.is_dir() and p.name != "__pycache__"
               and any(p.glob("*.py"))]
    assert all((folder / "__init__.py").is_file() for folder in folders)
    stems = {p.stem for p in PACKAGE.rglob("*.py")}
    assert not {"discovery", "discovering"} <= stems


MAX_LINES = 300
"""A module longer than this states why at its top (a `Size:` paragraph in its docstring)."""


def test_long_modules_say_why_they_are_long() -> None:
    """One concept per module, small enough to read at once: a module over `MAX_LINES` lines
    says, in a `Size:` paragraph of its docstring, why it is one module (or it gets split)."""
    unexplained = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if text.count("\n") <= MAX_LINES:
            continue
        docstring = ast.get_docstring(ast.parse(text)) or ""
        if not any(line.startswith("Size: ") for line in docstring.splitlines()):
            unexplained.append(f"{path.relative_to(PACKAGE.parent)} ({text.count(chr(10))} lines)")
    assert unexplained == []
