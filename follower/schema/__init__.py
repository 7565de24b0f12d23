"""The JSON Schema of the events, one file per kind plus `event.schema.json` for any event.

The files ship inside the package (`follower/schema/v1/`), so a consumer can validate what the
follower writes against the exact schema of the installed version:

    from follower.schema import load_all
    schemas = load_all()          # {"event": {...}, "log": {...}, ...}

Each file is self-contained; `event.schema.json` refers to the kind files by their `$id`
(`urn:goldrush-follower:event:1:<kind>`), so a validator needs all of them registered.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any, Final

from follower.core.model import SCHEMA_VERSION

SCHEMA_DIR: Final = f"v{SCHEMA_VERSION}"
UMBRELLA: Final = "event"


def names() -> list[str]:
    """The schema files' names without `.schema.json`: `event` and one per event kind."""
    folder = resources.files(__name__).joinpath(SCHEMA_DIR)
    return sorted(
        entry.name.removesuffix(".schema.json")
        for entry in folder.iterdir()
        if entry.name.endswith(".schema.json")
    )


def load(name: str) -> dict[str, Any]:
    """One schema file (`event`, `log`, `gap`, ...) parsed."""
    text = resources.files(__name__).joinpath(SCHEMA_DIR, f"{name}.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def load_all() -> dict[str, dict[str, Any]]:
    """Every schema file of this version, by name."""
    return {name: load(name) for name in names()}
