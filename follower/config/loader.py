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
from pathlib import Path
from typing import Any, Final, Literal

from follower.api.secret import ServiceKey, masker
from follower.config import sources as config_sources
from follower.config.keys import FIELDS, build_sections
from follower.config.sources import DEFAULT_SOURCE
from follower.config.tree import Config, SourceConfig
from follower.config.values import (
    check_base_url,
    check_selection,
    default_state_file,
    flatten,
    key_flaw,
    read_key_file,
)
from follower.core.sharding import ordinal_from_hostname, validate_shard
from follower.core.tail_errors import compile_patterns
from follower.errors import ConfigError

ENV_KEY: Final = "GOLDRUSH_SERVICE_KEY"
ENV_KEY_FILE: Final = "GOLDRUSH_SERVICE_KEY_FILE"
ENV_BASE_URL: Final = "GOLDRUSH_BASE_URL"
ENV_STATE_FILE: Final = "GOLDRUSH_STATE_FILE"

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
        try:
            values[key] = FIELDS[key](value)
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
        wrong = key_flaw(inline.strip())
        if wrong is not None:
            problems.append(f"{ENV_KEY}: the key holds {wrong} inside it; set {ENV_KEY} to the "
                            "ServiceKey alone")
            return None, None
        return ServiceKey(inline.strip()), None
    problems.append(
        f"{ENV_KEY}: no ServiceKey; export {ENV_KEY}=<key> or set {ENV_KEY_FILE} to a file "
        "holding it (a GoldRush ServiceKey, not a regular API key)"
    )
    return None, None


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
    if values.pop("shard.from_hostname", False):
        try:
            values["shard.index"] = ordinal_from_hostname(hostname)
        except ValueError as exc:
            problems.append(f"shard.from_hostname: {exc}")
            return
    shard = build_sections({k: v for k, v in values.items() if k.startswith("shard.")})["shard"]
    try:
        validate_shard(shard.index, shard.count)
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
    top_level = (
        not sources or bool(values.get("pipelines")) or values.get("discovery.enabled") is True
    )
    if top_level:
        check_selection(
            values, problems,
            nothing="pass --pipeline pipe_... (repeatable) or enable discovery (--discover)",
        )
    else:
        values["pipelines"] = ()
    key_file = values.pop("service_key_file", None)
    state_file = values.pop("state_file", None)
    config = _state_location(Config(**build_sections(values)), state_file, env)
    if config.output.kind == "file" and config.output.dir is None:
        problems.append("output.dir: --output file needs --output-dir DIR (where to write)")
    if config.schedule.floor_s > config.schedule.ceiling_s:
        problems.append("schedule.floor_s: must not exceed schedule.ceiling_s")
    notes: list[str] = []
    config = dataclasses.replace(config, base_url=check_base_url(
        config.base_url, config.http.allow_insecure_http, problems, where=base_url_from,
        notes=notes,
    ))
    if config.backoff.initial_s > config.backoff.max_s:
        problems.append("backoff.initial_s: must not exceed backoff.max_s")
    try:
        compile_patterns(config.tail_errors.patterns)
    except ValueError as exc:
        problems.append(str(exc))
    extra: tuple[SourceConfig, ...] = ()
    keys: list[ServiceKey] = []
    if sources is not None:
        extra = config_sources.parse_sources(sources, config, env, problems, notes, read_keys=keys)
    key = None
    if top_level:
        key, key_file = _read_key(env, key_file, problems)
        if key is not None:
            keys.append(key)
    owners = [(DEFAULT_SOURCE, config.pipelines)] if top_level else []
    config_sources.check_no_overlap(owners + [(s.name, s.settings.pipelines) for s in extra],
                                    problems)
    # A problem or a note quotes the value it is about, and an operator may have pasted the key
    # into a setting (a URL, a pipeline id, a path): every key read is masked, in any letter
    # case, before they leave, whichever command prints them.
    mask = masker(*(read.reveal() for read in keys))
    if problems or (top_level and key is None):
        raise ConfigError([mask(problem) for problem in problems])
    return dataclasses.replace(
        config, key=key, key_file=None if key is None else key_file, extra_sources=extra,
        notices=tuple(mask(note) for note in notes),
    )


def _state_location(
    config: Config, given: Path | Literal[False] | None, env: Mapping[str, str]
) -> Config:
    """`config` with `state_file` as given (false: None, no state), or the default location."""
    if given is None:  # None with state_file_default: no default location (said at start)
        return dataclasses.replace(
            config, state_file=default_state_file(env), state_file_default=True
        )
    return dataclasses.replace(config, state_file=given or None)
