"""Label Studio source options, typed and checked at start-up (kept apart: no numpy in the web process)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from processors.vendors.options import VendorOptions

if TYPE_CHECKING:
    from processors.config import SourceConfig

AUTH_MODES = ("auto", "token", "jwt")
DEFAULT_TOKEN_HEADER = "x-labelhook-token"
#: Label Studio's own rule for custom webhook header names (webhooks/models.py HEADERS_SCHEMA).
_HEADER_NAME = re.compile(r"^[a-zA-Z0-9-_]+$")


@dataclass(frozen=True)
class LabelStudioOptions(VendorOptions):
    """A Label Studio source's ``LABELHOOK_<SOURCE>_*`` options (docs/vendors/labelstudio.md)."""

    #: ``auto``: a JWT-shaped API_KEY is a personal access token (refresh → Bearer), anything else a
    #: legacy token (``Authorization: Token``); ``token`` or ``jwt`` force one kind.
    auth: str = "auto"
    #: The custom webhook header that may carry the shared secret (besides ``?token=`` in the URL).
    token_header: str = DEFAULT_TOKEN_HEADER
    #: A brush pixel is foreground when its alpha is at least this (1 = any paint, as Label Studio's
    #: COCO export; the editor anti-aliases brush edges, so edge pixels have low alpha).
    brush_min_alpha: int = 1

    @property
    def header(self) -> str:
        """``token_header`` as the receiver sees header names (lower case)."""
        return self.token_header.strip().lower()

    def validate(self, source: SourceConfig) -> str | None:
        """A token to authenticate Label Studio, the API to fetch annotations from, sane options."""
        if not source.secrets:
            return (
                f"SECRET is required for source {source.name!r}: Label Studio cannot sign webhooks, so "
                "the webhook URL (?token=) or a custom header must carry it"
            )
        if not source.api_url:
            return "API_URL is required: the Label Studio server, e.g. https://app.humansignal.com"
        if not source.api_key:
            return "API_KEY is required: a Label Studio access token (legacy token or personal access token)"
        if self.auth.strip().lower() not in AUTH_MODES:
            return f"AUTH must be one of {', '.join(AUTH_MODES)}, got {self.auth!r}"
        if not _HEADER_NAME.match(self.token_header.strip()):
            return "TOKEN_HEADER must be a header name of letters, digits, '-' and '_'"
        if not 1 <= self.brush_min_alpha <= 255:
            return f"BRUSH_MIN_ALPHA must be an integer from 1 to 255, got {self.brush_min_alpha}"
        return None
