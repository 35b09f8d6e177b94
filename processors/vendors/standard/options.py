"""Standard Webhooks source options and the signing-key check."""

from __future__ import annotations

import binascii
from dataclasses import dataclass
from typing import TYPE_CHECKING

from processors.vendors.options import VendorOptions

if TYPE_CHECKING:
    from processors.config import SourceConfig

DEFAULT_TOLERANCE_SECONDS = 300
MAX_TOLERANCE_SECONDS = 86_400


@dataclass(frozen=True)
class StandardOptions(VendorOptions):
    """A Standard Webhooks source's ``LABELHOOK_<SOURCE>_*`` options."""

    #: How far `webhook-timestamp` may be from now, either way (replay window), in seconds.
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS

    def validate(self, source: SourceConfig) -> str | None:
        """Each secret is a `whsec_<base64>` (or bare base64) key that `standardwebhooks` accepts, or a
        `whpk_<base64>` ed25519 public key (`v1a,` signatures) that `cryptography` loads."""
        # Imported here: only a start-up check needs the library's key parser.
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
        if self.tolerance_seconds > MAX_TOLERANCE_SECONDS:
            # A wider window only widens replay (and 1e9 s is no window at all).
            most = MAX_TOLERANCE_SECONDS
            return f"TOLERANCE_SECONDS must be at most {most} (a day), got {self.tolerance_seconds}"
        return None
