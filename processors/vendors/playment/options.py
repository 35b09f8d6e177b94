"""Playment / TELUS source options."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from processors.vendors.options import VendorOptions

if TYPE_CHECKING:
    from processors.config import SourceConfig


@dataclass(frozen=True)
class PlaymentOptions(VendorOptions):
    """A Playment source's ``LABELHOOK_<SOURCE>_*`` options (docs/vendors/playment.md)."""

    #: The project jobs are created in (`submit`) and callbacks default to when they name none.
    project_id: str | None = None
    #: Put the source's token in the callback URL (`?token=`) where the static key header cannot be set.
    token_in_url: bool = False
    #: This source is the demo's local Playment sandbox (`labelhook run --demo` sets it).
    sandbox: bool = False

    def validate(self, source: SourceConfig) -> str | None:
        if not source.api_key:
            return "API_KEY is required: results are fetched from Playment's API"
        return None
