"""CVAT webhooks: verify `X-Signature-256` and decide whether an event is a job completion to process.

The signature is ``sha256=<hex HMAC-SHA256(secret, raw body)>`` (CVAT signs the exact bytes it posts;
its docs show the header without the ``sha256=`` prefix, so both are accepted, hex in any case).
Only ``update:job`` events whose job *is now* completed are enqueued — ``state == "completed"``, or
``stage == "acceptance"`` with ``COMPLETE_ON=acceptance``. Two payload layouts are live: with
``before_update`` (older servers: the old values of the changed fields) the field must have changed
*to* the completed value; without it the job's current value decides. Everything else (``ping``,
other events, progress) is acknowledged with 200 and stored nowhere. CVAT sends no delivery id and no
timestamp, so the dedupe key is the job's completion key plus its ``updated_date``: a redelivered or
replayed completion is a duplicate, a job completed again after new edits is processed again.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Mapping
from typing import Any

from processors.config import SourceConfig
from processors.vendors.cvat.options import CvatOptions
from receiver.errors import BadRequest, Unauthorized
from receiver.vendors.base import Callback, IncomingRequest, VendorAdapter, parse_json

log = logging.getLogger("labelhook.receiver.cvat")
SIGNATURE_HEADER = "x-signature-256"


class CvatAdapter(VendorAdapter):
    vendor = "cvat"

    def __init__(self, source: SourceConfig) -> None:
        super().__init__(source)
        self._keys = [secret.reveal().encode() for secret in source.secrets]
        self.complete_on = CvatOptions.of(source).complete_on

    def verify(self, request: IncomingRequest, now: float) -> Callback:
        header = request.headers.get(SIGNATURE_HEADER, "").strip()
        if not header:
            raise Unauthorized("X-Signature-256 header is required", code="missing_signature")
        presented = header[7:] if header[:7].lower() == "sha256=" else header
        presented_bytes = presented.strip().lower().encode("ascii", "replace")
        matched = False
        for key in self._keys:
            expected = hmac.new(key, request.body, hashlib.sha256).hexdigest().encode()
            # No early exit: the time taken does not reveal which key (if any) matched.
            matched |= hmac.compare_digest(expected, presented_bytes)
        if not matched:
            raise Unauthorized("X-Signature-256 does not match the body", code="invalid_signature")
        payload = parse_json(request.body)
        if not isinstance(payload, Mapping):
            raise BadRequest("CVAT webhook body is not a JSON object", code="malformed_body")
        return self._interpret(payload)

    def _interpret(self, payload: Mapping[str, Any]) -> Callback:
        event = str(payload.get("event") or "")
        job = payload.get("job")
        if event != "update:job":
            return self._acknowledge(event, "event not processed")
        if not isinstance(job, Mapping) or _id(job.get("id")) is None:
            raise BadRequest("update:job payload has no job object with an id", code="malformed_body")
        job_id = _id(job["id"])
        assert job_id is not None
        field, wanted = (
            ("stage", "acceptance") if self.complete_on == "acceptance" else ("state", "completed")
        )
        current = str(job.get(field) or "").lower()
        before = payload.get("before_update")
        if current != wanted:
            return self._acknowledge(event, f"job {field} is {current or 'unknown'}", job_id)
        if isinstance(before, Mapping) and (field not in before or str(before[field]).lower() == wanted):
            # Older layout: the diff says this update did not move the job to completion.
            return self._acknowledge(event, f"update did not change {field} to {wanted}", job_id)
        project = _id(job.get("project_id")) or _id(job.get("task_id")) or self.source.name
        updated = str(job.get("updated_date") or "")
        # completion_key(source, job) from processors.polling, plus the update time (see docstring).
        dedupe = f"{self.source.name}:{job_id}:completed" + (f":{updated}" if updated else "")
        return Callback(
            dedupe_key=dedupe,
            job_id=job_id,
            project=project,
            state="completed",
            meta={
                "event": event,
                "cvat_state": _text(job.get("state")),
                "cvat_stage": _text(job.get("stage")),
            },
        )

    def _acknowledge(self, event: str, why: str, job_id: str | None = None) -> Callback:
        # Counted by this log line (the metrics endpoint has no per-vendor event counters).
        log.info(
            "cvat event acknowledged, not processed",
            extra={"source": self.source.name, "event": event or "unknown", "job": job_id, "why": why},
        )
        return Callback(dedupe_key="", job_id=job_id or "", project=self.source.name, enqueue=False)


def _text(value: Any) -> str | None:
    """A state/stage for the record's meta: CVAT sends short strings; anything else is not copied."""
    return value[:64] if isinstance(value, str) else None


def _id(value: Any) -> str | None:
    """CVAT ids arrive as ints (sometimes as floats or strings); a canonical decimal string."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else None
    text = str(value).strip()
    return text or None
