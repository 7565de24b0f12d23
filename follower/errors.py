"""The error taxonomy the poll loop acts on.

The HTTP client translates every aiohttp exception, HTTP status and malformed body into one of these
classes at the boundary, so nothing above the client ever sees an aiohttp type. Each class says
whether retrying can help and, for throttling, how long the server asked us to wait; the `kind`
string is what `api_error` events and diagnostics carry.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar


class FollowerError(Exception):
    """Base class of every error the follower raises on purpose."""


class ConfigError(FollowerError):
    """The configuration is invalid; `problems` names every bad key at once."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in self.problems))


class ApiError(FollowerError):
    """A request to the Pipeline API failed.

    `retryable` tells the poll loop whether the same request may succeed later without anyone
    changing anything; `retry_after_s` carries a server-requested delay (429 Retry-After).
    """

    kind: ClassVar[str] = "api_error"
    retryable: ClassVar[bool] = True

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        self.message = message
        self.status = status
        self.retry_after_s = retry_after_s
        super().__init__(message)

    def __str__(self) -> str:
        prefix = f"HTTP {self.status}: " if self.status is not None else ""
        return f"{self.kind}: {prefix}{self.message}"


class AuthError(ApiError):
    """401: the ServiceKey is missing, invalid or revoked; no request with it can succeed."""

    kind = "unauthorized"
    retryable = False


class ForbiddenError(ApiError):
    """403: the key is not a ServiceKey, or may not see this pipeline."""

    kind = "forbidden"
    retryable = False


class NotFoundError(ApiError):
    """404: the pipeline does not exist (or is in another group)."""

    kind = "not_found"
    retryable = False


class ThrottledError(ApiError):
    """429: over the rate limit; `retry_after_s` holds Retry-After when the server sent it."""

    kind = "throttled"


class ServerError(ApiError):
    """5xx: the API failed on its side."""

    kind = "server_error"


class NetworkError(ApiError):
    """The request did not complete: DNS, refused or reset connection, TLS, timeout."""

    kind = "network_error"


class MalformedResponseError(ApiError):
    """The body is not the documented envelope: bad JSON, wrong types, missing fields, too big."""

    kind = "malformed_response"


class EnvelopeError(ApiError):
    """The envelope says `error: true` with a 2xx status."""

    kind = "envelope_error"


class UnexpectedStatusError(ApiError):
    """Any other HTTP status (an unlisted 4xx, a 3xx we do not follow)."""

    kind = "unexpected_status"
    retryable = False
