"""Runtime controls of a running simulator: keys, deleted pipelines and the current faults.

Tests change the world mid-run through `app[CONTROL]`: revoke the key (the next request gets 401),
delete a pipeline (404 from then on), switch faults on and off.
"""

from __future__ import annotations

from follower.simulator.faults import Decision, FaultInjector, FaultSettings, TokenBucket

API_KEY_PREFIX = "cqt_"
"""Regular GoldRush API keys start with this; the Pipeline API answers them with 403."""


class Control:
    """The mutable part of the simulator, shared by the app's handlers and the test."""

    def __init__(self, key: str, faults: FaultSettings) -> None:
        if key.startswith(API_KEY_PREFIX):
            raise ValueError(f"the simulator's key must not start with {API_KEY_PREFIX!r}")
        self._original_key = key
        self._keys = {key}
        self._deleted: set[str] = set()
        self._injector = FaultInjector(faults)
        self._bucket = _bucket(faults)

    # --- keys -----------------------------------------------------------------------------------

    def key_valid(self, key: str) -> bool:
        """Whether `key` is a currently valid Service Key."""
        return key in self._keys

    def revoke_key(self, key: str | None = None) -> None:
        """Revoke `key` (default: the key the app was created with); it gets 401 from now on."""
        self._keys.discard(self._original_key if key is None else key)

    def restore_key(self) -> None:
        """Make the key the app was created with valid again."""
        self._keys.add(self._original_key)

    def add_key(self, key: str) -> None:
        """Accept another Service Key too (a rotation's new key)."""
        if key.startswith(API_KEY_PREFIX):
            raise ValueError(f"a Service Key must not start with {API_KEY_PREFIX!r}")
        self._keys.add(key)

    # --- pipelines ------------------------------------------------------------------------------

    def delete_pipeline(self, pipeline_id: str) -> None:
        """Delete a pipeline: 404 on every endpoint and gone from the list."""
        self._deleted.add(pipeline_id)

    def restore_pipeline(self, pipeline_id: str) -> None:
        """Undo `delete_pipeline`."""
        self._deleted.discard(pipeline_id)

    def is_deleted(self, pipeline_id: str) -> bool:
        """Whether the pipeline was deleted."""
        return pipeline_id in self._deleted

    # --- faults ---------------------------------------------------------------------------------

    @property
    def faults(self) -> FaultSettings:
        """The faults in effect."""
        return self._injector.settings

    def set_faults(self, faults: FaultSettings) -> None:
        """Change the faults from the next request on (the RNG goes on; a new limit starts full)."""
        if faults.rate_limit_rps != self._injector.settings.rate_limit_rps:
            self._bucket = _bucket(faults)
        self._injector.settings = faults

    def draw(self) -> Decision:
        """The next request's faults."""
        return self._injector.draw()

    def variant(self, kind: str) -> int:
        """The next variant number of a fault kind (they cycle)."""
        return self._injector.variant(kind)

    def throttle(self, now: float) -> float:
        """0.0 if the rate limit lets a request through at `now`, else the seconds to wait."""
        return 0.0 if self._bucket is None else self._bucket.take(now)


def _bucket(faults: FaultSettings) -> TokenBucket | None:
    rps = faults.rate_limit_rps
    return None if rps is None else TokenBucket(rps, burst=max(1.0, rps))
