"""Labelbox source options (`LabelboxOptions`) and their start-up check (no numpy: web processes load it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from processors.config import SourceConfig

DEFAULT_API_URL = "https://api.labelbox.com"
#: The SDK refuses to poll an export task more often than every two seconds (Task.wait_till_done).
MIN_EXPORT_POLL_SECONDS = 2.0
DEFAULT_EXPORT_TIMEOUT_SECONDS = 300.0


@dataclass(frozen=True)
class LabelboxOptions:
    """How a Labelbox source is processed.

    ``project_id``: the output folder's project (default: the project the webhook names).
    ``export_poll_seconds`` / ``export_timeout_seconds``: how often and how long the worker waits for
    the export task of a label; past the timeout the delivery is retried later (a new export).
    """

    project_id: str | None = None
    export_poll_seconds: float = MIN_EXPORT_POLL_SECONDS
    export_timeout_seconds: float = DEFAULT_EXPORT_TIMEOUT_SECONDS

    @classmethod
    def from_source(cls, source: SourceConfig) -> LabelboxOptions:
        """Parse the source's options; `ValueError` with a one-line reason naming the key."""
        options = source.options
        poll = _seconds(options, "export_poll_seconds", MIN_EXPORT_POLL_SECONDS)
        if poll < MIN_EXPORT_POLL_SECONDS:
            raise ValueError(
                f"EXPORT_POLL_SECONDS must be at least {MIN_EXPORT_POLL_SECONDS:g} (Labelbox's limit)"
            )
        timeout = _seconds(options, "export_timeout_seconds", DEFAULT_EXPORT_TIMEOUT_SECONDS)
        return cls(
            project_id=options.get("project_id") or None,
            export_poll_seconds=poll,
            export_timeout_seconds=timeout,
        )


def _seconds(options: Mapping[str, str], key: str, default: float) -> float:
    raw = options.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{key.upper()} must be a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{key.upper()} must be a positive number of seconds")
    return value


def check_source(source: SourceConfig) -> str | None:
    """Start-up check: a one-line problem (prefixed with the option key) or None."""
    if source.api_key is None:
        return "API_KEY is required: Labelbox labels and masks are fetched with it (Authorization: Bearer …)"
    try:
        LabelboxOptions.from_source(source)
    except ValueError as exc:
        return str(exc)
    return None
