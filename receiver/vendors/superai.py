"""super.AI callbacks: a token in the callback URL, or super.AI's ECDSA signature where a key is set.

super.AI posts ``{id, uuid, state, action, postProcessingEnabled, …}`` with no output inline. Without
``PUBLIC_KEY`` the URL that `labelhook submit` registered carries ``?token=<SECRET>`` (or the caller
sends ``X-Labelhook-Token``), compared in constant time against every configured secret. With
``PUBLIC_KEY`` the ``X-SuperAI-Webhook-Signature`` header (name configurable) must be an ECDSA
signature of the body by that key; the header's encoding and the exact signed bytes are not
specified publicly, so hex or base64, raw ``r||s`` or DER, over the raw body or (for callback-sized
bodies without repeated keys) the body re-serialised with sorted keys, are all accepted; in the latter
case the re-serialised bytes, which are what was signed, are what gets stored.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import string
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from processors.config import SourceConfig
from processors.polling import completion_key
from processors.vendors.superai.options import SuperAIOptions, load_public_key
from processors.vendors.superai.states import job_state
from receiver.bounded_json import JSONRejected, loads_bounded
from receiver.errors import BadRequest, Unauthorized
from receiver.vendors.base import Callback, IncomingRequest, VendorAdapter, parse_json, token_matches

TOKEN_HEADER = "x-labelhook-token"
_PROJECT_FIELDS = ("projectId", "project_id", "appId", "app_id", "projectUuid", "app")
#: A DER P-521 signature in hex is under 300 characters; anything longer is not one.
MAX_SIGNATURE_HEADER = 512
#: super.AI callbacks are a few hundred bytes; only bodies up to this size are re-serialised to look
#: for a sorted-key signature, so a large unauthenticated body is never parsed.
SORTED_FORM_MAX_BYTES = 64 * 1024


class SuperAIAdapter(VendorAdapter):
    vendor = "superai"

    def __init__(self, source: SourceConfig) -> None:
        super().__init__(source)
        self.options = SuperAIOptions.of(source)
        pem = self.options.public_key
        self._public_key = load_public_key(pem) if pem else None
        self._signature_header = self.options.signature_header.lower()

    def verify(self, request: IncomingRequest, now: float) -> Callback:
        if self._public_key is None:
            self._check_token(request)
            return self._interpret(parse_json(request.body))
        signed = self._check_signature(request)
        if signed is None:
            return self._interpret(parse_json(request.body))
        # The signature covers a re-serialised form: that form is what is stored and processed, so
        # `callback.json` holds exactly the verified bytes (never unsigned extras around them).
        callback = self._interpret(parse_json(signed))
        return replace(callback, signed_body=signed)

    def _check_token(self, request: IncomingRequest) -> None:
        given = request.query.get("token") or request.headers.get(TOKEN_HEADER)
        if not given:
            raise Unauthorized(
                "the callback URL token (?token= or X-Labelhook-Token) is missing", code="missing_signature"
            )
        if not token_matches(given, self.source.secrets):
            raise Unauthorized("the callback URL token does not match", code="invalid_signature")

    def _check_signature(self, request: IncomingRequest) -> bytes | None:
        """Check the ECDSA signature; None if it covers the raw body, else the re-serialised bytes it covers.

        Cheapest first, so an unauthenticated request costs one hash of the body and a few verifies:
        the body is hashed once and each decoded signature is checked against that digest. Only if
        none matches, and only for a body of callback size (`SORTED_FORM_MAX_BYTES`), is the body
        parsed (duplicate keys refused: they would let unsigned bytes ride along) and its sorted-key
        forms checked.
        """
        header = request.headers.get(self._signature_header, "").strip()
        if not header:
            raise Unauthorized(f"{self._signature_header} header is missing", code="missing_signature")
        if len(header) > MAX_SIGNATURE_HEADER:
            raise Unauthorized(f"{self._signature_header} is not a signature", code="invalid_signature")
        signatures = _decode_signature(header)
        if _ecdsa_any(self._public_key, signatures, request.body):
            return None
        if len(request.body) <= SORTED_FORM_MAX_BYTES:
            for message in _sorted_forms(request.body):
                if _ecdsa_any(self._public_key, signatures, message):
                    return message
        raise Unauthorized("the signature does not match super.AI's public key", code="invalid_signature")

    def _interpret(self, body: Any) -> Callback:
        if isinstance(body, dict) and "version" in body and "entityType" in body:
            return self._v2(body)
        if isinstance(body, dict) and isinstance(body.get("jobs"), list):
            body = body["jobs"]  # a batch (v2) wrapper
        if isinstance(body, list):
            if len(body) != 1:
                return self._batch(body)
            body = body[0]
        if not isinstance(body, dict):
            raise BadRequest("callback must be a JSON object (or a batch list)", code="malformed_body")
        job_id, vendor_state = _job_and_state(body)
        project = self._project(body)
        state = job_state(vendor_state)
        meta: dict[str, Any] = {"vendor_state": vendor_state}
        if "postProcessingEnabled" in body:
            meta["post_processing"] = _truthy(body["postProcessingEnabled"])
        if isinstance(body.get("action"), str):
            meta["action"] = body["action"]
        if state == "completed":
            return Callback(
                dedupe_key=completion_key(self.source.name, job_id),
                job_id=job_id,
                project=project,
                state=vendor_state,
                meta=meta,
            )
        return Callback(
            dedupe_key=f"{self.source.name}:{job_id}:state:{vendor_state.lower()}",
            job_id=job_id,
            project=project,
            state=vendor_state,
            kind="state",
            meta={**meta, "job_state": state},
        )

    def _batch(self, items: list[Any]) -> Callback:
        """A batch naming several jobs is recorded, not processed: one delivery is one job's output.

        Its jobs are listed in ``meta``; the poller (``LABELHOOK_<SOURCE>_POLL=1`` or ``labelhook
        poll``) fetches the completed ones it knows from `labelhook submit`.
        """
        jobs = [_job_and_state(item) if isinstance(item, dict) else _bad_batch() for item in items]
        if not jobs:
            raise BadRequest("batch callback lists no jobs", code="malformed_body")
        digest = hashlib.sha256(json.dumps(sorted(jobs)).encode()).hexdigest()[:16]
        return Callback(
            dedupe_key=f"{self.source.name}:batch:{digest}",
            job_id=f"batch-{digest}",
            project=self._project(items[0]),
            state="BATCH",
            kind="state",
            meta={"job_state": "open", "batch": [{"id": j, "state": s} for j, s in jobs]},
        )

    def _v2(self, body: Mapping[str, Any]) -> Callback:
        """A v2 callback, ``{"version": "2", "entityType": "batch", "entityId", "state", "appId"}``.

        Batch callbacks (set project-wide, so they share the job callbacks' URL) report that a batch
        was ingested: ``COMPLETED``, ``PARTIAL_FAILURE`` or ``FAILED``. They name no job, so the
        worker looks the batch's jobs up (kind ``batch``); other entity types are acknowledged and
        not stored, as super.AI asks receivers to handle ``entityType`` explicitly.
        """
        version, entity_type = body.get("version"), body.get("entityType")
        if str(version) != "2" or not isinstance(entity_type, str):
            raise BadRequest("v2 callback needs version '2' and an entityType string", code="malformed_body")
        entity_id, state = body.get("entityId"), body.get("state")
        if not isinstance(entity_id, str | int) or isinstance(entity_id, bool) or not str(entity_id).strip():
            raise BadRequest("v2 callback has no entityId", code="malformed_body")
        if not isinstance(state, str) or not state.strip():
            raise BadRequest("v2 callback has no 'state'", code="malformed_body")
        entity_id, state = str(entity_id).strip(), state.strip()
        if entity_type.lower() != "batch":
            return Callback(
                dedupe_key=f"{self.source.name}:v2:{entity_type}:{entity_id}:{state.lower()}",
                job_id=entity_id,
                project=self._project(body),
                state=state,
                enqueue=False,
            )
        return Callback(
            dedupe_key=f"{self.source.name}:batch:{entity_id}:{state.lower()}",
            job_id=entity_id,
            project=self._project(body),
            state=state,
            kind="batch",
            meta={"batch_id": entity_id, "batch_state": state, "version": "2"},
        )

    def _project(self, body: Mapping[str, Any]) -> str:
        configured = self.options.app
        if configured:
            return configured
        for key in _PROJECT_FIELDS:
            value = body.get(key)
            if isinstance(value, str | int) and str(value):
                return str(value)
        return self.source.name


def _job_and_state(body: Mapping[str, Any]) -> tuple[str, str]:
    raw_id = body.get("id") if body.get("id") is not None else body.get("uuid")
    if not isinstance(raw_id, str | int) or isinstance(raw_id, bool) or not str(raw_id).strip():
        raise BadRequest("callback has no job id ('id' or 'uuid')", code="malformed_body")
    state = body.get("state") if body.get("state") is not None else body.get("status")
    if not isinstance(state, str) or not state.strip():
        raise BadRequest("callback has no 'state'", code="malformed_body")
    return str(raw_id).strip(), state.strip()


def _bad_batch() -> tuple[str, str]:
    raise BadRequest("batch callback entries must be JSON objects", code="malformed_body")


def _truthy(value: Any) -> bool:
    """``postProcessingEnabled`` is documented as a string but may arrive as a boolean."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "on")
    return bool(value)


def _decode_signature(header: str) -> list[bytes]:
    value = header.split("=", 1)[1] if header.lower().startswith(("ecdsa=", "sha256=", "v1=")) else header
    value = value.strip()
    candidates: list[bytes] = []
    if len(value) % 2 == 0 and all(c in string.hexdigits for c in value):
        candidates.append(bytes.fromhex(value))
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            candidates.append(decode(value + "=" * (-len(value) % 4)))
        except (binascii.Error, ValueError):
            continue
    signatures = [c for c in dict.fromkeys(candidates) if c]
    if not signatures:
        raise BadRequest("the signature header is neither hex nor base64", code="malformed_signature")
    return signatures


def _sorted_forms(body: bytes) -> list[bytes]:
    """The body re-serialised with sorted keys, in the spellings Python's json module produces.

    Not for a body with a repeated key, or one that is not bounded JSON: such a body can only be
    accepted byte for byte (`_check_signature` checked those first).
    """
    try:
        parsed = loads_bounded(body, unique_keys=True)
    except JSONRejected:
        return []
    forms = [
        json.dumps(parsed, sort_keys=True, separators=separators, ensure_ascii=ascii_only).encode()
        for separators in ((", ", ": "), (",", ":"))
        for ascii_only in (True, False)
    ]
    return [form for form in dict.fromkeys(forms) if form != body]


def _ecdsa_any(key: Any, signatures: list[bytes], message: bytes) -> bool:
    """True if any of ``signatures`` verifies over ``message``; the message is hashed once."""
    from cryptography.hazmat.primitives import hashes

    digest = hashes.Hash(hashes.SHA256())
    digest.update(message)
    prehashed = digest.finalize()
    return any(_ecdsa_ok(key, signature, prehashed) for signature in signatures)


def _ecdsa_ok(key: Any, signature: bytes, digest: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature

    size = (key.curve.key_size + 7) // 8
    if len(signature) == 2 * size:  # raw r||s, as ecdsa's sigdecode_string expects
        r = int.from_bytes(signature[:size], "big")
        s = int.from_bytes(signature[size:], "big")
        der = encode_dss_signature(r, s)
    else:
        der = signature
    try:
        key.verify(der, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    except (InvalidSignature, ValueError):
        return False
    return True
