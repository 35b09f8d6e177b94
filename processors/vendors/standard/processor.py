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
    """Each secret is a `whsec_<base64>` (or bare base64) key that `standardwebhooks` accepts, or a
    `whpk_<base64>` ed25519 public key (`v1a,` signatures) that `cryptography` loads."""
    from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook

    from processors.vendors.standard.keys import INSTALL_HINT, PUBLIC_PREFIX, BadKey, split_keys

    try:
        split_keys(source.secrets)
    except BadKey as exc:
        return f"SECRET: {exc}"
    except ImportError:
        return f"SECRET: whpk_ (v1a, ed25519) keys need {INSTALL_HINT}"
    for position, secret in enumerate(source.secrets, start=1):
        if secret.reveal().startswith(PUBLIC_PREFIX):
            continue
        try:
            Webhook(secret.reveal())
        except (EmptyWebhookSecretError, binascii.Error, ValueError, RuntimeError):
            return f"SECRET: secret #{position} is not a whsec_<base64> signing key or a whpk_ public key"
    return None


class StandardProcessor(Processor):
    """Stores the verified callback body byte for byte."""

    def process(self, delivery: Delivery, out: JobWriter) -> dict[str, Any]:
        out.write("callback.json", delivery.body, "application/json")
        return {}
