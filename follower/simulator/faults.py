"""Faults the simulator injects: throttling, server errors, slow and malformed answers.

Each request draws its faults from one seeded RNG in a fixed order, so a run with the same seed and
the same sequence of requests gets the same faults. Variants of a fault (which 5xx, which kind of
malformed body) cycle, so a handful of requests covers them all.
"""

from __future__ import annotations

import copy
import math
import random
from dataclasses import dataclass
from typing import Final, Literal

from follower.simulator import wire

FaultKind = Literal["429", "5xx", "envelope_error", "malformed"]
Endpoint = Literal["list", "pipeline", "status", "logs"]


@dataclass(frozen=True, slots=True)
class FaultSettings:
    """How often each fault happens (rates are probabilities per request, 0 to 1)."""

    rate_429: float = 0.0
    retry_after_s: float | None = 1.0
    """Retry-After of the random 429s; None: no header."""
    rate_5xx: float = 0.0
    rate_slow: float = 0.0
    slow_s: float = 5.0
    """How long a slow answer is delayed (on the injected clock)."""
    rate_malformed: float = 0.0
    rate_envelope_error: float = 0.0
    """200 with `{"error": true, "error_code": "500"}`."""
    rate_limit_rps: float | None = None
    """Server-side token bucket over all requests (burst: one second's worth); above it, 429."""
    seed: int = 0

    def __post_init__(self) -> None:
        problems = [
            f"{name} must be between 0 and 1, got {value}"
            for name, value in (
                ("rate_429", self.rate_429),
                ("rate_5xx", self.rate_5xx),
                ("rate_slow", self.rate_slow),
                ("rate_malformed", self.rate_malformed),
                ("rate_envelope_error", self.rate_envelope_error),
            )
            if not 0.0 <= value <= 1.0
        ]
        if self.retry_after_s is not None and not self.retry_after_s >= 0:
            problems.append(f"retry_after_s must be >= 0 or None, got {self.retry_after_s}")
        if not self.slow_s >= 0:
            problems.append(f"slow_s must be >= 0, got {self.slow_s}")
        if self.rate_limit_rps is not None and not self.rate_limit_rps > 0:
            problems.append(f"rate_limit_rps must be > 0 or None, got {self.rate_limit_rps}")
        if problems:
            raise ValueError("invalid fault settings: " + "; ".join(problems))


@dataclass(frozen=True, slots=True)
class Decision:
    """The faults of one request: an optional delay, then at most one fault."""

    slow: bool
    fault: FaultKind | None


class FaultInjector:
    """Draws each request's faults from a seeded RNG; the settings may change mid-run."""

    def __init__(self, settings: FaultSettings) -> None:
        self.settings = settings
        self._rng = random.Random(settings.seed)
        self._variants: dict[str, int] = {}

    def draw(self) -> Decision:
        """The next request's faults (always five draws, so one rate never shifts the others)."""
        s = self.settings
        slow, u429, u5xx, uenv, umal = (self._rng.random() for _ in range(5))
        fault: FaultKind | None = None
        if u429 < s.rate_429:
            fault = "429"
        elif u5xx < s.rate_5xx:
            fault = "5xx"
        elif uenv < s.rate_envelope_error:
            fault = "envelope_error"
        elif umal < s.rate_malformed:
            fault = "malformed"
        return Decision(slow=slow < s.rate_slow, fault=fault)

    def variant(self, kind: str) -> int:
        """0, 1, 2, ... per kind, so the variants of a fault cycle."""
        number = self._variants.get(kind, 0)
        self._variants[kind] = number + 1
        return number


_TOKEN_SLACK: Final = 1e-9
"""Float rounding slack of the rate limiter (the follower's RequestBudget uses the same)."""


