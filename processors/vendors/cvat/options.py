"""CVAT source options (kept apart from the processor so a web process never imports numpy)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from processors.vendors.options import VendorOptions

if TYPE_CHECKING:
    from processors.config import SourceConfig

MODES = ("annotations", "export")
COMPLETE_ON = ("completed", "acceptance")
DEFAULT_EXPORT_POLL_SECONDS = 2.0
DEFAULT_EXPORT_TIMEOUT_SECONDS = 300.0


@dataclass(frozen=True)
class CvatOptions(VendorOptions):
    """A CVAT source's ``LABELHOOK_<SOURCE>_*`` options (docs/vendors/cvat.md)."""

    #: Which `update:job` transition means "finished": stage→acceptance, or state→completed.
    complete_on: str = "completed"
    #: ``annotations`` (GET the job's annotation JSON) or ``export`` (a CVAT dataset export).
    mode: str = "annotations"
    #: The CVAT format name for MODE=export, e.g. ``COCO 1.0``.
    export_format: str | None = None
    export_poll_seconds: float = DEFAULT_EXPORT_POLL_SECONDS
    export_timeout_seconds: float = DEFAULT_EXPORT_TIMEOUT_SECONDS

    def validate(self, source: SourceConfig) -> str | None:
        if not source.api_key:
            return "API_KEY is required: CVAT results are fetched from its API (Authorization: Token …)"
        if not source.api_url:
            return "API_URL is required: the CVAT server, e.g. https://app.cvat.ai"
        if self.complete_on not in COMPLETE_ON:
            return f"COMPLETE_ON must be one of {', '.join(COMPLETE_ON)}, got {self.complete_on!r}"
        if self.mode not in MODES:
            return f"MODE must be one of {', '.join(MODES)}, got {self.mode!r}"
        if self.mode == "export" and not self.export_format:
            return "EXPORT_FORMAT is required with MODE=export (a CVAT format name, e.g. 'COCO 1.0')"
        return None
