"""The configuration tree: `Config`, nested like the TOML file, and `SourceConfig`, one key.

Each section is the settings value its component takes (`schedule` is the core's
`ScheduleSettings`, `http` the client's `HttpSettings`, `output` the sinks' `OutputSettings`, ...),
so a default is written once, in that class, and the engine takes the section as it is. The few
sections no component owns (`pods`, `tail_errors`, `ops`, `logging`) are defined here; `pods`
refers to the defaults of the `LineSettings` it becomes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, get_args

from follower.api.secret import ServiceKey, masker
from follower.api.settings import HttpSettings
from follower.config.values import DEFAULT_BASE_URL
from follower.core.backoff import BackoffPolicy
from follower.core.budget import BudgetSettings
from follower.core.enrich import EnrichSettings
from follower.core.schedule import ScheduleSettings
from follower.core.sharding import ShardSettings
from follower.core.tracker import LineSettings, Since
from follower.engine.settings import DiscoverySettings, RunSettings
from follower.engine.sources import DEFAULT_SOURCE, SourceSettings
from follower.errors import ConfigError
from follower.sinks.settings import OutputSettings

_RUN: Final = RunSettings()
_LINES: Final = LineSettings()

LogLevel = Literal["debug", "info", "warning", "error"]
LOG_LEVELS: Final[tuple[str, ...]] = get_args(LogLevel)


@dataclass(frozen=True, slots=True)
class PodSettings:
    """`pods.*`: when a line still being written is flushed, when a vanished pod is dropped."""

    partial_flush_s: float = _LINES.partial_flush_s
    grace_s: float = _LINES.pod_grace_s


@dataclass(frozen=True, slots=True)
class TailErrorSettings:
    """`tail_errors.*`: patterns added to the built-in set (follower/core/tail_errors.py)."""

    patterns: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class OpsSettings:
    """`ops.*`: where the ops server (/metrics, /healthz, /readyz) listens; None: not at all."""

    listen: tuple[str, int] | None = None


@dataclass(frozen=True, slots=True)
class LoggingSettings:
    """`logging.*`: the level of the daemon's own diagnostics on stderr."""

    level: LogLevel = "info"


@dataclass(frozen=True, slots=True)
class SourceConfig:
    """One source, validated: its key (and where it came from), its API, and the settings the
    engine's `Source` takes (name, selection, budget)."""

    key: ServiceKey
    base_url: str
    settings: SourceSettings = field(default_factory=SourceSettings)
    key_file: Path | None = None
    key_env: str | None = None

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def identity(self) -> tuple[str, str, Path | None, str | None]:
        """What a reload cannot change: the source's name, API and where its key comes from."""
        return (self.name, self.base_url, self.key_file, self.key_env)


@dataclass(frozen=True, slots=True)
class Config:
    """Everything `follower run` needs, validated: top-level keys, then one field per section."""

    key: ServiceKey | None = None
    """The top-level key; None when only `[[sources]]` are followed."""
    pipelines: tuple[str, ...] = ()
    base_url: str = DEFAULT_BASE_URL
    key_file: Path | None = None
    """The file the top-level key was read from (re-read when it changes); None: the variable."""
    interval_s: float | None = _RUN.interval_s
    """Fixed seconds between polls of a pipeline; None plans each poll from what tails show."""
    since: Since = _RUN.since
    state_file: Path | None = None
    """Where checkpoints go; None: no state. `load_config` defaults it to the XDG state
    directory (`state_file_default`), so a plain `follower run` keeps its place."""
    state_file_default: bool = False
    """`state_file` is the default location, whose folder the follower may create (None there:
    no default location could be found, neither XDG_STATE_HOME nor HOME being set)."""
    checkpoint_interval_s: float = _RUN.checkpoint_interval_s
    shutdown_timeout_s: float = _RUN.shutdown_timeout_s
    http: HttpSettings = field(default_factory=HttpSettings)
    budget: BudgetSettings = field(default_factory=BudgetSettings)
    """The top-level key's budget, and what `[[sources]]` inherit."""
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    discovery: DiscoverySettings = field(default_factory=DiscoverySettings)
    """The top-level key's discovery; `[[sources]]` inherit all but `enabled` and `selection`."""
    shard: ShardSettings = field(default_factory=ShardSettings)
    output: OutputSettings = field(default_factory=OutputSettings)
    pods: PodSettings = field(default_factory=PodSettings)
    enrich: EnrichSettings = field(default_factory=EnrichSettings)
    tail_errors: TailErrorSettings = field(default_factory=TailErrorSettings)
    ops: OpsSettings = field(default_factory=OpsSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    extra_sources: tuple[SourceConfig, ...] = ()
    """The `[[sources]]` tables: more keys, each with its own API, selection and budget."""
    source: str = field(default="defaults", compare=False)
    notices: tuple[str, ...] = field(default=(), compare=False)
    """What loading corrected and the user should hear of (a base URL given with the API path)."""

    @property
    def sources(self) -> tuple[SourceConfig, ...]:
        """Every source to follow: the top-level one (when it has a key), then `[[sources]]`."""
        if self.key is None:
            return self.extra_sources
        settings = SourceSettings(
            name=DEFAULT_SOURCE,
            pipelines=self.pipelines,
            budget=self.budget.resolved(self.interval_s, len(self.pipelines)),
            discovery=self.discovery,
        )
        default = SourceConfig(self.key, self.base_url, settings, key_file=self.key_file)
        return (default, *self.extra_sources)

    def lines(self) -> LineSettings:
        """How pods' output becomes events: `output.max_line_bytes`, `enrich.*` and `pods.*`."""
        return LineSettings(
            self.output.max_line_bytes, self.enrich,
            partial_flush_s=self.pods.partial_flush_s, pod_grace_s=self.pods.grace_s,
        )


def only_source(config: Config, name: str) -> Config:
    """`config` narrowed to the source called `name`, as its top-level key (for the commands
    that work with one key: `tail`, `pipelines`); ConfigError names the sources there are."""
    for source in config.sources:
        if source.name == name:
            settings = source.settings
            return dataclasses.replace(
                config, key=source.key, key_file=source.key_file, base_url=source.base_url,
                pipelines=settings.pipelines, discovery=settings.discovery,
                budget=settings.budget, extra_sources=(),
            )
    names = ", ".join(repr(source.name) for source in config.sources) or "none"
    # The name is quoted back, and may be a key pasted in the wrong place: mask every key.
    mask = masker(*(source.key.reveal() for source in config.sources))
    raise ConfigError(
        [mask(f"--source: no source named {name!r}; the configuration has: {names}")]
    )
