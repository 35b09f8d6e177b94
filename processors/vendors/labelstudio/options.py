"""Label Studio source options, typed and checked at start-up (kept apart: no numpy in the web process)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from processors.config import SourceConfig

AUTH_MODES = ("auto", "token", "jwt")
DEFAULT_TOKEN_HEADER = "x-labelhook-token"
#: Label Studio's own rule for custom webhook header names (webhooks/models.py HEADERS_SCHEMA).
_HEADER_NAME = re.compile(r"^[a-zA-Z0-9-_]+$")


@dataclass(frozen=True)
class LabelStudioOptions:
    """``LABELHOOK_<SOURCE>_<OPTION>`` for a Label Studio source.

    ``auth``: ``auto`` (a JWT-shaped API_KEY is a personal access token, else a legacy token),
    ``token`` or ``jwt``. ``token_header``: the custom webhook header that carries the shared secret
    (besides ``?token=`` in the URL). ``brush_min_alpha``: a brush pixel is foreground when its alpha
    is at least this (1 = any paint, as Label Studio's COCO export; anti-aliased edges have low alpha).
    """

    auth: str = "auto"
    token_header: str = DEFAULT_TOKEN_HEADER
    brush_min_alpha: int = 1

    @classmethod
    def from_source(cls, source: SourceConfig) -> LabelStudioOptions:
        """Read and validate the options; `ValueError` with a one-line reason naming the option."""
        options = source.options
        auth = options.get("auth", "auto").strip().lower()
        if auth not in AUTH_MODES:
            raise ValueError(f"AUTH must be one of {', '.join(AUTH_MODES)}")
        header = options.get("token_header", DEFAULT_TOKEN_HEADER).strip()
        if not _HEADER_NAME.match(header):
            raise ValueError("TOKEN_HEADER must be a header name of letters, digits, '-' and '_'")
        raw = options.get("brush_min_alpha", "1").strip()
        try:
            min_alpha = int(raw)
        except ValueError:
            raise ValueError("BRUSH_MIN_ALPHA must be an integer from 1 to 255") from None
        if not 1 <= min_alpha <= 255:
            raise ValueError("BRUSH_MIN_ALPHA must be an integer from 1 to 255")
        return cls(auth=auth, token_header=header.lower(), brush_min_alpha=min_alpha)


def check_source(source: SourceConfig) -> str | None:
    """Start-up check: a token to authenticate Label Studio, and the API to fetch annotations from."""
    if not source.secrets:
        return (
            f"SECRET is required for source {source.name!r}: Label Studio cannot sign webhooks, so the "
            "webhook URL (?token=) or a custom header must carry it"
        )
    if not source.api_url:
        return "API_URL is required: the Label Studio server, e.g. https://app.humansignal.com"
    if not source.api_key:
        return "API_KEY is required: a Label Studio access token (legacy token or personal access token)"
    try:
        LabelStudioOptions.from_source(source)
    except ValueError as exc:
        return str(exc)
    return None
