"""Configuration: frozen values, built from defaults, a TOML file, the environment and flags.

One parser reads all three sources in that order of precedence and collects every problem before
raising a single `ConfigError`, so a user fixes a bad config in one round. The ServiceKey is read
here, from `GOLDRUSH_SERVICE_KEY` or the file named by `GOLDRUSH_SERVICE_KEY_FILE` (or
`service_key_file` in the TOML file), never from a flag or the TOML file itself.
"""

from __future__ import annotations

import ipaddress
import math
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, cast, get_args

from yarl import URL

from follower.errors import ConfigError
from follower.model import validate_pipeline_id
from follower.secret import ServiceKey
from follower.sharding import ordinal_from_hostname, validate_shard
from follower.tailerrors import compile_patterns

Since = Literal["start", "now"]
LogLevel = Literal["debug", "info", "warning", "error"]

DEFAULT_BASE_URL: Final = "https://api.covalenthq.com"
ENV_KEY: Final = "GOLDRUSH_SERVICE_KEY"
ENV_KEY_FILE: Final = "GOLDRUSH_SERVICE_KEY_FILE"
ENV_BASE_URL: Final = "GOLDRUSH_BASE_URL"


@dataclass(frozen=True, slots=True)
class Config:
    """Everything `follower run` needs, validated. Units are in the names."""

    key: ServiceKey
    pipelines: tuple[str, ...]
    base_url: str = DEFAULT_BASE_URL
    interval_s: float | None = None
    """Fixed seconds between polls of a pipeline; None plans each poll from what tails show."""
    since: Since = "start"
    timeout_s: float = 10.0
    max_response_bytes: int = 8 * 1024 * 1024
    max_in_flight: int = 8
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    shutdown_timeout_s: float = 5.0
    allow_insecure_http: bool = False
    tail_error_patterns: tuple[str, ...] = ()
    log_level: LogLevel = "info"
    key_file: Path | None = None
    state_file: Path | None = None
    checkpoint_interval_s: float = 5.0
    discover: bool = False
    discover_interval_s: float = 300.0
    discover_names: tuple[str, ...] = ()
    discover_projects: tuple[str, ...] = ()
    discover_statuses: tuple[str, ...] = ()
    budget_rps: float | None = None
    """Requests per second for everything the key sends; None: see `effective_budget_rps`."""
    budget_burst: int = 20
    floor_s: float = 1.0
    ceiling_s: float = 60.0
    fill_target: float = 0.5
    shard_index: int = 0
    shard_count: int = 1
    listen: tuple[str, int] | None = None
    """Where the ops server (/metrics, /healthz, /readyz) listens; None: not at all."""
    output: Literal["stdout", "file"] = "stdout"
    output_dir: Path | None = None
    output_layout: Literal["single", "per-pipeline"] = "single"
    output_max_bytes: int = 100 * 1024 * 1024
    output_max_files: int = 5
    output_fsync: Literal["never", "interval", "always"] = "interval"
    output_fsync_interval_s: float = 1.0
    max_line_bytes: int = 16 * 1024
    parse_json: bool = False
    detect_level: bool = False
    detect_line_ts: bool = False
    source: str = field(default="defaults", compare=False)


# TOML layout: a key's dotted name -> (Config field, converter). The converter raises ValueError
# with the text that follows "key: " in the error message.
Converter = Callable[[Any], Any]


def _number(minimum: float, maximum: float = math.inf) -> Converter:
    def convert(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"expected a number, got {value!r}")
        if not minimum <= float(value) <= maximum or math.isnan(value):
            raise ValueError(f"{value!r} is out of range: expected {minimum:g} to {maximum:g}")
        return float(value)

    return convert


