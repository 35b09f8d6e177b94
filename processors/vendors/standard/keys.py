"""Standard Webhooks keys: `whsec_` HMAC secrets (`v1,` signatures) and `whpk_` ed25519 public keys (`v1a,`).

A source's SECRET is a comma-separated list that may mix both kinds (rotation, or a sender that signs
with both schemes). The spec serialises keys as "base64 encoded, prefixed with `whsk_` for the secret
key, and `whpk_` for the public key"; `whpk_` is the raw 32-byte ed25519 public key in every
implementation we found (Svix, which introduced the prefixes, and others). A `whsk_` signing key is
refused: a receiver only verifies, and holding the sender's private key would let it forge callbacks.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from processors.config import Secret

PUBLIC_PREFIX = "whpk_"
SIGNING_PREFIX = "whsk_"
ED25519_KEY_BYTES = 32
INSTALL_HINT = "pip install 'labelhook[standard-v1a]' (the 'cryptography' package)"


class BadKey(ValueError):
    """A configured key cannot be used; the message names which one (by position) and why."""


@dataclass(frozen=True)
class StandardKeys:
    """The keys of one source: HMAC secrets as configured, and loaded ed25519 public keys."""

    hmac_secrets: tuple[str, ...]
    public_keys: tuple[Any, ...]  # cryptography Ed25519PublicKey


def load_public_key(text: str) -> Any:
    """An ed25519 public key from ``whpk_<base64 of 32 bytes>``; `BadKey` or `ImportError` otherwise."""
    raw = text.removeprefix(PUBLIC_PREFIX)
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise BadKey("is not whpk_ followed by standard base64") from None
    if len(data) != ED25519_KEY_BYTES:
        raise BadKey(f"decodes to {len(data)} bytes; an ed25519 public key has {ED25519_KEY_BYTES}")
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        return Ed25519PublicKey.from_public_bytes(data)
    except ValueError:
        raise BadKey("is not a valid ed25519 public key") from None


def split_keys(secrets: tuple[Secret, ...]) -> StandardKeys:
    """Sort a source's secrets into HMAC secrets and ed25519 public keys.

    Raises `BadKey` naming the position of the first unusable key (never its value), or
    `ImportError` when a `whpk_` key is configured without the ``cryptography`` package.
    """
    hmac_secrets: list[str] = []
    public_keys: list[Any] = []
    for position, secret in enumerate(secrets, start=1):
        value = secret.reveal()
        if value.startswith(SIGNING_PREFIX):
            raise BadKey(
                f"secret #{position} is a whsk_ signing key: configure the sender's whpk_ public key "
                "instead (a receiver only verifies)"
            )
        if value.startswith(PUBLIC_PREFIX):
            try:
                public_keys.append(load_public_key(value))
            except BadKey as exc:
                raise BadKey(f"secret #{position} {exc}") from None
        else:
            hmac_secrets.append(value)
    return StandardKeys(tuple(hmac_secrets), tuple(public_keys))


def ed25519_valid(key: Any, signature: bytes, message: bytes) -> bool:
    """Pure Ed25519 (RFC 8032, not pre-hashed) over ``message``, as the spec's `v1a` scheme signs."""
    from cryptography.exceptions import InvalidSignature

    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True
