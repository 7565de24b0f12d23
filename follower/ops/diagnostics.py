"""The daemon's own logs: structlog to stderr, JSON off a TTY, readable on one.

Data events never pass through here. Every rendered line passes through a redaction step that
replaces the ServiceKey with a mask, wherever it might have slipped in (an exception text, a URL).

The libraries we use (aiohttp, asyncio) log through the standard `logging` module, and what they
log can quote what a client sent: the ops server's request line or headers, an Authorization
header holding the key. Their records are rendered by the same processors (structlog's
`ProcessorFormatter`), so they are masked too and stay one JSON object per line off a TTY; left to
`logging`'s default they would be written raw, tracebacks and all.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

from follower.api.secret import ServiceKey, redact_known, remember

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR}


def _redactor(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> Any:
    return {name: _scrub(value) for name, value in event_dict.items()}


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return redact_known(value)
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


class _Handler(logging.StreamHandler[TextIO]):
    """Ours on the root logger: a class of its own so that `configure` replaces it, not adds."""


def _drop_handler() -> None:
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(handler)


def configure(
    level: str = "info", key: ServiceKey | None = None, stream: TextIO | None = None
) -> None:
    """Send structlog output to `stream` (stderr by default) at `level`, with the key redacted.

    Every key the process learns later (a rotated key file) is masked too (`secret.remember`).
    The records of the standard `logging` module (the libraries' own) go the same way, with the
    name of their logger.
    """
    if key is not None:
        remember(key)
    out = stream or sys.stderr
    renderer: structlog.types.Processor
    if out.isatty():
        renderer = structlog.dev.ConsoleRenderer(colors=True)
    else:
        renderer = structlog.processors.JSONRenderer()
    stamp: list[structlog.types.Processor] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    finish: list[structlog.types.Processor] = [structlog.processors.format_exc_info, _redactor]
    structlog.configure(
        processors=[*stamp, *finish, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    _drop_handler()
    handler = _Handler(out)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*stamp, structlog.stdlib.add_logger_name],
        processors=[*finish, structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    ))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(LEVELS[level])


def reset() -> None:
    """Undo `configure` (structlog's defaults, `logging`'s root as Python starts it), for a test
    that configured diagnostics on a stream of its own and must not leave them to later tests."""
    structlog.reset_defaults()
    _drop_handler()
    logging.getLogger().setLevel(logging.WARNING)
