"""Standard Webhooks: verify `webhook-id` / `webhook-timestamp` / `webhook-signature` callbacks.

The signature is `v1,<base64 HMAC-SHA256(key, id.timestamp.body)>`; the header may hold several,
space-separated (the sender rotating keys), and we may hold several keys (us rotating): any pair may
match. Header parsing, the clock and the error mapping are ours, because the `standardwebhooks`
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
from processors.vendors.standard.options import StandardOptions
from receiver.errors import BadRequest, Unauthorized
from receiver.vendors.base import Callback, IncomingRequest, VendorAdapter, parse_json


class StandardAdapter(VendorAdapter):
    vendor = "standard"

    def __init__(self, source: SourceConfig) -> None:
        super().__init__(source)
        self._keys = [_signing_key(secret.reveal()) for secret in source.secrets]
        self.tolerance = StandardOptions.of(source).tolerance_seconds

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
        presented = _parse_signatures(signature_header)
        signed = b"%s.%d.%s" % (msg_id.encode(), timestamp, request.body)
        matched = False
        for key in self._keys:
            expected = hmac.digest(key, signed, "sha256")
            for candidate in presented:
                matched |= hmac.compare_digest(expected, candidate)
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


def _parse_signatures(header: str) -> list[bytes]:
    """The decoded `v1` signatures of a `webhook-signature` header; `BadRequest` if there are none.

    Unknown versions (`v1a,…`) are skipped, as the spec asks, but a header with no parseable `v1`
    signature at all is malformed rather than merely wrong.
    """
    signatures: list[bytes] = []
    for item in header.split(" "):
        version, sep, value = item.partition(",")
        if not sep or version != "v1":
            continue
        try:
            decoded = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            continue
        if len(decoded) == 32:
            signatures.append(decoded)
    if not signatures:
        raise BadRequest("webhook-signature has no well-formed v1 signature", code="malformed_signature")
    return signatures
