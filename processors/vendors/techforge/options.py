"""TechForge source options."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from processors.vendors.options import VendorOptions

if TYPE_CHECKING:
    from processors.config import SourceConfig

DEFAULT_CREATE_PATH = "/api/provider/jobs"
DEFAULT_STATUS_PATH = "/api/jobs-get?uuid={uuid}"


@dataclass(frozen=True)
class TechForgeOptions(VendorOptions):
    """A TechForge source's ``LABELHOOK_<SOURCE>_*`` options (docs/vendors/techforge.md)."""

    #: The create-job path under API_URL.
    create_path: str = DEFAULT_CREATE_PATH
    #: The job-status path under API_URL; ``{uuid}`` is replaced by the job's uuid.
    status_path: str = DEFAULT_STATUS_PATH
    #: Send the API key in this header instead of ``Authorization: Bearer``.
    auth_header: str = ""

    def validate(self, source: SourceConfig) -> str | None:
        """An API key and base URL are required (there is no callback secret to verify)."""
        if source.api_key is None or not source.api_key.reveal().strip():
            return "API_KEY is required: TechForge jobs are created and polled with the account's API key"
        if not source.api_url:
            return "API_URL is required: the TechForge API base URL, e.g. https://api.example.com"
        if "{uuid}" not in self.status_path:
            return "STATUS_PATH must contain {uuid}, where the job's uuid goes"
        return None
