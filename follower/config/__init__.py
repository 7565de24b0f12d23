"""The follower's configuration: one frozen `Config` from TOML, then environment, then flags.

`tree` holds the configuration tree, nested like the TOML file: each section is the settings
value its component takes (`ScheduleSettings`, `HttpSettings`, `OutputSettings`, ...), so a
default is written once, in that class. `keys` lists the keys and builds the sections, `loader`
reads the file, environment and flags and checks them, `sources` the `[[sources]]` tables, and
`values` holds the converters they share. Callers import from here.
"""

from __future__ import annotations

from follower.config.loader import (
    ENV_BASE_URL,
    ENV_KEY,
    ENV_KEY_FILE,
    ENV_STATE_FILE,
    load_config,
)
from follower.config.sources import DEFAULT_SOURCE
from follower.config.tree import LOG_LEVELS, Config, SourceConfig, only_source
from follower.config.values import DEFAULT_BASE_URL, read_key_file
from follower.core.tracker import Since
from follower.errors import ConfigError
from follower.sinks.settings import OUTPUT_KINDS, OutputKind

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_SOURCE",
    "ENV_BASE_URL",
    "ENV_KEY",
    "ENV_KEY_FILE",
    "ENV_STATE_FILE",
    "LOG_LEVELS",
    "OUTPUT_KINDS",
    "Config",
    "ConfigError",
    "OutputKind",
    "Since",
    "SourceConfig",
    "load_config",
    "only_source",
    "read_key_file",
]
