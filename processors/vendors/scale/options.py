"""Scale source options (`ScaleOptions`) and their start-up check (no numpy: the web process loads it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from processors.config import SourceConfig

DEFAULT_API_URL = "https://api.scale.com"
#: LABELHOOK_<SOURCE>_INDEX_IMAGE value → the response key it selects.
INDEX_IMAGES = {"extended": "extendedIndexedImage", "indexed": "indexedImage"}
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class ScaleOptions:
    """How a Scale source is processed.

    ``fetch_task``: re-read the task with ``GET /v1/task/{id}`` before processing (default when an
    API key is set) — the callback only says *that* a task changed; audits and recalls change it again.
    ``index_image``: which combined index image to decode when the response has both.
    ``project``: the output folder's project name (default: the task's ``project``, else the source).
    """

    fetch_task: bool
    index_image: str = INDEX_IMAGES["extended"]
    project: str | None = None

    @classmethod
    def from_source(cls, source: SourceConfig) -> ScaleOptions:
        """Parse the source's options; `ValueError` with a one-line reason naming the key."""
        options = source.options
        raw_fetch = options.get("fetch_task", "").strip().lower()
        if raw_fetch and raw_fetch not in _TRUE + _FALSE:
            raise ValueError("FETCH_TASK must be 1 or 0")
        fetch_task = raw_fetch in _TRUE if raw_fetch else source.api_key is not None
        if fetch_task and source.api_key is None:
            raise ValueError("API_KEY is required with FETCH_TASK=1 (the live key, for GET /v1/task/{id})")
        raw_index = options.get("index_image", "extended").strip().lower()
        if raw_index not in INDEX_IMAGES:
            raise ValueError(f"INDEX_IMAGE must be one of {', '.join(INDEX_IMAGES)}")
        return cls(
            fetch_task=fetch_task, index_image=INDEX_IMAGES[raw_index], project=options.get("project") or None
        )


def check_source(source: SourceConfig) -> str | None:
    """Start-up check: a one-line problem (prefixed with the option key) or None."""
    try:
        ScaleOptions.from_source(source)
    except ValueError as exc:
        return str(exc)
    return None
