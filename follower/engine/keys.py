"""The sources' keys as the follower sees them: a 401 pauses a source but for one probe at a
growing interval, until its key works again; and how diagnostics name a source."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from follower.clock import Clock
from follower.engine.settings import RunSettings
from follower.engine.sources import DEFAULT_SOURCE, Source

__all__ = ["KeyWatch"]


class KeyWatch:
    """Pauses and resumes sources as their keys are refused and accepted."""

    def __init__(
        self,
        sources: Sequence[Source],
        *,
        clock: Clock,
        settings: RunSettings,
        rng: random.Random,
        log: Any,
    ) -> None:
        self._sources = tuple(sources)
        self._clock = clock
        self._settings = settings
        self._floor_s = settings.schedule_settings().floor_s
        self._rng = rng
        self._log = log

    def reconfigure(self, settings: RunSettings) -> None:
        """Backoff and schedule floor for the next probe delays."""
        self._settings = settings
        self._floor_s = settings.schedule_settings().floor_s

    def reject(self, source: Source) -> None:
        """401: every request of this key would fail; send one probe at a growing interval."""
        delay = self._settings.backoff.delay(
            source.probe_attempts + 1, self._rng, floor_s=self._floor_s
        )
        if source.reject_key(self._clock.monotonic() + delay):
            self._log.error(
                "service_key_rejected",
                **self.labels(source),
                hint="the API answered 401: check GOLDRUSH_SERVICE_KEY(_FILE) (or the source's "
                "key) holds a valid, unrevoked ServiceKey; polling is paused and resumes when "
                "the key works (a key file is re-read when it changes)",
                next_probe_in_s=round(delay, 3),
            )

    def accepted(self, source: Source) -> None:
        """A request of this source got through: resume it if its key was refused."""
        if source.accept_key():
            self._log.info("service_key_accepted", **self.labels(source))

    def rejected(self) -> list[str]:
        """The names of the sources whose key is refused now."""
        return [source.name for source in self._sources if source.key_rejected]

    def refusal(self) -> str | None:
        """Why the follower is not ready because of its keys, or None."""
        rejected = self.rejected()
        if not rejected:
            return None
        if self._sources[0].name == DEFAULT_SOURCE and len(self._sources) == 1:
            return "the API rejects the ServiceKey (401)"
        return f"the API rejects the ServiceKey of source {', '.join(rejected)} (401)"

    def labels(self, source: Source) -> dict[str, str]:
        """`source=NAME` for diagnostics, when there is more than one source to tell apart."""
        return {"source": source.name} if len(self._sources) > 1 else {}
