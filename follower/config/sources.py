"""`[[sources]]`: several ServiceKeys (each with its base URL, selection and budget) in one process.

A GoldRush key sees only its own group's pipelines and is rate-limited on its own, so a team that
follows several groups configures one table per key:

    [[sources]]
    name = "payments"
    service_key_file = "/run/secrets/payments/key"   # or service_key_env = "PAYMENTS_KEY"
    pipelines = ["pipe_..."]                          # empty: every pipeline the key sees
    budget = { requests_per_s = 4 }
    discovery = { names = ["prod-*"] }

A source inherits the top-level `base_url`, `budget` and `discovery.interval_s`; its selection
(pipelines, discovery filters) is its own. The key is never written in the file itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from follower.api.secret import ServiceKey
from follower.config import values as cv
from follower.engine.sources import DEFAULT_SOURCE, SourceSettings

__all__ = ["DEFAULT_SOURCE", "FIELDS", "Inherited", "SourceConfig", "parse_sources"]

_SOURCE: Final = SourceSettings()
"""The engine's defaults for a source: its budget."""


@dataclass(frozen=True, slots=True)
class SourceConfig:
    """One source, validated: its key (and where it came from), API, selection and budget."""

    name: str
    key: ServiceKey
    base_url: str
    pipelines: tuple[str, ...] = ()
    discover: bool = False
    discover_names: tuple[str, ...] = ()
    discover_projects: tuple[str, ...] = ()
    discover_statuses: tuple[str, ...] = ()
    budget_rps: float = _SOURCE.budget_rps
    budget_burst: int = _SOURCE.budget_burst
    key_file: Path | None = None
    key_env: str | None = None

    @property
    def identity(self) -> tuple[str, str, Path | None, str | None]:
        """What a reload cannot change: the source's name, API and where its key comes from."""
        return (self.name, self.base_url, self.key_file, self.key_env)


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _name(value: Any) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ValueError(
            f"expected a name of letters, digits, '.', '_' or '-' (at most 63), got {value!r}"
        )
    if value == DEFAULT_SOURCE:
        raise ValueError(f"{DEFAULT_SOURCE!r} is reserved for the top-level key; pick another")
    return value


def _env_name(value: Any) -> str:
    if not isinstance(value, str) or not _ENV_NAME.fullmatch(value):
        raise ValueError(f"expected an environment variable name, got {value!r}")
    return value


FIELDS: Final[dict[str, tuple[str, cv.Converter]]] = {
    "name": ("name", _name),  # read first: later problems name the source
    "base_url": ("base_url", cv.string),
    "service_key_file": ("key_file", cv.path),
    "service_key_env": ("key_env", _env_name),
    "pipelines": ("pipelines", cv.string_list),
    "discovery.enabled": ("discover", cv.boolean),
    "discovery.names": ("discover_names", cv.string_list),
    "discovery.projects": ("discover_projects", cv.string_list),
    "discovery.statuses": ("discover_statuses", cv.string_list),
    "budget.requests_per_s": ("budget_rps", cv.number(0.01, 10_000)),
    "budget.burst": ("budget_burst", cv.integer(1, 100_000)),
}

_INLINE_KEYS: Final = {"service_key", "key", "api_key"}


@dataclass(frozen=True, slots=True)
class Inherited:
    """What a source takes from the top level unless it says otherwise."""

    base_url: str
    allow_insecure_http: bool
    budget_rps: float | None
    budget_burst: int
    interval_s: float | None


def parse_sources(
    raw: Any,
    inherited: Inherited,
    env: Mapping[str, str],
    problems: list[str],
    notes: list[str] | None = None,
) -> tuple[SourceConfig, ...]:
    """The `[[sources]]` array of tables, checked; every problem goes to `problems`, and what
    was corrected (a base URL with the API path) to `notes`."""
    if not isinstance(raw, list) or not all(isinstance(table, dict) for table in raw):
        problems.append("sources: expected an array of tables ([[sources]]), one per key")
        return ()
    sources: list[SourceConfig] = []
    for index, table in enumerate(raw):
        source = _parse_one(f"sources[{index}]", table, inherited, env, problems, notes=notes)
        if source is not None:
            sources.append(source)
    _check_distinct(sources, problems)
    return tuple(sources)


