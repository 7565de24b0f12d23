"""Which of the listed pipelines to follow: filters, explicit ids, and the changes to apply.

With no explicit pipelines (or `discover = true`) the follower follows every pipeline the list
endpoint shows (follower/api/listing.py), filtered by name and project globs and by the user's
intent (`running`, `paused`); explicitly named pipelines are always followed. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase

from follower.core.model import PipelineInfo


@dataclass(frozen=True, slots=True)
class Selection:
    """Filters on listed pipelines; an empty tuple does not filter.

    `names` and `projects` are case-sensitive globs (`fnmatch`: `*`, `?`, `[abc]`); a pipeline
    without a project matches no project glob. `statuses` are the user's intents (`running`,
    `paused`), compared case-insensitively. A pipeline must pass every non-empty filter.
    """

    names: tuple[str, ...] = ()
    projects: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()

    def matches(self, info: PipelineInfo) -> bool:
        """True when `info` passes every filter."""
        if self.names and not any(fnmatchcase(info.name, glob) for glob in self.names):
            return False
        if self.projects and (
            info.project is None
            or not any(fnmatchcase(info.project, glob) for glob in self.projects)
        ):
            return False
        if self.statuses:
            wanted = {status.casefold() for status in self.statuses}
            if info.status is None or info.status.casefold() not in wanted:
                return False
        return True


def followed_ids(
    explicit: Iterable[str], listed: Iterable[PipelineInfo], selection: Selection
) -> list[str]:
    """The explicit ids (never filtered), then the listed ones the selection matches; no repeats.

    Apply sharding to the result, so replicas sharing one config split explicit ids too.
    """
    ids = dict.fromkeys(explicit)
    ids.update(dict.fromkeys(info.id for info in listed if selection.matches(info)))
    return list(ids)


def changes(followed: Iterable[str], listed: Iterable[str]) -> tuple[list[str], list[str]]:
    """(added, removed): ids to start following and ids to stop following, each sorted."""
    before, after = set(followed), set(listed)
    return sorted(after - before), sorted(before - after)
