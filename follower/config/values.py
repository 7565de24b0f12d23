"""Reading configuration values: converters that name what is wrong, TOML flattening, the
pipeline selection rule, URL and key checks.

Shared by the top-level keys (follower/config/keys.py, follower/config/loader.py) and the
`[[sources]]` tables (follower/config/sources.py), so a value means the same, and is checked the
same, in both.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Final, Literal, cast, get_args

from yarl import URL

from follower.core.model import validate_pipeline_id

DEFAULT_BASE_URL: Final = "https://api.covalenthq.com"

Converter = Callable[[Any], Any]
"""Turns a raw value into a checked one, or raises ValueError with the text that follows
"key: " in the error message."""


def number(minimum: float, maximum: float = math.inf) -> Converter:
    def convert(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"expected a number, got {value!r}")
        if not minimum <= float(value) <= maximum or math.isnan(value):
            raise ValueError(f"{value!r} is out of range: expected {minimum:g} to {maximum:g}")
        return float(value)

    return convert


def integer(minimum: int, maximum: int) -> Converter:
    def convert(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {value!r}")
        if not minimum <= value <= maximum:
            raise ValueError(f"{value!r} is out of range: expected {minimum} to {maximum}")
        return value

    return convert


def choice(literal: Any) -> Converter:
    options = get_args(literal)

    def convert(value: Any) -> str:
        if value not in options:
            raise ValueError(f"{value!r} is not one of {', '.join(map(repr, options))}")
        return cast(str, value)

    return convert


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def string_list(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"expected a list of strings, got {value!r}")
    return tuple(value)


def path(value: Any) -> Path:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a file path, got {value!r}")
    return Path(value)


def state_path(value: Any) -> Path | Literal[False]:
    """A state file path, or false: run without a state file (ids and lines then start afresh
    at every start)."""
    if value is False:
        return False
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a file path, or false for no state file, got {value!r}")
    return Path(value)


def default_state_file(env: Mapping[str, str]) -> Path | None:
    """Where state lives when no location is given: the XDG state directory (as Vector's
    `data_dir` or Filebeat's registry have one); None when neither XDG_STATE_HOME nor HOME says
    where that is."""
    base = env.get("XDG_STATE_HOME", "")
    if base and Path(base).is_absolute():
        return Path(base) / "goldrush-follower" / "state.json"
    home = env.get("HOME", "")
    if home and Path(home).is_absolute():
        return Path(home) / ".local" / "state" / "goldrush-follower" / "state.json"
    return None


def string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value


def listen_address(value: Any) -> tuple[str, int]:
    if not isinstance(value, str) or ":" not in value:
        raise ValueError(f"expected HOST:PORT such as 127.0.0.1:9464, got {value!r}")
    host, _, port = value.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT such as 127.0.0.1:9464, got {value!r}")
    return host, int(port)


API_PATH: Final = "/platform/pipeline-api"
"""The path the client adds to the base URL; GoldRush's docs call the URL with it the "Base URL"."""


def normalise_base_url(url: str) -> str:
    """`url` without a trailing `/platform/pipeline-api/` (the form GoldRush's docs show as the
    "Base URL"), which the client adds itself: pasted as is, every request would be a 404."""
    stripped = url.rstrip("/")
    if stripped.lower().endswith(API_PATH):
        return stripped[: -len(API_PATH)]
    return url


def check_base_url(
    url: str,
    allow_insecure: bool,
    problems: list[str],
    *,
    where: str = "base_url",
    notes: list[str] | None = None,
) -> str:
    """The base URL to use, checked; problems go to `problems`, and a note to `notes` when the
    documented form with `/platform/pipeline-api/` was given and shortened."""
    normal = normalise_base_url(url)
    if normal != url and notes is not None:
        notes.append(
            f"{where}: {url!r} ends with the API path {API_PATH}/, which the follower adds "
            f"itself; using {normal!r}"
        )
    url = normal
    try:
        parsed = URL(url)
    except ValueError:  # yarl's text may quote the netloc, credentials included: not echoed
        problems.append(f"{where}: cannot be parsed as a URL; e.g. {DEFAULT_BASE_URL}")
        return url
    shown = shown_url(parsed)
    if parsed.scheme not in ("https", "http") or not parsed.host:
        problems.append(f"{where}: {shown} is not an http(s) URL; e.g. {DEFAULT_BASE_URL}")
        return url
    if parsed.query_string or parsed.fragment or parsed.user or parsed.password:
        problems.append(f"{where}: {shown} must not carry credentials, a query or a fragment")
    if parsed.scheme == "http" and not allow_insecure and not is_loopback(parsed.host):
        problems.append(
            f"{where}: {shown} uses plain http to a non-loopback host, which would send the "
            "ServiceKey unencrypted; use https, or set http.allow_insecure_http = true"
        )
    return url.rstrip("/")


def shown_url(parsed: URL) -> str:
    """The URL quoted for a message, without user, password, query and fragment (a key may be
    there)."""
    if parsed.absolute:
        parsed = parsed.with_user(None)  # drops the password too
    return repr(str(parsed.with_query(None).with_fragment(None)))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def read_key_file(path: Path) -> str:
    """The key held in `path`, stripped; ValueError names the file, what is wrong and the fix."""
    try:
        # utf-8-sig: a byte order mark at the start (Notepad and PowerShell's Out-File write one)
        # is an encoding marker, not part of the key; read as utf-8 it stayed at the key's
        # front and every request was refused as if the key were revoked.
        text = path.read_text(encoding="utf-8-sig").strip()
    except FileNotFoundError:
        raise ValueError(f"key file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"key file {str(path)!r} cannot be read: {exc}") from None
    if not text:
        raise ValueError(f"key file {str(path)!r} is empty")
    wrong = key_flaw(text)
    if wrong is not None:
        raise ValueError(
            f"key file {str(path)!r} holds {wrong} inside the key; write the ServiceKey alone "
            "in the file (a line break at the end is fine)"
        )
    return text


def key_flaw(text: str) -> str | None:
    """What in `text` (a key, stripped) no ServiceKey holds, or None: "whitespace", "a control
    character" (invisible and format characters too) or "a character that is not ASCII".

    The client sends the key in the Authorization header, which takes visible ASCII only, and
    refuses any other key before a request; caught here, such a key is a bad configuration
    (exit 2, naming where it came from) instead of what looks like a revoked key. The flaw is
    named, never the character: the key is a secret.
    """
    if any(char.isspace() for char in text):
        return "whitespace"
    if not text.isprintable():
        return "a control character"
    if not text.isascii():
        return "a character that is not ASCII"
    return None


def flatten(table: Mapping[str, Any], fields: Iterable[str], prefix: str = "") -> dict[str, Any]:
    """A TOML table as dotted keys (`budget.burst`), descending only into the tables `fields`
    has keys under, so an unknown table stays one key that the error message can name."""
    names = list(fields)
    flat: dict[str, Any] = {}
    for name, value in table.items():
        dotted = f"{prefix}{name}"
        if isinstance(value, dict) and any(key.startswith(f"{dotted}.") for key in names):
            flat.update(flatten(value, names, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def check_selection(
    values: dict[str, Any], problems: list[str], *, prefix: str = "", nothing: str
) -> None:
    """Check the listed pipeline ids in `values` (by dotted key, as read); none listed means
    discover (unless disabled: `nothing` is the fix to suggest). Repeated ids are followed once."""
    pipelines = values.get("pipelines", ())
    for index, pipeline_id in enumerate(pipelines):
        try:
            validate_pipeline_id(pipeline_id)
        except ValueError as exc:
            problems.append(f"{prefix}pipelines[{index}]: {exc}")
    if not pipelines and values.get("discovery.enabled") is False:
        problems.append(f"{prefix}pipelines: no pipeline to follow and discovery.enabled = false; "
                        f"{nothing}")
    if not pipelines:
        values["discovery.enabled"] = True  # follow every pipeline the key can see
    values["pipelines"] = tuple(dict.fromkeys(pipelines))

