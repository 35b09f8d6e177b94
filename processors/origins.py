"""Allow-list entries for outbound fetches: ``host:port`` origins, parsed once and scoped per source.

Shared by the configuration (which refuses a bad entry at start-up) and the SSRF guard (which admits
exactly these origins). Kept apart from both so neither imports the other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from processors.config import Settings, SourceConfig


def split_origin(entry: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for IPv6) → (lower-case host, port); ValueError names the problem.

    A port is required: an allow-list entry admits one service, never every port of a host (with
    ``127.0.0.1`` listed, any vendor's redirect could reach any local port).
    """
    text = entry.strip().lower()
    host, colon, port = text.rpartition(":")
    if text.startswith("["):
        host, colon, port = text[1:].partition("]:")
    if not colon or not host or "]" in host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{entry.strip()!r} is not host:port (IPv6 as [addr]:port)")
    if ":" in host and not text.startswith("["):
        raise ValueError(f"{entry.strip()!r}: write an IPv6 address as [addr]:port")
    return host.rstrip("."), int(port)


def fetch_allow_for(settings: Settings, source: SourceConfig | None) -> tuple[str, ...]:
    """The ``host:port`` origins a source's fetches may reach past the SSRF guard: the global list,
    the source's own ``LABELHOOK_<SOURCE>_FETCH_ALLOW``, and the origin of its configured API_URL
    (the operator named that server, e.g. an on-prem CVAT; its port only)."""
    allowed = list(settings.fetch_allow_hosts)
    if source is not None:
        allowed += source.fetch_allow
        if source.api_url:
            parts = urlsplit(source.api_url)
            try:
                port = parts.port or (443 if parts.scheme == "https" else 80)
            except ValueError:  # an unusable port in API_URL: nothing to admit
                port = 0
            if parts.hostname and port:
                host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
                allowed.append(f"{host}:{port}")
    return tuple(dict.fromkeys(a.lower() for a in allowed))
