"""Playment / TELUS: verify a legacy `callback_url` callback by its static key and say what it means.

Playment's legacy callbacks carry a static `x-playment-key` header (the key configured for the
account), not a signature; where that cannot be configured, the callback URL carries the same secret
as `?token=`. Either is compared in constant time against every configured secret. The body is read
leniently: the job id is `job_id` or `id`, at the top level or under `data`, and the status may be
absent (a legacy callback is sent on completion), in any case.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from processors.polling import completion_key
from processors.vendors.playment.options import PlaymentOptions
from receiver.errors import BadRequest, Unauthorized
from receiver.vendors.base import Callback, IncomingRequest, VendorAdapter, parse_json, token_matches

KEY_HEADER = "x-playment-key"
COMPLETED_STATES = frozenset({"completed", "complete", "done", "finished"})
FAILED_STATES = frozenset({"failed", "failure", "error", "errored", "rejected", "cancelled", "canceled"})


class PlaymentAdapter(VendorAdapter):
    vendor = "playment"

    def secret_headers(self) -> frozenset[str]:
        return frozenset({KEY_HEADER})

    def verify(self, request: IncomingRequest, now: float) -> Callback:
        header = request.headers.get(KEY_HEADER)
        token = request.query.get("token")
        if not header and not token:
            raise Unauthorized(
                f"{KEY_HEADER} header or token query parameter is required", code="missing_signature"
            )
        # Evaluate both, always: which one matched must not show in the timing.
        by_header = token_matches(header, self.source.secrets)
        by_token = token_matches(token, self.source.secrets)
        if not (by_header or by_token):
            raise Unauthorized(f"{KEY_HEADER} / token matches no configured key", code="invalid_signature")
        body = parse_json(request.body)
        if not isinstance(body, Mapping):
            raise BadRequest("callback body must be a JSON object", code="malformed_body")
        job = read_callback(body)
        job_id = job.get("job_id")
        if job_id is None:
            raise BadRequest("callback has no job_id (or id)", code="malformed_body")
        project = job.get("project_id") or PlaymentOptions.of(self.source).project_id
        if not project:
            raise BadRequest(
                "callback has no project_id and the source has no PROJECT_ID option", code="malformed_body"
            )
        status = job.get("status")
        meta: dict[str, Any] = {}
        if job.get("reference_id") is not None:
            meta["reference_id"] = job["reference_id"]
        state = status.lower() if status else None
        if state is None or state in COMPLETED_STATES:
            return Callback(
                dedupe_key=completion_key(self.source.name, job_id),
                job_id=job_id,
                project=project,
                state=status or "completed",
                meta=meta,
            )
        meta["job_state"] = "failed" if state in FAILED_STATES else "open"
        if meta["job_state"] == "failed" and job.get("reason"):
            meta["reason"] = job["reason"]
        return Callback(
            dedupe_key=f"{self.source.name}:{job_id}:{state}",
            job_id=job_id,
            project=project,
            state=status,
            kind="state",
            meta=meta,
        )


def read_callback(body: Mapping[str, Any]) -> dict[str, str]:
    """``job_id``, ``project_id``, ``reference_id``, ``status``, ``reason`` as strings, where present.

    Fields under ``data`` win over top-level ones; ids may arrive as numbers. Anything that is not a
    scalar is ignored rather than stringified, so a nested object never becomes a path segment.
    """
    layers: list[Mapping[str, Any]] = [body]
    if isinstance(body.get("data"), Mapping):
        layers.insert(0, body["data"])
    aliases = {
        "job_id": ("job_id", "jobId", "id"),
        "project_id": ("project_id", "projectId"),
        "reference_id": ("reference_id", "referenceId"),
        "status": ("status", "state"),
        "reason": ("reason", "failure_reason", "error", "message"),
    }
    found: dict[str, str] = {}
    for name, keys in aliases.items():
        for layer in layers:
            value = next((layer[k] for k in keys if _scalar(layer.get(k))), None)
            if value is not None:
                # A JSON number id (`12` or `12.0`) names the same job as the string "12".
                found[name] = str(int(value) if isinstance(value, float) and value.is_integer() else value)
                found[name] = found[name].strip()
                break
    return {k: v for k, v in found.items() if v}


def _scalar(value: Any) -> bool:
    return isinstance(value, str | int | float) and not isinstance(value, bool) and str(value).strip() != ""
