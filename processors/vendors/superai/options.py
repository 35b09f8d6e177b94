"""super.AI source options and the public-key loader they are checked with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from processors.vendors.options import VendorOptions

if TYPE_CHECKING:
    from processors.config import SourceConfig

DEFAULT_SIGNATURE_HEADER = "x-superai-webhook-signature"


def load_public_key(pem: str) -> Any:
    """The EC public key of a PEM string (``\\n`` escapes allowed, as env vars often carry them).

    Raises `ValueError` with a one-line reason; `ImportError` without the ``cryptography`` package.
    """
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    text = pem.replace("\\n", "\n").strip()
    try:
        key = load_pem_public_key(text.encode())
    except (ValueError, TypeError) as exc:
        raise ValueError("is not a PEM public key") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError("is not an ECDSA (elliptic-curve) public key")
    return key


@dataclass(frozen=True)
class SuperAIOptions(VendorOptions):
    """A super.AI source's ``LABELHOOK_<SOURCE>_*`` options (docs/vendors/superai.md)."""

    #: super.AI's ECDSA public key (PEM; ``\n`` escapes allowed): verify signed callbacks with it.
    public_key: str | None = None
    #: The header carrying the ECDSA signature.
    signature_header: str = DEFAULT_SIGNATURE_HEADER
    #: The project (app) jobs belong to; APP_ID is the same thing under super.AI's older name.
    project_id: str | None = None
    app_id: str | None = None

    @property
    def app(self) -> str | None:
        """The configured project/app id (PROJECT_ID wins over APP_ID)."""
        return self.project_id or self.app_id

    def validate(self, source: SourceConfig) -> str | None:
        """A source needs a token (SECRET) or super.AI's public key (PUBLIC_KEY) that loads."""
        if self.public_key:
            try:
                load_public_key(self.public_key)
            except ImportError:
                return (
                    "PUBLIC_KEY needs the 'cryptography' package: pip install 'labelhook[superai-signature]'"
                )
            except ValueError as exc:
                return f"PUBLIC_KEY {exc}"
            return None
        if not source.secrets:
            return (
                f"SECRET is required for source {source.name!r} (the callback URL token), "
                "or PUBLIC_KEY for signed callbacks: refusing to accept unverified callbacks"
            )
        return None
