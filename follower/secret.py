"""The ServiceKey as a value that cannot leak by accident.

`str()`, `repr()` and f-strings of a `ServiceKey` print a mask, so the key can travel through
config objects, exceptions and log calls without ever being written out. Only `reveal()` gives the
text, and only the HTTP client calls it to build the Authorization header.
"""

from __future__ import annotations

from typing import Final

MASK: Final = "******"


class ServiceKey:
    """A bearer token that never prints itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The key itself; for the Authorization header and for redaction only."""
        return self._value

    def __repr__(self) -> str:
        return f"ServiceKey({MASK})"

    def __str__(self) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ServiceKey) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


_known: list[str] = []


def remember(key: ServiceKey) -> None:
    """Add `key` to the keys `redact_known` masks (the first one, and each rotated one)."""
    value = key.reveal()
    if value and value not in _known:
        _known.append(value)


def redact_known(text: str) -> str:
    """`text` with every key this process has used replaced by the mask."""
    for value in _known:
        text = text.replace(value, MASK)
    return text


def redact(text: str, key: ServiceKey | None) -> str:
    """`text` with every occurrence of the key replaced by the mask."""
    if key is None or not key.reveal():
        return text
    return text.replace(key.reveal(), MASK)
