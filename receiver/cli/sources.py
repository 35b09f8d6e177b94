"""`labelhook sources`: the configured sources, secrets redacted."""

from __future__ import annotations

from processors.config import Settings
from receiver.cli.output import print_rows


def sources(settings: Settings, as_json: bool) -> int:
    """Print one row per source: vendor, verification, how many secrets (never their values)."""
    rows = [
        {
            "source": s.name,
            "vendor": s.vendor,
            "verification": s.verification,
            "secrets": f"{len(s.secrets)} configured (redacted)" if s.secrets else "none",
            "api_url": s.api_url or "",
            "api_key": "(redacted)" if s.api_key else "",
        }
        for s in settings.sources.values()
    ]
    print_rows(rows, as_json)
    return 0
