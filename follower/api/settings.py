"""How the follower talks to the API, as configured: `http.*`, one value the service hands out.

The client's own defaults (follower/api/client.py) are referred to, not written again.
"""

from __future__ import annotations

from dataclasses import dataclass

from follower.api.client import DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_TIMEOUT_S


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """`http.*`: the client's bounds (`PipelineApi`), the runner's requests in flight, and
    whether plain http may go to a host that is not loopback."""

    timeout_s: float = DEFAULT_TIMEOUT_S
    """Every request, connect to last byte."""
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    max_in_flight: int = 8
    """Requests outstanding at once, over every source (the runner's workers)."""
    allow_insecure_http: bool = False
    """Plain http to a host that is not loopback (the ServiceKey would travel unencrypted)."""
