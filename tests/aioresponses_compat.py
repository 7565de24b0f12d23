"""Make aioresponses 0.7.9 build responses under aiohttp 3.14.

aiohttp 3.14 added a required keyword-only `stream_writer` argument to `ClientResponse.__init__`;
aioresponses 0.7.9 does not pass it, so every mocked call fails with "missing 1 required
keyword-only argument: 'stream_writer'" (aioresponses issue #289). aioresponses builds its
responses with `writer=None` ("request already sent"), in which case aiohttp only reads
`stream_writer.output_size`, so a stand-in holding `output_size = 0` is enough.

Use `compat_aioresponses()` instead of `aioresponses()`: it passes `response_class=CompatResponse`
to every mocked call, so no test can forget it. Drop this module once aioresponses ships a fix.
"""

from __future__ import annotations

from typing import Any, Final

import aiohttp
from aioresponses import aioresponses
from yarl import URL


class _NullStreamWriter:
    """Just enough of aiohttp's StreamWriter for a response whose request was never written."""

    output_size: Final = 0


class CompatResponse(aiohttp.ClientResponse):
    """A ClientResponse that aioresponses 0.7.9 can construct under aiohttp 3.14."""

    def __init__(self, method: str, url: URL, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", _NullStreamWriter())
        super().__init__(method, url, **kwargs)


class CompatAioresponses(aioresponses):
    """`aioresponses` whose mocked calls default to `response_class=CompatResponse`."""

    def add(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("response_class", CompatResponse)
        super().add(*args, **kwargs)


def compat_aioresponses(**kwargs: Any) -> CompatAioresponses:
    """A context manager that mocks `ClientSession` requests, as `aioresponses(**kwargs)` does."""
    return CompatAioresponses(**kwargs)
