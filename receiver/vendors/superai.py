"""super.AI callbacks: a token in the callback URL, or super.AI's ECDSA signature where a key is set.

super.AI posts ``{id, uuid, state, action, postProcessingEnabled, …}`` with no output inline. Without
``PUBLIC_KEY`` the URL that `labelhook submit` registered carries ``?token=<SECRET>`` (or the caller
sends ``X-Labelhook-Token``), compared in constant time against every configured secret. With
``PUBLIC_KEY`` the ``X-SuperAI-Webhook-Signature`` header (name configurable) must be an ECDSA
signature of the body by that key; the header's encoding and the exact signed bytes are not
specified publicly, so hex or base64, raw ``r||s`` or DER, over the raw body or the body re-serialised
with sorted keys, are all accepted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import string
from collections.abc import Mapping
from typing import Any

from processors.config import SourceConfig
from processors.polling import completion_key
from processors.vendors.superai.options import SuperAIOptions, load_public_key
from processors.vendors.superai.states import job_state
from receiver.errors import BadRequest, Unauthorized
from receiver.vendors.base import Callback, IncomingRequest, VendorAdapter, parse_json, token_matches

TOKEN_HEADER = "x-labelhook-token"
_PROJECT_FIELDS = ("projectId", "project_id", "appId", "app_id", "projectUuid", "app")


class SuperAIAdapter(VendorAdapter):
    vendor = "superai"

    def __init__(self, source: SourceConfig) -> None:
        super().__init__(source)
        self.options = SuperAIOptions.of(source)
        pem = self.options.public_key
        self._public_key = load_public_key(pem) if pem else None
        self._signature_header = self.options.signature_header.lower()

    def verify(self, request: IncomingRequest, now: float) -> Callback:
        if self._public_key is not None:
            self._check_signature(request)
        else:
            self._check_token(request)
        body = parse_json(request.body)
        return self._interpret(body)

    def _check_token(self, request: IncomingRequest) -> None:
        given = request.query.get("token") or request.headers.get(TOKEN_HEADER)
        if not given:
            raise Unauthorized(
                "the callback URL token (?token= or X-Labelhook-Token) is missing", code="missing_signature"
            )
        if not token_matches(given, self.source.secrets):
            raise Unauthorized("the callback URL token does not match", code="invalid_signature")

    def _check_signature(self, request: IncomingRequest) -> None:
        header = request.headers.get(self._signature_header, "").strip()
        if not header:
            raise Unauthorized(f"{self._signature_header} header is missing", code="missing_signature")
        signatures = _decode_signature(header)
        if not any(
            _ecdsa_ok(self._public_key, signature, message)
            for signature in signatures
            for message in _signed_messages(request.body)
        ):
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


def _signed_messages(body: bytes) -> list[bytes]:
    """The raw body, and the body with keys sorted (super.AI sorts keys before signing)."""
    messages = [body]
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        return messages
    for separators in ((", ", ": "), (",", ":")):
        for ascii_only in (True, False):
            text = json.dumps(parsed, sort_keys=True, separators=separators, ensure_ascii=ascii_only)
            messages.append(text.encode())
    return list(dict.fromkeys(messages))


def _ecdsa_ok(key: Any, signature: bytes, message: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    size = (key.curve.key_size + 7) // 8
    if len(signature) == 2 * size:  # raw r||s, as ecdsa's sigdecode_string expects
        r = int.from_bytes(signature[:size], "big")
        s = int.from_bytes(signature[size:], "big")
        der = encode_dss_signature(r, s)
    else:
        der = signature
    try:
        key.verify(der, message, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True
