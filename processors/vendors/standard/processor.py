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
    return None


class StandardProcessor(Processor):
    """Stores the verified callback body byte for byte."""

    def process(self, delivery: Delivery, out: JobWriter) -> dict[str, Any]:
        out.write("callback.json", delivery.body, "application/json")
        return {}
