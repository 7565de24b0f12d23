"""The configuration tree: every key fills a field of a settings class, and every default is
written once, in that class (the loader and `Config` only refer to it)."""

from __future__ import annotations

import ast
import dataclasses
import re
import tomllib
from pathlib import Path

from follower.config import Config, load_config
from follower.config import sources as config_sources
from follower.config.keys import FIELDS, SECTIONS, SELECTION, TOP_LEVEL_NAMES
from follower.config.values import flatten
from follower.core.budget import BudgetSettings
from follower.core.tracker import LineSettings
from follower.engine.service import run_settings
from follower.engine.settings import RunSettings
from follower.engine.sources import DEFAULT_SOURCE, SourceSettings

PIPE = "pipe_3e8678c5fc9e48a7bf9879ca729"
CONFIG_PACKAGE = Path(__file__).parent.parent / "follower" / "config"


def field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def test_every_key_fills_a_field_of_its_section() -> None:
    """`schedule.floor_s` is `ScheduleSettings.floor_s`: the key table names no field of its
    own, so a setting cannot be read into one place and defaulted in another."""
    for dotted in FIELDS:
        section, _, name = dotted.partition(".")
        if not name:
            assert TOP_LEVEL_NAMES.get(dotted, dotted) in field_names(Config), dotted
        elif dotted == "shard.from_hostname":  # read by the loader into shard.index
            continue
        elif section == "discovery" and name in SELECTION:
            assert name in field_names(type(SECTIONS["discovery"]().selection)), dotted
        else:
            assert name in field_names(SECTIONS[section]), dotted
    assert set(SECTIONS) <= field_names(Config)


def test_loaded_defaults_are_the_settings_classes_defaults() -> None:
    """With nothing but a key and a pipeline, each section is its settings class at its
    defaults, and the engine gets exactly its own default settings."""
    config = load_config(config_path=None, env={"GOLDRUSH_SERVICE_KEY": "k"},
                         flags={"pipelines": [PIPE]})
    for name, cls in SECTIONS.items():
        assert getattr(config, name) == cls(), name
    assert run_settings(config) == RunSettings()
    assert config.lines() == LineSettings()
    (source,) = config.sources
    assert source.settings == SourceSettings(
        DEFAULT_SOURCE, (PIPE,), BudgetSettings().resolved(None, 1), config.discovery
    )
    assert source.settings.budget.rate_per_s == SourceSettings().budget.rate_per_s


def test_a_source_reads_its_keys_as_the_top_level_does() -> None:
    """`[[sources]]` keys shared with the top level have the same converter (one range, one
    message) and fill the same settings (`SourceSettings.budget`, `.discovery`)."""
    shared = set(config_sources.FIELDS) & set(FIELDS)
    assert {"pipelines", "budget.burst", "discovery.names", "base_url"} <= shared
    for key in shared:
        assert config_sources.FIELDS[key] is FIELDS[key], key


def test_the_config_package_writes_no_number_of_its_own() -> None:
    """No dataclass field under follower/config/ has a number as its default: defaults live in
    the settings classes of the components (a second copy would drift)."""
    found = []
    for module in sorted(CONFIG_PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ClassDef):
                continue
            for statement in node.body:
                if (isinstance(statement, ast.AnnAssign)
                        and isinstance(statement.value, ast.Constant)
                        and type(statement.value.value) in (int, float)):
                    found.append(f"{module.name}: {node.name}.{ast.unparse(statement.target)}")
    assert found == []


def default_of(dotted: str) -> object:
    """The default `Config` holds for key `dotted` (from the settings classes)."""
    section, _, name = dotted.partition(".")
    if not name:
        return getattr(Config(), TOP_LEVEL_NAMES.get(dotted, dotted))
    holder = getattr(Config(), section)
    if section == "discovery" and name in SELECTION:
        holder = holder.selection
    return getattr(holder, name)


def test_the_example_config_states_the_defaults_the_classes_hold() -> None:
    """config/follower.toml writes each key at its default (the documented copy): every value
    it sets is the one the settings classes give, so the example cannot drift from the code."""
    example = Path(__file__).parent.parent / "config" / "follower.toml"
    table = tomllib.loads(example.read_text(encoding="utf-8"))
    table.pop("sources", None)
    given = flatten(table, FIELDS)
    given.pop("pipelines")  # an example id: the default is none (then discovery)
    assert set(given) <= set(FIELDS)
    assert len(given) > 40, "the example sets (nearly) every key"
    special: dict[str, object] = {
        "budget.requests_per_s": BudgetSettings().rate_per_s,  # None: this, or more (interval)
        "shard.from_hostname": False,  # the loader's switch, not a field
    }
    for dotted, value in given.items():
        expected = special[dotted] if dotted in special else default_of(dotted)
        assert FIELDS[dotted](value) == expected, dotted


def documented_defaults() -> list[tuple[str, str]]:
    """(dotted key, default as written) for each key of the defaults table in
    docs/configuration.md; a cell with one default for several keys gives it to each."""
    text = (Path(__file__).parent.parent / "docs" / "configuration.md").read_text("utf-8")
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    found: list[tuple[str, str]] = []
    for row in rows:
        keys_cell, default_cell = re.split(r"(?<!\\)\|", row.strip("|"))[:2]
        keys = re.findall(r"`([a-z_.]+)`", keys_cell)
        while (plain := re.sub(r"\([^()]*\)", "", default_cell)) != default_cell:
            default_cell = plain  # remarks in parentheses (links nest) say nothing of the value
        items = [item.strip() for item in default_cell.split(",")]
        if len(items) == 1:
            items *= len(keys)
        assert len(items) == len(keys), row
        found.extend(zip(keys, items, strict=True))
    return found


def documented_value(written: str) -> object | None:
    """The value a table cell states (a TOML literal or a size), None for words ("adaptive")."""
    if literal := re.fullmatch(r"`(.+)`", written):
        try:
            return tomllib.loads(f"v = {literal.group(1)}")["v"]
        except tomllib.TOMLDecodeError:
            return literal.group(1)  # a string written without its quotes (a URL)
    if size := re.fullmatch(r"(\d+) (KiB|MiB)", written):
        return int(size.group(1)) << (10 if size.group(2) == "KiB" else 20)
    return None


def test_the_documented_defaults_are_the_settings_classes_defaults() -> None:
    """docs/configuration.md's table of keys states each default the settings classes hold
    (where it states a value: "adaptive" or "auto" describe a behaviour)."""
    special: dict[str, object] = {
        "budget.requests_per_s": BudgetSettings().rate_per_s,  # None: this, or more (interval)
        "shard.from_hostname": False,  # the loader's switch, not a field
    }
    checked = 0
    for dotted, written in documented_defaults():
        value = documented_value(written)
        if value is None:
            continue
        assert dotted in FIELDS, dotted
        expected = special[dotted] if dotted in special else default_of(dotted)
        given = FIELDS[dotted](value)
        assert given == expected, f"{dotted}: docs say {written}, the code {expected!r}"
        checked += 1
    assert checked > 35
