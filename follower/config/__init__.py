"""The follower's configuration: one frozen `Config` from TOML, then environment, then flags.

`loader` reads and checks the top-level settings, `sources` the `[[sources]]` tables, and
`values` holds the converters and defaults both share. Callers import from here.
"""

from __future__ import annotations

from follower.config.loader import (
    ENV_BASE_URL,
    ENV_KEY,
    ENV_KEY_FILE,
    ENV_STATE_FILE,
    OUTPUT_KINDS,
    Config,
    OutputKind,
    Since,
    effective_budget_rps,
    load_config,
    only_source,
)
from follower.config.sources import DEFAULT_SOURCE, SourceConfig
from follower.config.values import DEFAULT_BASE_URL, read_key_file
from follower.errors import ConfigError

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_SOURCE",
    "ENV_BASE_URL",
    "ENV_KEY",
    "ENV_KEY_FILE",
    "ENV_STATE_FILE",
    "OUTPUT_KINDS",
    "Config",
    "ConfigError",
    "OutputKind",
    "Since",
    "SourceConfig",
    "effective_budget_rps",
    "load_config",
    "only_source",
    "read_key_file",
]