def _parse_one(
    where: str,
    table: Mapping[str, Any],
    inherited: Inherited,
    env: Mapping[str, str],
    problems: list[str],
    *,
    notes: list[str] | None = None,
) -> SourceConfig | None:
    values: dict[str, Any] = {}
    before = len(problems)
    flat = cv.flatten(table, FIELDS)
    if "name" not in flat:
        problems.append(f'{where}.name: missing; give each source a name, e.g. name = "payments"')
    else:
        try:
            values["name"] = _name(flat.pop("name"))
            where = f"{where} ({values['name']})"
        except ValueError as exc:
            problems.append(f"{where}.name: {exc}")
    for dotted, value in flat.items():
        if dotted in _INLINE_KEYS:
            problems.append(
                f"{where}.{dotted}: a ServiceKey is never read from the config file; set "
                "service_key_file (a file holding it) or service_key_env (a variable holding it)"
            )
        elif dotted not in FIELDS:
            problems.append(f"{where}.{dotted}: unknown key; valid keys are: {', '.join(FIELDS)}")
        else:
            target, convert = FIELDS[dotted]
            try:
                values[target] = convert(value)
            except ValueError as exc:
                problems.append(f"{where}.{dotted}: {exc}")
    key = _read_key(where, values, env, problems)
    cv.check_selection(
        values, problems, prefix=f"{where}.", nothing="list pipelines or enable discovery"
    )
    values["base_url"] = cv.check_base_url(
        values.get("base_url", inherited.base_url), inherited.allow_insecure_http, problems,
        where=f"{where}.base_url", notes=notes,
    )
    values.setdefault("budget_burst", inherited.budget_burst)
    values.setdefault("budget_rps", _default_budget(inherited, values["pipelines"]))
    if len(problems) > before or key is None:
        return None
    return SourceConfig(key=key, **values)


def _read_key(
    where: str, values: dict[str, Any], env: Mapping[str, str], problems: list[str]
) -> ServiceKey | None:
    key_file, key_env = values.get("key_file"), values.get("key_env")
    if (key_file is None) == (key_env is None):
        problems.append(
            f"{where}: set exactly one of service_key_file (a file holding the key) and "
            "service_key_env (the name of a variable holding it)"
        )
        return None
    if key_file is not None:
        try:
            return ServiceKey(cv.read_key_file(key_file))
        except ValueError as exc:
            problems.append(f"{where}.service_key_file: {exc}")
            return None
    text = env.get(key_env or "", "").strip()
    if not text:
        problems.append(f"{where}.service_key_env: the variable {key_env} is not set or empty")
        return None
    return ServiceKey(text)


def _default_budget(inherited: Inherited, pipelines: tuple[str, ...]) -> float:
    if inherited.budget_rps is not None:
        return inherited.budget_rps
    return cv.default_budget_rps(inherited.interval_s, len(pipelines))


def _check_distinct(sources: list[SourceConfig], problems: list[str]) -> None:
    names = [source.name for source in sources]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"sources: the name {name!r} is used by more than one source")


def check_no_overlap(lists: Iterable[tuple[str, tuple[str, ...]]], problems: list[str]) -> None:
    """A pipeline listed by two sources (name, pipelines) would be followed twice: name it."""
    owner: dict[str, str] = {}
    for name, pipelines in lists:
        for pipeline_id in pipelines:
            first = owner.setdefault(pipeline_id, name)
            if first != name:
                problems.append(
                    f"sources: {pipeline_id} is listed by both {first!r} and {name!r}; "
                    "list each pipeline under one source"
                )
