"""Configuration: frozen values, built from defaults, a TOML file, the environment and flags.

One parser reads all three sources in that order of precedence and collects every problem before
raising a single `ConfigError`, so a user fixes a bad config in one round. The ServiceKey is read
here, from `GOLDRUSH_SERVICE_KEY` or the file named by `GOLDRUSH_SERVICE_KEY_FILE` (or
`service_key_file` in the TOML file), never from a flag or the TOML file itself.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, get_args

from follower.api.client import DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_TIMEOUT_S
from follower.api.secret import ServiceKey
from follower.config import sources as config_sources
from follower.config.sources import DEFAULT_SOURCE, Inherited, SourceConfig
from follower.config.values import (
    DEFAULT_BASE_URL,
    Converter,
    boolean,
    check_base_url,
    check_selection,
    choice,
    default_budget_rps,
    default_state_file,
    flatten,
    integer,
    listen_address,
    number,
    path,
    read_key_file,
    state_path,
    string,
    string_list,
)
from follower.core.sharding import ordinal_from_hostname, validate_shard
from follower.core.tail_errors import compile_patterns
from follower.core.tracker import Since
from follower.engine.settings import DiscoverySettings, RunSettings
from follower.engine.sources import SourceSettings
from follower.errors import ConfigError
from follower.sinks import files

# The defaults are the engine's (and the core's and sinks' beneath it): `Config` refers to the
# settings it is turned into, so each default is written once.
_RUN: Final = RunSettings()
_DISCOVERY: Final = DiscoverySettings()
_SOURCE: Final = SourceSettings()

OutputKind = Literal["stdout", "file"]
"""Where events go: `output.kind`, one choice per sink `engine.service.build_sink` builds."""
OUTPUT_KINDS: Final[tuple[str, ...]] = get_args(OutputKind)
LogLevel = Literal["debug", "info", "warning", "error"]


ENV_KEY: Final = "GOLDRUSH_SERVICE_KEY"
ENV_KEY_FILE: Final = "GOLDRUSH_SERVICE_KEY_FILE"
ENV_BASE_URL: Final = "GOLDRUSH_BASE_URL"
ENV_STATE_FILE: Final = "GOLDRUSH_STATE_FILE"


@dataclass(frozen=True, slots=True)
class Config:
    """Everything `follower run` needs, validated. Units are in the names."""

    key: ServiceKey | None
    """The top-level key; None when only `[[sources]]` are followed."""
    pipelines: tuple[str, ...]
    base_url: str = DEFAULT_BASE_URL
    interval_s: float | None = _RUN.interval_s
    """Fixed seconds between polls of a pipeline; None plans each poll from what tails show."""
    since: Since = _RUN.since
    timeout_s: float = DEFAULT_TIMEOUT_S
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    max_in_flight: int = _RUN.max_in_flight
    backoff_initial_s: float = _RUN.backoff.initial_s
    backoff_max_s: float = _RUN.backoff.max_s
    shutdown_timeout_s: float = _RUN.shutdown_timeout_s
    allow_insecure_http: bool = False
    tail_error_patterns: tuple[str, ...] = ()
    log_level: LogLevel = "info"
    key_file: Path | None = None
    state_file: Path | None = None
    """Where checkpoints go; None: no state. `load_config` defaults it to the XDG state
    directory (`state_file_default`), so a plain `follower run` keeps its place."""
    state_file_default: bool = False
    """`state_file` is the default location, whose folder the follower may create (None there:
    no default location could be found, neither XDG_STATE_HOME nor HOME being set)."""
    checkpoint_interval_s: float = _RUN.checkpoint_interval_s
    partial_flush_s: float = _RUN.lines.partial_flush_s
    pod_grace_s: float = _RUN.lines.pod_grace_s
    discover: bool = _DISCOVERY.enabled
    discover_interval_s: float = _DISCOVERY.interval_s
    discover_names: tuple[str, ...] = ()
    discover_projects: tuple[str, ...] = ()
    discover_statuses: tuple[str, ...] = ()
    discover_page_size: int = _DISCOVERY.page_size
    discover_max_pages: int = _DISCOVERY.max_pages
    discover_max_pipelines: int = _DISCOVERY.max_pipelines
    budget_rps: float | None = None
    """Requests per second for everything the key sends; None: see `effective_budget_rps`."""
    budget_burst: int = _SOURCE.budget_burst
    floor_s: float = _RUN.schedule.floor_s
    ceiling_s: float = _RUN.schedule.ceiling_s
    fill_target: float = _RUN.schedule.fill_target
    probe_s: float = _RUN.schedule.probe_s
    target_utilization: float = _RUN.schedule.target_utilization
    shard_index: int = _RUN.shard_index
    shard_count: int = _RUN.shard_count
    listen: tuple[str, int] | None = None
    """Where the ops server (/metrics, /healthz, /readyz) listens; None: not at all."""
    output: OutputKind = "stdout"
    output_dir: Path | None = None
    output_layout: files.Layout = files.DEFAULT_LAYOUT
    output_max_bytes: int = files.DEFAULT_MAX_BYTES
    output_max_files: int = files.DEFAULT_MAX_FILES
    output_fsync: files.FsyncMode = files.DEFAULT_FSYNC
    output_fsync_interval_s: float = files.DEFAULT_FSYNC_INTERVAL_S
    max_line_bytes: int = _RUN.lines.max_bytes
    parse_json: bool = False
    detect_level: bool = False
    detect_line_ts: bool = False
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
        default = SourceConfig(
            name=DEFAULT_SOURCE,
            key=self.key,
            base_url=self.base_url,
            pipelines=self.pipelines,
            discover=self.discover,
            discover_names=self.discover_names,
            discover_projects=self.discover_projects,
            discover_statuses=self.discover_statuses,
            budget_rps=effective_budget_rps(self),
            budget_burst=self.budget_burst,
            key_file=self.key_file,
        )
        return (default, *self.extra_sources)


def _default(name: str) -> Any:
    """The default of `Config.<name>`, for checks that read a value which may not be given."""
    return _DEFAULTS[name]


# TOML layout: a key's dotted name -> (Config field, converter). The converter raises ValueError
# with the text that follows "key: " in the error message.


FIELDS: Final[dict[str, tuple[str, Converter]]] = {
    "base_url": ("base_url", string),
    "pipelines": ("pipelines", string_list),
    "interval_s": ("interval_s", number(0.05, 86_400)),
    "since": ("since", choice(Since)),
    "service_key_file": ("key_file", path),
    "state_file": ("state_file", state_path),
    "checkpoint_interval_s": ("checkpoint_interval_s", number(0.1, 3_600)),
    "shutdown_timeout_s": ("shutdown_timeout_s", number(0.0, 600)),
    "http.timeout_s": ("timeout_s", number(0.1, 600)),
    "http.max_response_bytes": ("max_response_bytes", integer(1024, 1024**3)),
    "http.max_in_flight": ("max_in_flight", integer(1, 1024)),
    "http.allow_insecure_http": ("allow_insecure_http", boolean),
    "backoff.initial_s": ("backoff_initial_s", number(0.01, 3_600)),
    "backoff.max_s": ("backoff_max_s", number(0.01, 86_400)),
    "tail_errors.patterns": ("tail_error_patterns", string_list),
    "logging.level": ("log_level", choice(LogLevel)),
    "discovery.enabled": ("discover", boolean),
    "discovery.interval_s": ("discover_interval_s", number(5.0, 86_400)),
    "discovery.names": ("discover_names", string_list),
    "discovery.projects": ("discover_projects", string_list),
    "discovery.statuses": ("discover_statuses", string_list),
    "discovery.page_size": ("discover_page_size", integer(1, 10_000)),
    "discovery.max_pages": ("discover_max_pages", integer(1, 100_000)),
    "discovery.max_pipelines": ("discover_max_pipelines", integer(1, 1_000_000)),
    "budget.requests_per_s": ("budget_rps", number(0.01, 10_000)),
    "budget.burst": ("budget_burst", integer(1, 100_000)),
    "schedule.floor_s": ("floor_s", number(0.05, 3_600)),
    "schedule.ceiling_s": ("ceiling_s", number(0.05, 86_400)),
    "schedule.fill_target": ("fill_target", number(0.01, 1.0)),
    "schedule.probe_s": ("probe_s", number(0.05, 3_600)),
    "schedule.target_utilization": ("target_utilization", number(0.0, 1.0)),
    "shard.index": ("shard_index", integer(0, 100_000)),
    "shard.count": ("shard_count", integer(1, 100_000)),
    "shard.from_hostname": ("shard_from_hostname", boolean),
    "ops.listen": ("listen", listen_address),
    "output.kind": ("output", choice(OutputKind)),
    "output.dir": ("output_dir", path),
    "output.layout": ("output_layout", choice(files.Layout)),
    "output.max_bytes": ("output_max_bytes", integer(1024, 1 << 40)),
    "output.max_files": ("output_max_files", integer(2, 10_000)),
    "output.fsync": ("output_fsync", choice(files.FsyncMode)),
    "output.fsync_interval_s": ("output_fsync_interval_s", number(0.0, 3_600)),
    "output.max_line_bytes": ("max_line_bytes", integer(64, 16 * 1024 * 1024)),
    "pods.partial_flush_s": ("partial_flush_s", number(0.0, 3_600)),
    "pods.grace_s": ("pod_grace_s", number(0.0, 86_400)),
    "enrich.parse_json": ("parse_json", boolean),
    "enrich.level": ("detect_level", boolean),
    "enrich.line_ts": ("detect_line_ts", boolean),
}

_DEFAULTS: Final[dict[str, Any]] = {
    field.name: field.default
    for field in dataclasses.fields(Config)
    if field.default is not dataclasses.MISSING
}

FORBIDDEN_KEYS: Final = {"service_key", "key", "api_key", "http.service_key"}


def _read_toml(path: Path, problems: list[str]) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return flatten(tomllib.load(handle), FIELDS)
    except FileNotFoundError:
        problems.append(f"--config: file {str(path)!r} does not exist")
    except PermissionError:
        problems.append(f"--config: file {str(path)!r} is not readable (permission denied)")
    except tomllib.TOMLDecodeError as exc:
        problems.append(f"--config: {str(path)!r} is not valid TOML: {exc}")
    except UnicodeDecodeError as exc:  # TOML is UTF-8; a write cut mid-character is not
        problems.append(
            f"--config: {str(path)!r} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at "
            f"offset {exc.start}: {exc.reason}); a truncated write?"
        )
    except RecursionError:  # tomllib recurses per nesting level of arrays and inline tables
        problems.append(f"--config: {str(path)!r} is nested too deeply to be a configuration")
    except OSError as exc:
        problems.append(f"--config: cannot read {str(path)!r}: {exc.strerror}")
    return {}


def _apply(
    raw: Mapping[str, Any],
    origin: str,
    values: dict[str, Any],
    problems: list[str],
    names: Mapping[str, str] | None = None,
) -> None:
    for key, value in raw.items():
        shown = (names or {}).get(key, f"{origin}{key}")
        if key in FORBIDDEN_KEYS:
            problems.append(
                f"{shown}: the ServiceKey is never read from the config file; set "
                f"{ENV_KEY} or point {ENV_KEY_FILE} (or service_key_file) at a file holding it"
            )
            continue
        if key not in FIELDS:
            valid = ", ".join(sorted(FIELDS))
            problems.append(f"{shown}: unknown key; valid keys are: {valid}")
            continue
        target, convert = FIELDS[key]
        try:
            values[target] = convert(value)
        except ValueError as exc:
            problems.append(f"{shown}: {exc}")


def _read_key(
    env: Mapping[str, str], key_file: Path | None, problems: list[str]
) -> tuple[ServiceKey | None, Path | None]:
    inline = env.get(ENV_KEY, "")
    file_name = env.get(ENV_KEY_FILE) or (str(key_file) if key_file else "")
    if inline and file_name:
        problems.append(f"{ENV_KEY}: set either {ENV_KEY} or {ENV_KEY_FILE}, not both")
        return None, None
    if file_name:
        path = Path(file_name)
        try:
            text = read_key_file(path)
        except ValueError as exc:
            problems.append(f"{ENV_KEY_FILE}: {exc}")
            return None, None
        return ServiceKey(text), path
    if inline.strip():
        return ServiceKey(inline.strip()), None
    problems.append(
        f"{ENV_KEY}: no ServiceKey; export {ENV_KEY}=<key> or set {ENV_KEY_FILE} to a file "
        "holding it (a GoldRush ServiceKey, not a regular API key)"
    )
    return None, None


def only_source(config: Config, name: str) -> Config:
    """`config` narrowed to the source called `name`, as its top-level key (for the commands
    that work with one key: `tail`, `pipelines`); ConfigError names the sources there are."""
    for source in config.sources:
        if source.name == name:
            return dataclasses.replace(
                config, key=source.key, key_file=source.key_file, base_url=source.base_url,
                pipelines=source.pipelines, discover=source.discover,
                discover_names=source.discover_names, discover_projects=source.discover_projects,
                discover_statuses=source.discover_statuses, budget_rps=source.budget_rps,
                budget_burst=source.budget_burst, extra_sources=(),
            )
    names = ", ".join(repr(source.name) for source in config.sources) or "none"
    raise ConfigError([f"--source: no source named {name!r}; the configuration has: {names}"])


def effective_budget_rps(config: Config) -> float:
    """The configured budget of the top-level source, or `default_budget_rps`."""
    if config.budget_rps is not None:
        return config.budget_rps
    return default_budget_rps(config.interval_s, len(config.pipelines))


def load_config(
    *,
    config_path: Path | None,
    env: Mapping[str, str],
    flags: Mapping[str, Any],
    hostname: str = "",
    flag_names: Mapping[str, str] | None = None,
) -> Config:
    """Build the Config from defaults < TOML file < environment < flags, or raise ConfigError.

    `flags` maps TOML-style dotted keys (`interval_s`, `pipelines`, ...) to values given on the
    command line; a None value means "not given"; `flag_names` maps those keys to the flags'
    spelling for error messages. `hostname` gives the shard index when `shard.from_hostname` is
    set (a StatefulSet pod `follower-2` is shard 2).
    """
    problems: list[str] = []
    values: dict[str, Any] = {}
    sources: Any = None
    if config_path is not None:
        table = _read_toml(config_path, problems)
        sources = table.pop("sources", None)
        _apply(table, "", values, problems)
    if env.get(ENV_BASE_URL):
        _apply({"base_url": env[ENV_BASE_URL]}, f"{ENV_BASE_URL} -> ", values, problems)
    if env.get(ENV_STATE_FILE):
        _apply({"state_file": env[ENV_STATE_FILE]}, f"{ENV_STATE_FILE} -> ", values, problems)
    given = {k: v for k, v in flags.items() if v is not None}
    _apply(given, "--", values, problems, flag_names)
    _check_shard(values, hostname, problems)
    base_url_from = (
        (flag_names or {}).get("base_url", "--base_url") if "base_url" in given
        else ENV_BASE_URL if env.get(ENV_BASE_URL) else "base_url"
    )
    return _finish(values, env, problems, sources, base_url_from)


def _check_shard(values: dict[str, Any], hostname: str, problems: list[str]) -> None:
    if values.pop("shard_from_hostname", False):
        try:
            values["shard_index"] = ordinal_from_hostname(hostname)
        except ValueError as exc:
            problems.append(f"shard.from_hostname: {exc}")
            return
    try:
        validate_shard(values.get("shard_index", _default("shard_index")),
                       values.get("shard_count", _default("shard_count")))
    except ValueError as exc:
        problems.append(f"shard.index: {exc}")


def _finish(
    values: dict[str, Any],
    env: Mapping[str, str],
    problems: list[str],
    sources: Any,
    base_url_from: str = "base_url",
) -> Config:
    # With [[sources]], the top-level key follows something only when asked to (pipelines
    # listed or discovery enabled at the top level); without, it is the one source.
    top_level = not sources or bool(values.get("pipelines")) or values.get("discover") is True
    if top_level:
        check_selection(
            values, problems,
            nothing="pass --pipeline pipe_... (repeatable) or enable discovery (--discover)",
        )
    else:
        values["pipelines"] = ()
    _state_location(values, env)
    if values.get("output") == "file" and values.get("output_dir") is None:
        problems.append("output.dir: --output file needs --output-dir DIR (where to write)")
    if values.get("floor_s", _default("floor_s")) > values.get("ceiling_s", _default("ceiling_s")):
        problems.append("schedule.floor_s: must not exceed schedule.ceiling_s")
    notes: list[str] = []
    values["base_url"] = check_base_url(
        values.get("base_url", _default("base_url")),
        values.get("allow_insecure_http", _default("allow_insecure_http")),
        problems,
        where=base_url_from,
        notes=notes,
    )
    if values.get("backoff_initial_s", _default("backoff_initial_s")) > values.get(
        "backoff_max_s", _default("backoff_max_s")
    ):
        problems.append("backoff.initial_s: must not exceed backoff.max_s")
    try:
        compile_patterns(values.get("tail_error_patterns", _default("tail_error_patterns")))
    except ValueError as exc:
        problems.append(str(exc))
    extra = _extra_sources(values, env, problems, sources, notes)
    key, key_file = None, values.pop("key_file", None)
    if top_level:
        key, key_file = _read_key(env, key_file, problems)
    owners = [(DEFAULT_SOURCE, values.get("pipelines", ()))] if top_level else []
    config_sources.check_no_overlap(owners + [(s.name, s.pipelines) for s in extra], problems)
    if problems or (top_level and key is None):
        raise ConfigError(problems)
    return Config(key=key, key_file=None if key is None else key_file, extra_sources=extra,
                  notices=tuple(notes), **values)


def _state_location(values: dict[str, Any], env: Mapping[str, str]) -> None:
    state = values.get("state_file")
    if state is False:
        values["state_file"] = None
    elif state is None:  # None with state_file_default: no default location (said at start)
        values["state_file"] = default_state_file(env)
        values["state_file_default"] = True


def _extra_sources(
    values: dict[str, Any],
    env: Mapping[str, str],
    problems: list[str],
    sources: Any,
    notes: list[str],
) -> tuple[SourceConfig, ...]:
    if sources is None:
        return ()
    inherited = Inherited(
        base_url=values["base_url"],
        allow_insecure_http=values.get("allow_insecure_http", _default("allow_insecure_http")),
        budget_rps=values.get("budget_rps"),
        budget_burst=values.get("budget_burst", _default("budget_burst")),
        interval_s=values.get("interval_s"),
    )
    return config_sources.parse_sources(sources, inherited, env, problems, notes)
