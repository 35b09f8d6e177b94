"""CVAT source options and their start-up check (kept apart so a web process never imports numpy)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from processors.config import SourceConfig

MODES = ("annotations", "export")
COMPLETE_ON = ("completed", "acceptance")
DEFAULT_EXPORT_POLL_SECONDS = 2.0
DEFAULT_EXPORT_TIMEOUT_SECONDS = 300.0


def check_source(source: SourceConfig) -> str | None:
    """Start-up check of a CVAT source's options; a one-line problem (prefixed with the key) or None."""
    options = source.options
    if not source.api_key:
        return "API_KEY is required: CVAT results are fetched from its API (Authorization: Token …)"
    if not source.api_url:
        return "API_URL is required: the CVAT server, e.g. https://app.cvat.ai"
    if options.get("complete_on", "completed") not in COMPLETE_ON:
        return f"COMPLETE_ON must be one of {', '.join(COMPLETE_ON)}"
    mode = options.get("mode", "annotations")
    if mode not in MODES:
        return f"MODE must be one of {', '.join(MODES)}"
    if mode == "export" and not options.get("export_format"):
        return "EXPORT_FORMAT is required with MODE=export (a CVAT format name, e.g. 'COCO 1.0')"
    for key in ("export_poll_seconds", "export_timeout_seconds"):
        if key in options:
            try:
                if float(options[key]) <= 0:
                    raise ValueError
            except ValueError:
                return f"{key.upper()} must be a positive number of seconds"
    return None
