"""The configuration keys: each dotted TOML key with its converter, and how read values become
the sections of a `Config`.

A key `section.name` fills field `name` of the section's settings class (`schedule.floor_s` is
`ScheduleSettings.floor_s`), so the table holds no defaults and no field names of its own; only
`service_key_file` (`Config.key_file`) and the discovery filters (`DiscoverySettings.selection`)
are spelt differently in the file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Final

from follower.api.settings import HttpSettings
from follower.config.tree import (
    LoggingSettings,
    LogLevel,
    OpsSettings,
    PodSettings,
    TailErrorSettings,
)
from follower.config.values import (
    Converter,
    boolean,
    choice,
    integer,
    listen_address,
    number,
    path,
    state_path,
    string,
    string_list,
)
from follower.core.backoff import BackoffPolicy
from follower.core.budget import BudgetSettings
from follower.core.enrich import EnrichSettings
from follower.core.schedule import ScheduleSettings
from follower.core.sharding import ShardSettings
from follower.core.tracker import Since
from follower.engine.settings import DiscoverySettings
from follower.sinks import files
from follower.sinks.settings import OutputKind, OutputSettings

SECTIONS: Final[dict[str, type[Any]]] = {
    "http": HttpSettings,
    "budget": BudgetSettings,
    "schedule": ScheduleSettings,
    "backoff": BackoffPolicy,
    "discovery": DiscoverySettings,
    "shard": ShardSettings,
    "output": OutputSettings,
    "pods": PodSettings,
    "enrich": EnrichSettings,
    "tail_errors": TailErrorSettings,
    "ops": OpsSettings,
    "logging": LoggingSettings,
}
"""Each TOML table and the settings class its keys fill (a `Config` field of the same name)."""

# The converter raises ValueError with the text that follows "key: " in the error message.
FIELDS: Final[dict[str, Converter]] = {
    "base_url": string,
    "pipelines": string_list,
    "interval_s": number(0.05, 86_400),
    "since": choice(Since),
    "service_key_file": path,
    "state_file": state_path,
    "checkpoint_interval_s": number(0.1, 3_600),
    "shutdown_timeout_s": number(0.0, 600),
    "http.timeout_s": number(0.1, 600),
    "http.max_response_bytes": integer(1024, 1024**3),
    "http.max_in_flight": integer(1, 1024),
    "http.allow_insecure_http": boolean,
    "backoff.initial_s": number(0.01, 3_600),
    "backoff.max_s": number(0.01, 86_400),
    "tail_errors.patterns": string_list,
    "logging.level": choice(LogLevel),
    "discovery.enabled": boolean,
    "discovery.interval_s": number(5.0, 86_400),
    "discovery.names": string_list,
    "discovery.projects": string_list,
    "discovery.statuses": string_list,
    "discovery.page_size": integer(1, 10_000),
    "discovery.max_pages": integer(1, 100_000),
    "discovery.max_pipelines": integer(1, 1_000_000),
    "budget.requests_per_s": number(0.01, 10_000),
    "budget.burst": integer(1, 100_000),
    "schedule.floor_s": number(0.05, 3_600),
    "schedule.ceiling_s": number(0.05, 86_400),
    "schedule.fill_target": number(0.01, 1.0),
    "schedule.probe_s": number(0.05, 3_600),
    "schedule.target_utilization": number(0.0, 1.0),
    "shard.index": integer(0, 100_000),
    "shard.count": integer(1, 100_000),
    "shard.from_hostname": boolean,
    "ops.listen": listen_address,
    "output.kind": choice(OutputKind),
    "output.dir": path,
    "output.layout": choice(files.Layout),
    "output.max_bytes": integer(1024, 1 << 40),
    "output.max_files": integer(2, 10_000),
    "output.fsync": choice(files.FsyncMode),
    "output.fsync_interval_s": number(0.0, 3_600),
    "output.max_line_bytes": integer(64, 16 * 1024 * 1024),
    "pods.partial_flush_s": number(0.0, 3_600),
    "pods.grace_s": number(0.0, 86_400),
    "enrich.parse_json": boolean,
    "enrich.level": boolean,
    "enrich.line_ts": boolean,
}

TOP_LEVEL_NAMES: Final = {"service_key_file": "key_file"}
"""Top-level keys whose `Config` field is named otherwise."""

SELECTION: Final = ("names", "projects", "statuses")
"""The `discovery.*` keys that make up `DiscoverySettings.selection`."""


def build_sections(
    values: Mapping[str, Any], bases: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """`Config` keyword arguments from converted `values` by dotted key: top-level values as
    they are, and each section in `bases` (by default every section, at its defaults) with the
    given keys replaced. `values` must hold only keys of `FIELDS`, without `shard.from_hostname`."""
    given: dict[str, dict[str, Any]] = {}
    built: dict[str, Any] = {}
    for dotted, value in values.items():
        section, _, name = dotted.partition(".")
        if name:
            given.setdefault(section, {})[name] = value
        else:
            built[TOP_LEVEL_NAMES.get(dotted, dotted)] = value
    if bases is None:
        bases = {name: cls() for name, cls in SECTIONS.items()}
    for name, base in bases.items():
        keys = given.pop(name, {})
        if name == "discovery" and any(k in keys for k in SELECTION):
            chosen = {k: keys.pop(k) for k in SELECTION if k in keys}
            keys["selection"] = dataclasses.replace(base.selection, **chosen)
        built[name] = dataclasses.replace(base, **keys)
    if given:
        raise ValueError(f"keys of sections not built: {sorted(given)}")
    return built

