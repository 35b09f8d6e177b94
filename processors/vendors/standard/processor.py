"""Standard Webhooks sources: the callback itself is the result; store it as `callback.json`."""

from __future__ import annotations

import binascii
from typing import TYPE_CHECKING, Any

from processors.vendors.base import Processor

if TYPE_CHECKING:
    from processors.config import SourceConfig
    from processors.delivery import Delivery
    from processors.store import JobWriter


def check_secrets(source: SourceConfig) -> str | None:
    """Each secret must be a `whsec_<base64>` (or bare base64) key that `standardwebhooks` accepts."""
    from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook

    for position, secret in enumerate(source.secrets, start=1):
        try:
            Webhook(secret.reveal())
        except (EmptyWebhookSecretError, binascii.Error, ValueError, RuntimeError):
            return f"SECRET: secret #{position} is not a whsec_<base64> signing key"
    return _check_tolerance(source.options.get("tolerance_seconds"))


#: Seconds a signed timestamp may be off: the spec's 5 minutes by default, at most a day (a wider
#: window only widens replay; a negative or zero one refused every callback as stale).
MAX_TOLERANCE_SECONDS = 86_400


def _check_tolerance(raw: str | None) -> str | None:
    if raw is None:
        return None
    text = raw.strip()
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_TOLERANCE_SECONDS:
        return f"TOLERANCE_SECONDS must be whole seconds from 1 to {MAX_TOLERANCE_SECONDS}, got {raw!r}"
    return None


class StandardProcessor(Processor):
    """Stores the verified callback body byte for byte."""

    def process(self, delivery: Delivery, out: JobWriter) -> dict[str, Any]:
        out.write("callback.json", delivery.body, "application/json")
        return {}
