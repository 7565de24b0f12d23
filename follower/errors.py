"""The follower's errors: one hierarchy rooted in `FollowerError`, exit codes on the errors.

Every error that can end the process carries the exit code it ends it with (`exit_code`, from the
table in docs/operations.md) and the one line the CLI prints for it (`describe()`), so the CLI
maps any `FollowerError` the same way and a new error needs no CLI code.

The HTTP client translates every aiohttp exception, HTTP status and malformed body into one of these
classes at the boundary, so nothing above the client ever sees an aiohttp type. Each class says
whether retrying can help and, for throttling, how long the server asked us to wait; the `kind`
string is what `api_error` events and diagnostics carry.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Final, Protocol

from follower.api.secret import redact_known

EXIT_OK: Final = 0
"""Stopped cleanly: SIGTERM/SIGINT, or --duration elapsed."""
EXIT_FAILURE: Final = 1
"""A runtime failure: the output closed or refusing writes, no pipeline left to follow."""
EXIT_CONFIG: Final = 2
"""Invalid configuration or state file, reported before any request."""
EXIT_START: Final = 3
"""Could not start: the output folder cannot be used, or the ops server cannot listen."""
EXIT_INTERRUPTED: Final = 130
"""A second SIGINT cut the shutdown short."""


class FollowerError(Exception):
    """Base class of every error the follower raises on purpose.

    `exit_code` is the code the process exits with when this error ends it; `describe()` is the
    one line the CLI prints for it, after `follower: `.
    """

    exit_code: ClassVar[int] = EXIT_FAILURE

    def describe(self) -> str:
        """The one line saying what went wrong (and what to do), for stderr.

        Every key the process has read is masked in it: a message may quote a value the
        operator pasted the key into (a state file path, a pipeline name given to `tail`).
        """
        return redact_known(str(self))


class ConfigError(FollowerError):
    """The configuration is invalid; `problems` names every bad key at once."""

    exit_code = EXIT_CONFIG

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in self.problems))


RESET_HINT: Final = (
    "Fix or move it, or start with --reset-state to begin afresh (every pod then starts with "
    "a gap event)"
)


class FilePath(Protocol):
    """A file's path (a `pathlib.Path`), named without importing pathlib: core imports this
    module, and core touches no files (tests/test_layout.py)."""

    def __fspath__(self) -> str: ...


class StateFileError(FollowerError):
    """The state file cannot be used; the message names the file, the reason and the choice."""

    exit_code = EXIT_CONFIG

    def __init__(self, path: FilePath, reason: str, hint: str = RESET_HINT) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"state file {str(path)!r} cannot be used: {reason}. {hint}")


class CheckpointError(FollowerError):
    """The state could not be saved when the run ended (the reason is logged as
    checkpoint_failed): exit 1, so a supervisor does not take the stop for a checkpointed one.
    The next start repeats, never loses, what was written since the last saved checkpoint."""

    def __init__(self) -> None:
        super().__init__(
            "the last checkpoint could not be saved (see checkpoint_failed): the next start "
            "writes again the events written since the one before"
        )


class SinkError(FollowerError):
    """The output cannot take events any more; the run ends (exit 1) with the poll undone."""


class SinkClosedError(SinkError):
    """Nothing more can be delivered: the reader went away (EPIPE), or the output refuses writes
    (a full device, a closed descriptor)."""


class FileSinkError(SinkError):
    """Writing an events file failed (disk full, no permission, folder gone, a symlink planted
    at a rotation or reopen); nothing was cut."""


class OutputFolderError(FileSinkError):
    """At start, the output folder cannot be created or listed, or holds an events file that is
    a symbolic link or not a regular file."""

    exit_code = EXIT_START

    def describe(self) -> str:
        return f"--output-dir: {super().describe()}"


class ListenError(FollowerError):
    """At start, the ops server cannot listen on `ops.listen` (`--listen`): the port is taken,
    the address belongs to no interface of this machine, or the host name does not resolve."""

    exit_code = EXIT_START

    def __init__(self, host: str, port: int, reason: str) -> None:
        self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        super().__init__(reason)

    def describe(self) -> str:
        return f"--listen (ops.listen) {self.address}: cannot serve there: {self}"


class UnknownPipelineError(FollowerError):
    """A name or id given to `follower tail` matches no pipeline the key can see."""


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
