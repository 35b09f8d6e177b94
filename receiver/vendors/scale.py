"""Scale callbacks: the static ``scale-callback-auth`` header, compared in constant time.

Scale posts ``{task, response, task_id}`` (plus ``status``) and sets ``scale-callback-auth`` to the
account's Live Callback Auth Key; there is no signature, timestamp or delivery id. It retries a
non-2xx answer up to 20 times over 24 hours, and calls back again on audits (approved, rejected,
fixed) and recalls (completed → pending). So a completed task is processed once per distinct
``response`` (the dedupe key carries its hash: a retry is a duplicate, an audit fix is processed
again), and any other status is recorded on the job, not processed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from processors.config import SourceConfig
from processors.polling import completion_key
from processors.vendors.scale.options import ScaleOptions
from processors.vendors.scale.status import job_state
from receiver.errors import BadRequest, Unauthorized
from receiver.vendors.base import Callback, IncomingRequest, VendorAdapter, parse_json, token_matches

AUTH_HEADER = "scale-callback-auth"


class ScaleAdapter(VendorAdapter):
    vendor = "scale"

    def __init__(self, source: SourceConfig) -> None:
        super().__init__(source)
        self._project = ScaleOptions.of(source).project

    def secret_headers(self) -> frozenset[str]:
        return frozenset({AUTH_HEADER})

    def verify(self, request: IncomingRequest, now: float) -> Callback:
        given = request.headers.get(AUTH_HEADER)
        if not given:
            raise Unauthorized("scale-callback-auth header is missing", code="missing_signature")
        if not token_matches(given, self.source.secrets):
            raise Unauthorized(
                "scale-callback-auth does not match the callback auth key", code="invalid_signature"
            )
        body = parse_json(request.body)
        if not isinstance(body, Mapping):
            raise BadRequest("Scale callback body is not a JSON object", code="malformed_body")
        return self._interpret(body)

    def _interpret(self, body: Mapping[str, Any]) -> Callback:
        raw_task = body.get("task")
        task: Mapping[str, Any] = raw_task if isinstance(raw_task, Mapping) else {}
        raw_id = body.get("task_id") or task.get("task_id") or task.get("id")
        if not isinstance(raw_id, str) or not raw_id.strip():
            raise BadRequest("Scale callback has no task_id", code="malformed_body")
        task_id = raw_id.strip()
        status = body.get("status") or task.get("status") or "completed"
        if not isinstance(status, str):
            raise BadRequest("Scale callback status is not a string", code="malformed_body")
        project = self._project or _text(task.get("project")) or self.source.name
        meta: dict[str, Any] = {"status": status}
        if _text(task.get("type")):
            meta["task_type"] = task["type"]
        state = job_state(status)
        if state != "completed":
            return Callback(
                dedupe_key=f"{self.source.name}:{task_id}:state:{status.lower()}",
                job_id=task_id,
                project=project,
                state=status,
                kind="state",
                meta={**meta, "job_state": state},
            )
        response = body.get("response", task.get("response"))
        digest = hashlib.sha256(
            json.dumps(response, sort_keys=True, separators=(",", ":")).encode()
        ).hexdigest()
        return Callback(
            dedupe_key=f"{completion_key(self.source.name, task_id)}:{digest[:16]}",
            job_id=task_id,
            project=project,
            state=status,
            meta=meta,
        )


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None