class TokenBucket:
    """A token bucket over all requests: `rate_per_s` tokens a second, at most `burst` saved."""

    def __init__(self, rate_per_s: float, burst: float) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._tokens = burst
        self._last: float | None = None

    def take(self, now: float) -> float:
        """Take a token at `now`: 0.0 if there was one, else seconds until there will be one."""
        if self._last is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate_per_s)
        self._last = now
        # A client pacing itself at exactly `rate_per_s` comes back after 1/rate seconds, and the
        # float refill (now - last) * rate can fall short of 1.0 by an ulp or so: that is a token.
        if self._tokens >= 1.0 - _TOKEN_SLACK:
            self._tokens = max(0.0, self._tokens - 1.0)
            return 0.0
        return (1.0 - self._tokens) / self.rate_per_s


def retry_after_header(seconds: float) -> str:
    """Retry-After as whole seconds when it is whole, else with up to 3 decimals."""
    if seconds == int(seconds):
        return str(int(seconds))
    return f"{seconds:.3f}".rstrip("0").rstrip(".")


def throttle_header(wait_s: float) -> str:
    """Retry-After for the rate limiter: whole seconds (rounded up, at least 1), per RFC 9110."""
    return str(max(1, math.ceil(wait_s)))


# --- bodies --------------------------------------------------------------------------------------

JSON: Final = "application/json"
HTML: Final = "text/html"
SERVER_ERRORS: Final = (500, 502, 503, 504)


def server_error(variant: int) -> tuple[int, bytes, str]:
    """(status, body, content type) of the `variant`-th 5xx: envelopes and a proxy's HTML pages."""
    status = SERVER_ERRORS[variant % len(SERVER_ERRORS)]
    if status == 500:
        return status, wire.dumps(wire.failure(500, "Internal server error")), JSON
    if status == 503:
        return status, wire.dumps(wire.failure(503, "Service temporarily unavailable")), JSON
    reason = "Bad Gateway" if status == 502 else "Gateway Timeout"
    page = (
        f"<html><head><title>{status} {reason}</title></head><body><h1>{reason}</h1></body></html>"
    )
    return status, page.encode(), HTML


MALFORMED: Final = ("truncated", "wrong_types", "missing_fields", "not_json", "no_envelope")
"""The variants of a malformed 200 answer, in the order they cycle."""


def malformed(variant: int, endpoint: Endpoint, data: object) -> tuple[bytes, str]:
    """(body, content type) of the `variant`-th malformed answer to a request for `data`."""
    kind = MALFORMED[variant % len(MALFORMED)]
    if kind == "truncated":
        body = wire.dumps(wire.ok(data))
        return body[: max(1, len(body) // 2)], JSON
    if kind == "not_json":
        return b"<html><body>upstream sent an invalid response</body></html>", JSON
    if kind == "no_envelope":
        return wire.dumps(data), JSON
    broken = copy.deepcopy(data)
    if kind == "wrong_types":
        _wrong_types(endpoint, broken)
    else:
        _missing_fields(endpoint, broken)
    return wire.dumps(wire.ok(broken)), JSON


def _wrong_types(endpoint: Endpoint, data: object) -> None:
    if not isinstance(data, dict):
        return
    if endpoint == "list":
        data["items"] = "items"
        data["pagination"] = ["has_more", True]
    elif endpoint == "pipeline":
        data["id"] = 12345
        data["status"] = ["running"]
    elif endpoint == "status":
        data["status"] = 1
        data["ready"] = "1"
    else:
        for pod in data.get("pods", []):
            pod["logs"] = str(pod["logs"]).splitlines()
            pod["pod"] = 0


def _missing_fields(endpoint: Endpoint, data: object) -> None:
    if not isinstance(data, dict):
        return
    if endpoint == "list":
        data.pop("pagination", None)
        for item in data.get("items", []):
            item.pop("id", None)
    elif endpoint == "pipeline":
        data.pop("id", None)
    elif endpoint == "status":
        data.pop("status", None)
    else:
        for pod in data.get("pods", []):
            pod.pop("logs", None)
        if not data.get("pods"):
            data.pop("pods", None)
