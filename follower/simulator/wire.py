"""The GoldRush envelope every simulated answer is wrapped in, and JSON bytes for it."""

from __future__ import annotations

from typing import TypedDict

import orjson


class Envelope(TypedDict):
    """`{"data": ..., "error": false, "error_message": null, "error_code": null}`."""

    data: object
    error: bool
    error_message: str | None
    error_code: str | None


def ok(data: object) -> Envelope:
    """A successful envelope around `data`."""
    return {"data": data, "error": False, "error_message": None, "error_code": None}


def failure(status: int, message: str) -> Envelope:
    """An error envelope: no data, `error_code` is the HTTP status as a string."""
    return {"data": None, "error": True, "error_message": message, "error_code": str(status)}


def dumps(value: object) -> bytes:
    """Compact JSON bytes."""
    return orjson.dumps(value)
