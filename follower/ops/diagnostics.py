"""The daemon's own logs: structlog to stderr, JSON off a TTY, readable on one.

Data events never pass through here. Every rendered line passes through a redaction step that
replaces the ServiceKey with a mask, wherever it might have slipped in (an exception text, a URL).
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


def configure(
    level: str = "info", key: ServiceKey | None = None, stream: TextIO | None = None
) -> None:
    """Send structlog output to `stream` (stderr by default) at `level`, with the key redacted.

    Every key the process learns later (a rotated key file) is masked too (`secret.remember`).
    """
    if key is not None:
        remember(key)
    out = stream or sys.stderr
    renderer: structlog.types.Processor
    if out.isatty():
        renderer = structlog.dev.ConsoleRenderer(colors=True)
    else:
        renderer = structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _redactor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
