"""Labelbox source options (`LabelboxOptions`); no numpy, so the web process can load it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from processors.vendors.options import VendorOptions

if TYPE_CHECKING:
    from processors.config import SourceConfig

DEFAULT_API_URL = "https://api.labelbox.com"
#: The SDK refuses to poll an export task more often than every two seconds (Task.wait_till_done).
MIN_EXPORT_POLL_SECONDS = 2.0
DEFAULT_EXPORT_TIMEOUT_SECONDS = 300.0


@dataclass(frozen=True)
class LabelboxOptions(VendorOptions):
    """A Labelbox source's ``LABELHOOK_<SOURCE>_*`` options (docs/vendors/labelbox.md)."""

    #: The output folder's project, and the project to export from when a webhook names none.
    project_id: str | None = None
    #: How often the worker checks the label's export task (the SDK's minimum is 2 s).
    export_poll_seconds: float = MIN_EXPORT_POLL_SECONDS
    #: How long one attempt waits for the export task; then the delivery is retried (a new export).
    export_timeout_seconds: float = DEFAULT_EXPORT_TIMEOUT_SECONDS

    def validate(self, source: SourceConfig) -> str | None:
        if source.api_key is None:
            return (
                "API_KEY is required: Labelbox labels and masks are fetched with it (Authorization: Bearer …)"
            )
        if self.export_poll_seconds < MIN_EXPORT_POLL_SECONDS:
            return (
                f"EXPORT_POLL_SECONDS must be at least {MIN_EXPORT_POLL_SECONDS:g} (Labelbox's limit), "
                f"got {self.export_poll_seconds:g}"
            )
        return None
