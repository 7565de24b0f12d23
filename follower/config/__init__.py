"""The follower's configuration: one frozen `Config` from TOML, then environment, then flags.

`loader` reads and checks the top-level settings, `sources` the `[[sources]]` tables, and
`values` holds the converters both share. The defaults are not written here: `Config` and
`SourceConfig` refer to those of the settings they become (follower/engine/settings.py and
sources.py, the core settings inside them, the API client's and the file sink's), so each is
written once. Callers import from here.
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
    effective_budget_rps,
    load_config,
    only_source,
)
from follower.config.sources import DEFAULT_SOURCE, SourceConfig
from follower.config.values import DEFAULT_BASE_URL, read_key_file
from follower.core.tracker import Since
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
