"""Labelbox webhooks: ``X-Hub-Signature-256`` / ``X-Hub-Signature`` HMACs of the raw body.

Labelbox signs the exact bytes it posts: ``X-Hub-Signature: sha1=<hex HMAC-SHA1(secret, body)>`` and,
on newer deliveries, ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>``. When the
SHA-256 header is present it alone decides (a valid SHA-1 next to a wrong SHA-256 is refused); the
SHA-1 header is accepted on its own for older deliveries. Compared in constant time against every
configured secret.

``X-Labelbox-Event`` names the topic. ``LABEL_CREATED`` / ``LABEL_UPDATED`` are processed (the
worker re-reads the label from a fresh export); ``LABEL_DELETED``, ``REVIEW_CREATED`` /
``REVIEW_UPDATED`` and ``WORKFLOW_ACTION`` are recorded on the label's job, not processed; anything
else is acknowledged and dropped. Two body layouts are live: v1 (``id`` = label id, ``dataRow.id``,
``project.id``, ``label`` a JSON string) and v2, which mimics an export row (``data_row.id``,
``projects.{id}.labels[].id``). Deliveries are not ordered; the dedupe key is the label, the event
and the delivery id (``X-Labelbox-Id``; the body's hash when absent), so a retry is a duplicate and
every distinct create/update is processed.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from processors.config import SourceConfig
from processors.vendors.labelbox.options import LabelboxOptions
from receiver.errors import BadRequest, Unauthorized
from receiver.vendors.base import Callback, IncomingRequest, VendorAdapter, parse_json

SHA256_HEADER = "x-hub-signature-256"
SHA1_HEADER = "x-hub-signature"
EVENT_HEADER = "x-labelbox-event"
DELIVERY_HEADER = "x-labelbox-id"
PROCESSED_EVENTS = frozenset({"LABEL_CREATED", "LABEL_UPDATED"})
RECORDED_EVENTS = frozenset({"LABEL_DELETED", "REVIEW_CREATED", "REVIEW_UPDATED", "WORKFLOW_ACTION"})


class LabelboxAdapter(VendorAdapter):
    vendor = "labelbox"

    def __init__(self, source: SourceConfig) -> None:
        super().__init__(source)
        self._keys = [secret.reveal().encode() for secret in source.secrets]
        self._project = LabelboxOptions.of(source).project_id

    def secret_headers(self) -> frozenset[str]:
        return frozenset({SHA256_HEADER, SHA1_HEADER})

    def verify(self, request: IncomingRequest, now: float) -> Callback:
        self._check_signature(request)
        body = parse_json(request.body)
        if not isinstance(body, Mapping):
            raise BadRequest("Labelbox webhook body is not a JSON object", code="malformed_body")
        event = (request.headers.get(EVENT_HEADER) or "").strip().upper()
        if not event:
            raise BadRequest("X-Labelbox-Event header is missing", code="malformed_body")
        # The header is not covered by the signature: bounded, it only tells redeliveries apart.
        delivery = (request.headers.get(DELIVERY_HEADER) or "").strip()[:128]
        return self._interpret(event, body, delivery or hashlib.sha256(request.body).hexdigest()[:32])

    def _check_signature(self, request: IncomingRequest) -> None:
        for header, prefix, digest in (
            (SHA256_HEADER, "sha256=", hashlib.sha256),
            (SHA1_HEADER, "sha1=", hashlib.sha1),
        ):
            value = request.headers.get(header, "").strip()
            if not value:
                continue
            presented = value[len(prefix) :] if value[: len(prefix)].lower() == prefix else value
            presented_bytes = presented.strip().lower().encode("ascii", "replace")
            matched = False
            for key in self._keys:
                expected = hmac.new(key, request.body, digest).hexdigest().encode()
                # No early exit: the time taken does not reveal which key (if any) matched.
                matched |= hmac.compare_digest(expected, presented_bytes)
            if not matched:
                raise Unauthorized(f"{header} does not match the body", code="invalid_signature")
            return
        raise Unauthorized(
            "X-Hub-Signature-256 or X-Hub-Signature header is required", code="missing_signature"
        )

    def _interpret(self, event: str, body: Mapping[str, Any], delivery: str) -> Callback:
        if event not in PROCESSED_EVENTS | RECORDED_EVENTS:
            return Callback(dedupe_key="", job_id="", project=self.source.name, enqueue=False)
        ids = webhook_ids(body)
        ids.project = ids.project or self._project
        project = self._project or ids.project or self.source.name
        job_id = ids.label or ids.data_row
        if not job_id:
            raise BadRequest(f"{event} body names no label id and no data row id", code="malformed_body")
        meta: dict[str, Any] = {"event": event, "delivery": delivery}
        if ids.data_row:
            meta["data_row_id"] = ids.data_row
        if ids.project:
            meta["project_id"] = ids.project
        if event in RECORDED_EVENTS:
            return Callback(
                dedupe_key=f"{self.source.name}:{job_id}:{event.lower()}:{delivery}",
                job_id=job_id,
                project=project,
                state=event,
                kind="state",
                meta={**meta, "job_state": "open"},
            )
        if not ids.label or not ids.data_row or not ids.project:
            missing = [
                n
                for n, v in (
                    ("label id", ids.label),
                    ("data row id", ids.data_row),
                    ("project id", ids.project),
                )
                if not v
            ]
            raise BadRequest(f"{event} body has no {', '.join(missing)}", code="malformed_body")
        return Callback(
            dedupe_key=f"{self.source.name}:{job_id}:{event.lower()}:{delivery}",
            job_id=job_id,
            project=project,
            state=event,
            meta=meta,
        )


@dataclass(slots=True)
class WebhookIds:
    """The label, data row and project a webhook body names (None where absent)."""

    label: str | None
    data_row: str | None
    project: str | None


def webhook_ids(body: Mapping[str, Any]) -> WebhookIds:
    """Ids from a v1 body (``id``, ``dataRow.id``, ``project.id``) or a v2 export-row body."""
    label = (
        _id(body.get("id"))
        or _nested(body, "label", "id")
        or _id(body.get("label_id"))
        or _id(body.get("labelId"))
    )
    data_row = (
        _nested(body, "dataRow", "id")
        or _nested(body, "data_row", "id")
        or _id(body.get("dataRowId"))
        or _id(body.get("data_row_id"))
    )
    project = _nested(body, "project", "id") or _id(body.get("projectId")) or _id(body.get("project_id"))
    projects = body.get("projects")
    if isinstance(projects, Mapping) and len(projects) == 1:
        ((project_key, entry),) = projects.items()
        project = project or _id(project_key)
        labels = entry.get("labels") if isinstance(entry, Mapping) else None
        if not label and isinstance(labels, list) and len(labels) == 1 and isinstance(labels[0], Mapping):
            label = _id(labels[0].get("id"))
    return WebhookIds(label, data_row, project)


def _nested(body: Mapping[str, Any], key: str, inner: str) -> str | None:
    value = body.get(key)
    return _id(value.get(inner)) if isinstance(value, Mapping) else None


def _id(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value).strip()
    return text or None
