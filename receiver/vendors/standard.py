"""Standard Webhooks: verify `webhook-id` / `webhook-timestamp` / `webhook-signature` callbacks.

Two schemes sign the same content, ``id.timestamp.body``: `v1,<base64 HMAC-SHA256(key, …)>` with a
`whsec_` secret, and `v1a,<base64 ed25519 signature>` with the sender's `whpk_` public key (the
asymmetric scheme the spec prefers; the `standardwebhooks` package skips it, so it is verified here
with `cryptography`). The header may hold several signatures of either scheme, space-separated (the
sender rotating keys or signing both ways), and we may hold several keys (us rotating): any valid
pair suffices. Header parsing, the clock and the error mapping are ours, because the `standardwebhooks`
package's `verify` reads the wall clock and leaks `ValueError` / `binascii.Error` on malformed
headers. The HMAC is one `hmac.digest` call over the raw bytes (this is the ingest hot path: the
package's `sign` builds a datetime and re-encodes the body, twice the cost); the package stays the
reference — each key is checked against its `sign` when the adapter is built.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

from processors.config import SourceConfig
from processors.vendors.standard.keys import ed25519_valid, split_keys
from processors.vendors.standard.options import StandardOptions
from receiver.errors import BadRequest, Unauthorized
from receiver.vendors.base import Callback, IncomingRequest, VendorAdapter, parse_json


class StandardAdapter(VendorAdapter):
    vendor = "standard"

    def __init__(self, source: SourceConfig) -> None:
        super().__init__(source)
        # Start-up validated the keys (`StandardOptions.validate`), so this cannot fail here.
        keys = split_keys(source.secrets)
        self._keys = [_signing_key(secret) for secret in keys.hmac_secrets]
        self._public_keys = keys.public_keys
        self.tolerance = StandardOptions.of(source).tolerance_seconds

    def secret_headers(self) -> frozenset[str]:
        return frozenset({"webhook-signature", "svix-signature"})

    def verify(self, request: IncomingRequest, now: float) -> Callback:
        headers = request.headers
        # Svix, the most common Standard Webhooks sender, names the same three headers `svix-*` (its
        # own library maps them the same way); the `webhook-*` spelling wins when both are present.
        prefix = "webhook-" if "webhook-signature" in headers or "svix-signature" not in headers else "svix-"
        msg_id = headers.get(prefix + "id", "")
        timestamp_raw = headers.get(prefix + "timestamp", "")
        signature_header = headers.get(prefix + "signature", "")
        if not (msg_id and timestamp_raw and signature_header):
            raise Unauthorized(
                "webhook-id, webhook-timestamp and webhook-signature are required", code="missing_signature"
            )
        if len(msg_id) > 256:
            raise BadRequest("webhook-id is longer than 256 characters", code="malformed_headers")
        try:
            timestamp = int(timestamp_raw)
        except ValueError:
            raise BadRequest(
                "webhook-timestamp must be integer unix seconds", code="malformed_headers"
            ) from None
        if abs(now - timestamp) > self.tolerance:
            raise Unauthorized(
                f"webhook-timestamp is outside the ±{self.tolerance}s window", code="stale_timestamp"
            )
        presented, presented_v1a = _parse_signatures(signature_header)
        signed = b"%s.%d.%s" % (msg_id.encode(), timestamp, request.body)
        matched = False
        for key in self._keys:
            expected = hmac.digest(key, signed, "sha256")
            for candidate in presented:
                matched |= hmac.compare_digest(expected, candidate)
        if not matched:
            # ed25519 verification is public-key work: no secret to leak through timing, so the
            # first valid signature ends the search.
            matched = any(
                ed25519_valid(key, candidate, signed)
                for key in self._public_keys
                for candidate in presented_v1a
            )
        if not matched:
            raise Unauthorized("no signature matches a configured key", code="invalid_signature")
        # Only a verified body is parsed; a correctly signed body that is not JSON (or not UTF-8, which
        # the parser checks) is malformed (400). An unsigned one of either kind was a 401 above.
        parse_json(request.body)
        return Callback(dedupe_key=f"{self.source.name}:{msg_id}", job_id=msg_id, project=self.source.name)


def _signing_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` (or bare base64) secret, exactly as `standardwebhooks` reads it.

    Checked against the package's own `sign` once, here, so the fast path cannot drift from it.
    """
    key = base64.b64decode(secret.removeprefix("whsec_") + "==")
    probe_time = datetime.fromtimestamp(1_700_000_000, tz=UTC)
    reference = base64.b64decode(Webhook(secret).sign("msg_probe", probe_time, "{}").split(",", 1)[1])
    if hmac.digest(key, b"msg_probe.1700000000.{}", "sha256") != reference:
        raise ValueError("secret is not read the way standardwebhooks reads it")
    return key


def _parse_signatures(header: str) -> tuple[list[bytes], list[bytes]]:
    """The decoded `v1` (32-byte HMAC) and `v1a` (64-byte ed25519) signatures of a `webhook-signature`.

    Unknown versions are skipped, as the spec asks, and so are entries whose base64 or length is
    wrong for their scheme; a header with no well-formed signature of either scheme is malformed
    (`BadRequest`) rather than merely wrong.
    """
    v1: list[bytes] = []
    v1a: list[bytes] = []
    for item in header.split(" "):
        version, sep, value = item.partition(",")
        if not sep or version not in _SIGNATURE_BYTES:
            continue
        try:
            decoded = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            continue
        if len(decoded) == _SIGNATURE_BYTES[version]:
            (v1 if version == "v1" else v1a).append(decoded)
    if not (v1 or v1a):
        raise BadRequest(
            "webhook-signature has no well-formed v1 or v1a signature", code="malformed_signature"
        )
    if len(v1a) > MAX_V1A_SIGNATURES:
        # Each ed25519 check costs ~0.1 ms of the event loop; a header stuffed with entries must not
        # buy a sender tens of milliseconds per request. Senders rotate with two or three at most.
        raise BadRequest(
            f"webhook-signature has more than {MAX_V1A_SIGNATURES} v1a signatures", code="malformed_signature"
        )
    return v1, v1a


_SIGNATURE_BYTES = {"v1": 32, "v1a": 64}
MAX_V1A_SIGNATURES = 8
