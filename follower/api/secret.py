"""The ServiceKey as a value that cannot leak by accident.

`str()`, `repr()` and f-strings of a `ServiceKey` print a mask, so the key can travel through
config objects, exceptions and log calls without ever being written out. Only `reveal()` gives the
text, and only the HTTP client calls it to build the Authorization header.

Every text that comes from the API (each field of each endpoint, error bodies and reasons) and
every diagnostic goes through one masking path, `Masker`, which finds the key in any letter case:
an API that upper-cases a phase or lower-cases a pod name must not print it either.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
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


# --- masking: the one path every text from the API and every diagnostic goes through -----------

# Characters that have no other case, so a run of them is found by a plain (fast) `in` and a
# text without it cannot hold the key in any case. Letters are left out: under IGNORECASE `k`
# also matches the Kelvin sign.
_CASELESS: Final = frozenset("0123456789-_.~+/=:")
_MIN_ANCHOR: Final = 4


class Masker:
    """Replaces each of some keys, in any letter case, with the mask; cheap when none is there.

    An API can echo the key back upper-cased (a phase), lower-cased (a pod name) or as sent; a
    case-insensitive regex over every 8 MB tail costs far more than a plain search (docs/design.md),
    so each key has an anchor (its longest run of caseless characters) searched for first, and the
    regex runs only on the texts that hold one. A key without a long enough anchor is looked for in
    the casefolded text instead.
    """

    __slots__ = ("_anchors", "_folded", "_pattern")

    def __init__(self, values: Iterable[str]) -> None:
        keys = sorted({value for value in values if value}, key=len, reverse=True)
        self._pattern = (
            re.compile("|".join(map(re.escape, keys)), re.IGNORECASE) if keys else None
        )
        anchors = [_anchor(key) for key in keys]
        self._anchors = tuple(a for a in anchors if len(a) >= _MIN_ANCHOR)
        self._folded = tuple(
            key.casefold() for key, a in zip(keys, anchors, strict=True) if len(a) < _MIN_ANCHOR
        )

    def __call__(self, text: str) -> str:
        """`text` with every key, in any case, replaced by the mask."""
        if self._pattern is None or not self.could_hold(text):
            return text
        return self._pattern.sub(MASK, text)

    def could_hold(self, text: str) -> bool:
        """False when `text` surely holds no key (true is only a hint)."""
        if any(anchor in text for anchor in self._anchors):
            return True
        if self._folded:
            folded = text.casefold()
            return any(key in folded for key in self._folded)
        return False


def _anchor(key: str) -> str:
    """The longest run of caseless characters of `key`."""
    runs = "".join(c if c in _CASELESS else " " for c in key).split()
    return max(runs, key=len, default="")


@functools.lru_cache(maxsize=8)
def masker(*values: str) -> Masker:
    """The `Masker` of these key values (cached: a key lives for many requests)."""
    return Masker(values)


def masker_of(key: ServiceKey | None) -> Masker:
    """The `Masker` of one key (None: masks nothing)."""
    return masker(key.reveal()) if key is not None else masker()


_known: list[str] = []


def remember(key: ServiceKey) -> None:
    """Add `key` to the keys `redact_known` masks (the first one, and each rotated one)."""
    value = key.reveal()
    if value and value not in _known:
        _known.append(value)


def redact_known(text: str) -> str:
    """`text` with every key this process has used, in any case, replaced by the mask."""
    return masker(*_known)(text)


def redact(text: str, key: ServiceKey | None) -> str:
    """`text` with every occurrence of the key, in any case, replaced by the mask."""
    return masker_of(key)(text)