def _integer(minimum: int, maximum: int) -> Converter:
    def convert(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {value!r}")
        if not minimum <= value <= maximum:
            raise ValueError(f"{value!r} is out of range: expected {minimum} to {maximum}")
        return value

    return convert


def _choice(literal: Any) -> Converter:
    options = get_args(literal)

    def convert(value: Any) -> str:
        if value not in options:
            raise ValueError(f"{value!r} is not one of {', '.join(map(repr, options))}")
        return cast(str, value)

    return convert


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def _string_list(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"expected a list of strings, got {value!r}")
    return tuple(value)


def _path(value: Any) -> Path:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a file path, got {value!r}")
    return Path(value)


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value


def _listen_address(value: Any) -> tuple[str, int]:
    if not isinstance(value, str) or ":" not in value:
        raise ValueError(f"expected HOST:PORT such as 127.0.0.1:9464, got {value!r}")
    host, _, port = value.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT such as 127.0.0.1:9464, got {value!r}")
    return host, int(port)


FIELDS: Final[dict[str, tuple[str, Converter]]] = {
    "base_url": ("base_url", _string),
    "pipelines": ("pipelines", _string_list),
    "interval_s": ("interval_s", _number(0.05, 86_400)),
    "since": ("since", _choice(Since)),
    "service_key_file": ("key_file", _path),
    "state_file": ("state_file", _path),
    "checkpoint_interval_s": ("checkpoint_interval_s", _number(0.1, 3_600)),
    "shutdown_timeout_s": ("shutdown_timeout_s", _number(0.0, 600)),
    "http.timeout_s": ("timeout_s", _number(0.1, 600)),
    "http.max_response_bytes": ("max_response_bytes", _integer(1024, 1024**3)),
    "http.max_in_flight": ("max_in_flight", _integer(1, 1024)),
    "http.allow_insecure_http": ("allow_insecure_http", _boolean),
    "backoff.initial_s": ("backoff_initial_s", _number(0.01, 3_600)),
    "backoff.max_s": ("backoff_max_s", _number(0.01, 86_400)),
    "tail_errors.patterns": ("tail_error_patterns", _string_list),
    "logging.level": ("log_level", _choice(LogLevel)),
    "discovery.enabled": ("discover", _boolean),
    "discovery.interval_s": ("discover_interval_s", _number(5.0, 86_400)),
    "discovery.names": ("discover_names", _string_list),
    "discovery.projects": ("discover_projects", _string_list),
    "discovery.statuses": ("discover_statuses", _string_list),
    "budget.requests_per_s": ("budget_rps", _number(0.01, 10_000)),
    "budget.burst": ("budget_burst", _integer(1, 100_000)),
    "schedule.floor_s": ("floor_s", _number(0.05, 3_600)),
    "schedule.ceiling_s": ("ceiling_s", _number(0.05, 86_400)),
    "schedule.fill_target": ("fill_target", _number(0.01, 1.0)),
    "shard.index": ("shard_index", _integer(0, 100_000)),
    "shard.count": ("shard_count", _integer(1, 100_000)),
    "shard.from_hostname": ("shard_from_hostname", _boolean),
    "ops.listen": ("listen", _listen_address),
    "output.kind": ("output", _choice(Literal["stdout", "file"])),
    "output.dir": ("output_dir", _path),
    "output.layout": ("output_layout", _choice(Literal["single", "per-pipeline"])),
    "output.max_bytes": ("output_max_bytes", _integer(1024, 1 << 40)),
    "output.max_files": ("output_max_files", _integer(2, 10_000)),
    "output.fsync": ("output_fsync", _choice(Literal["never", "interval", "always"])),
    "output.fsync_interval_s": ("output_fsync_interval_s", _number(0.0, 3_600)),
    "output.max_line_bytes": ("max_line_bytes", _integer(64, 16 * 1024 * 1024)),
    "enrich.parse_json": ("parse_json", _boolean),
    "enrich.level": ("detect_level", _boolean),
    "enrich.line_ts": ("detect_line_ts", _boolean),
}

FORBIDDEN_KEYS: Final = {"service_key", "key", "api_key", "http.service_key"}


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, value in table.items():
        dotted = f"{prefix}{name}"
        if isinstance(value, dict) and f"{dotted}." in {k[: len(dotted) + 1] for k in FIELDS}:
            flat.update(_flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def _read_toml(path: Path, problems: list[str]) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return _flatten(tomllib.load(handle))
    except FileNotFoundError:
        problems.append(f"--config: file {str(path)!r} does not exist")
    except PermissionError:
        problems.append(f"--config: file {str(path)!r} is not readable (permission denied)")
    except tomllib.TOMLDecodeError as exc:
        problems.append(f"--config: {str(path)!r} is not valid TOML: {exc}")
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


def _check_base_url(url: str, allow_insecure: bool, problems: list[str]) -> str:
    try:
        parsed = URL(url)
    except ValueError:  # yarl's text may quote the netloc, credentials included: not echoed
        problems.append(f"base_url: cannot be parsed as a URL; e.g. {DEFAULT_BASE_URL}")
        return url
    shown = _shown(parsed)
    if parsed.scheme not in ("https", "http") or not parsed.host:
        problems.append(f"base_url: {shown} is not an http(s) URL; e.g. {DEFAULT_BASE_URL}")
        return url
    if parsed.query_string or parsed.fragment or parsed.user or parsed.password:
        problems.append(f"base_url: {shown} must not carry credentials, a query or a fragment")
    if parsed.scheme == "http" and not allow_insecure and not _is_loopback(parsed.host):
        problems.append(
            f"base_url: {shown} uses plain http to a non-loopback host, which would send the "
            "ServiceKey unencrypted; use https, or set http.allow_insecure_http = true"
        )
    return url.rstrip("/")


def _shown(parsed: URL) -> str:
    """The URL quoted for a message, without user, password, query and fragment (a key may be
    there)."""
    if parsed.absolute:
        parsed = parsed.with_user(None)  # drops the password too
    return repr(str(parsed.with_query(None).with_fragment(None)))


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


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


def read_key_file(path: Path) -> str:
    """The key held in `path`, stripped; ValueError names the file and what is wrong."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ValueError(f"key file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"key file {str(path)!r} cannot be read: {exc}") from None
    if not text:
        raise ValueError(f"key file {str(path)!r} is empty")
    if any(ch.isspace() for ch in text):
        raise ValueError(f"key file {str(path)!r} holds whitespace inside the key")
    return text


DEFAULT_BUDGET_RPS: Final = 10.0


def effective_budget_rps(config: Config) -> float:
    """The configured budget, or a default: 10 requests/s, raised with a fixed `--interval` to
    what polling every listed pipeline at that interval needs (plus a quarter for retries), so
    an explicit interval is kept; 429s still slow it down if the API allows less."""
    if config.budget_rps is not None:
        return config.budget_rps
    if config.interval_s is None:
        return DEFAULT_BUDGET_RPS
    needed = 1.25 * len(config.pipelines) / config.interval_s
    return max(DEFAULT_BUDGET_RPS, needed)


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
    if config_path is not None:
        _apply(_read_toml(config_path, problems), "", values, problems)
    if env.get(ENV_BASE_URL):
        _apply({"base_url": env[ENV_BASE_URL]}, f"{ENV_BASE_URL} -> ", values, problems)
    given = {k: v for k, v in flags.items() if v is not None}
    _apply(given, "--", values, problems, flag_names)
    _check_shard(values, hostname, problems)
    return _finish(values, env, problems)


def _check_shard(values: dict[str, Any], hostname: str, problems: list[str]) -> None:
    if values.pop("shard_from_hostname", False):
        try:
            values["shard_index"] = ordinal_from_hostname(hostname)
        except ValueError as exc:
            problems.append(f"shard.from_hostname: {exc}")
            return
    try:
        validate_shard(values.get("shard_index", 0), values.get("shard_count", 1))
    except ValueError as exc:
        problems.append(f"shard.index: {exc}")


def _finish(values: dict[str, Any], env: Mapping[str, str], problems: list[str]) -> Config:
    pipelines = values.get("pipelines", ())
    for index, pipeline_id in enumerate(pipelines):
        try:
            validate_pipeline_id(pipeline_id)
        except ValueError as exc:
            problems.append(f"pipelines[{index}]: {exc}")
    if not pipelines and values.get("discover") is False:
        problems.append(
            "pipelines: no pipeline to follow and discovery.enabled = false; pass --pipeline "
            "pipe_... (repeatable) or enable discovery (--discover)"
        )
    if not pipelines:
        values["discover"] = True  # follow every pipeline the key can see
    values["pipelines"] = tuple(dict.fromkeys(pipelines))  # a repeated id is followed once
    if values.get("output") == "file" and values.get("output_dir") is None:
        problems.append("output.dir: --output file needs --output-dir DIR (where to write)")
    if values.get("floor_s", 1.0) > values.get("ceiling_s", 60.0):
        problems.append("schedule.floor_s: must not exceed schedule.ceiling_s")
    values["base_url"] = _check_base_url(
        values.get("base_url", DEFAULT_BASE_URL),
        values.get("allow_insecure_http", False),
        problems,
    )
    if values.get("backoff_initial_s", 1.0) > values.get("backoff_max_s", 60.0):
        problems.append("backoff.initial_s: must not exceed backoff.max_s")
    try:
        compile_patterns(values.get("tail_error_patterns", ()))
    except ValueError as exc:
        problems.append(str(exc))
    key, key_file = _read_key(env, values.pop("key_file", None), problems)
    if problems or key is None:
        raise ConfigError(problems)
    return Config(key=key, key_file=key_file, **values)
