"""`[[sources]]`: several ServiceKeys (each with its base URL, selection and budget) in one process.

A GoldRush key sees only its own group's pipelines and is rate-limited on its own, so a team that
follows several groups configures one table per key:

    [[sources]]
    name = "payments"
    service_key_file = "/run/secrets/payments/key"   # or service_key_env = "PAYMENTS_KEY"
    pipelines = ["pipe_..."]                          # empty: every pipeline the key sees
    budget = { requests_per_s = 4 }
    discovery = { names = ["prod-*"] }

A source inherits the top-level `base_url`, `budget` and `discovery.*` (interval and listing
limits); its selection (pipelines, `discovery.enabled` and the filters) is its own. Its keys are
read by the same converters as the top-level ones (follower/config/keys.py) into the same
settings. The key is never written in the file itself.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

from follower.api.secret import ServiceKey
from follower.config import keys
from follower.config import values as cv
from follower.config.tree import Config, SourceConfig
from follower.core.selection import Selection
from follower.engine.sources import DEFAULT_SOURCE, SourceSettings

__all__ = ["DEFAULT_SOURCE", "FIELDS", "SourceConfig", "parse_sources"]

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


_OWN: Final = (
    "pipelines", "discovery.enabled", "discovery.names", "discovery.projects",
    "discovery.statuses", "budget.requests_per_s", "budget.burst",
)
FIELDS: Final[dict[str, cv.Converter]] = {
    "name": _name,  # read first: later problems name the source
    "base_url": keys.FIELDS["base_url"],
    "service_key_file": keys.FIELDS["service_key_file"],
    "service_key_env": _env_name,
    **{key: keys.FIELDS[key] for key in _OWN},
}
"""A source's keys: its name and key variable, and the top-level keys it may set for itself,
read by the same converters."""

_INLINE_KEYS: Final = {"service_key", "key", "api_key"}


def parse_sources(
    raw: Any,
    top: Config,
    env: Mapping[str, str],
    problems: list[str],
    notes: list[str] | None = None,
    *,
    read_keys: list[ServiceKey] | None = None,
) -> tuple[SourceConfig, ...]:
    """The `[[sources]]` array of tables, checked, inheriting from the top level `top`; every
    problem goes to `problems`, and what was corrected (a base URL with the API path) to
    `notes`. Every key read goes to `read_keys`, a failed source's too, so that the problems can be
    masked: a key pasted into another setting would be quoted there."""
    if not isinstance(raw, list) or not all(isinstance(table, dict) for table in raw):
        problems.append("sources: expected an array of tables ([[sources]]), one per key")
        return ()
    sources: list[SourceConfig] = []
    for index, table in enumerate(raw):
        source = _parse_one(f"sources[{index}]", table, top, env, problems, notes=notes,
                            read_keys=read_keys)
        if source is not None:
            sources.append(source)
    _check_distinct(sources, problems)
    return tuple(sources)


def _parse_one(
    where: str,
    table: Mapping[str, Any],
    top: Config,
    env: Mapping[str, str],
    problems: list[str],
    *,
    notes: list[str] | None = None,
    read_keys: list[ServiceKey] | None = None,
) -> SourceConfig | None:
    values: dict[str, Any] = {}
    name = ""
    before = len(problems)
    flat = cv.flatten(table, FIELDS)
    if "name" not in flat:
        problems.append(f'{where}.name: missing; give each source a name, e.g. name = "payments"')
    else:
        try:
            name = _name(flat.pop("name"))
            where = f"{where} ({name})"
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
            try:
                values[dotted] = FIELDS[dotted](value)
            except ValueError as exc:
                problems.append(f"{where}.{dotted}: {exc}")
    key_file, key_env = values.pop("service_key_file", None), values.pop("service_key_env", None)
    key = _read_key(where, key_file, key_env, env, problems)
    if key is not None and read_keys is not None:
        read_keys.append(key)
    cv.check_selection(
        values, problems, prefix=f"{where}.", nothing="list pipelines or enable discovery"
    )
    values.setdefault("discovery.enabled", False)
    base_url = cv.check_base_url(
        values.pop("base_url", top.base_url), top.http.allow_insecure_http, problems,
        where=f"{where}.base_url", notes=notes,
    )
    own_discovery = dataclasses.replace(top.discovery, selection=Selection())
    sections = keys.build_sections(values, {"budget": top.budget, "discovery": own_discovery})
    if len(problems) > before or key is None:
        return None
    pipelines = sections["pipelines"]
    settings = SourceSettings(
        name=name,
        pipelines=pipelines,
        budget=sections["budget"].resolved(top.interval_s, len(pipelines)),
        discovery=sections["discovery"],
    )
    return SourceConfig(key, base_url, settings, key_file=key_file, key_env=key_env)


def _read_key(
    where: str,
    key_file: Any,
    key_env: str | None,
    env: Mapping[str, str],
    problems: list[str],
) -> ServiceKey | None:
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
    wrong = cv.key_flaw(text)
    if wrong is not None:
        problems.append(f"{where}.service_key_env: the variable {key_env} holds {wrong} inside "
                        "the key; set it to the ServiceKey alone")
        return None
    return ServiceKey(text)


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
