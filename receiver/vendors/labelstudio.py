"""Label Studio webhooks: a token in the URL or a custom header, and the event read as a hint.

Label Studio posts ``{"action": …, <payload>}`` with no signature, no timestamp and no retries, and
gives up after about a second, so the check is a shared secret it can carry: ``?token=`` in the
webhook URL, or a custom header (``X-Labelhook-Token`` unless ``TOKEN_HEADER`` names another; an
``Authorization: Token|Bearer <secret>`` header works too), compared in constant time. The body is
only a hint: the worker fetches the task's annotations from the API, so nothing here trusts the
annotation content. ``ANNOTATION_CREATED`` / ``ANNOTATION_UPDATED`` (one annotation) and
``ANNOTATIONS_CREATED`` (lists) are queued, deduplicated on annotation id + ``updated_at`` so an edit
is a new output version while the PUT-and-PATCH pair of one save is processed once. A skipped
(cancelled) annotation and ``ANNOTATIONS_DELETED`` are recorded as job states; every other action
(projects, tasks, label links, reviews) is acknowledged with 200 and not stored.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from processors.config import SourceConfig
from processors.vendors.labelstudio.options import LabelStudioOptions
from receiver.errors import BadRequest, Unauthorized
from receiver.vendors.base import Callback, IncomingRequest, VendorAdapter, parse_json, token_matches

ANNOTATION_ACTIONS = frozenset({"ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED"})
_SCHEMES = ("token ", "bearer ")


class LabelStudioAdapter(VendorAdapter):
    vendor = "labelstudio"

    def __init__(self, source: SourceConfig) -> None:
        super().__init__(source)
        self._header = LabelStudioOptions.of(source).header

    def secret_headers(self) -> frozenset[str]:
        return frozenset({self._header, "authorization"})

    def verify(self, request: IncomingRequest, now: float) -> Callback:
        self._check_token(request)
        body = parse_json(request.body)
        if not isinstance(body, dict):
            raise BadRequest("a Label Studio webhook body is a JSON object", code="malformed_body")
        action = body.get("action")
        if not isinstance(action, str) or not action:
            raise BadRequest("the webhook body has no 'action'", code="malformed_body")
        if action == "ANNOTATIONS_DELETED":
            return self._deleted(body)
        if action not in ANNOTATION_ACTIONS:
            # Projects, tasks, label links, reviews: nothing to build; a 200 keeps the webhook healthy.
            return Callback(dedupe_key="", job_id="", project="", enqueue=False, meta={"action": action})
        if "annotation" not in body:
            raise BadRequest(
                f"{action} arrived without its payload: turn on 'Send payload' for this webhook",
                code="malformed_body",
            )
        raw = body["annotation"]
        annotations = raw if isinstance(raw, list) else [raw]
        if not annotations or not all(isinstance(a, dict) for a in annotations):
            raise BadRequest(
                "'annotation' must be an object or a non-empty list of objects", code="malformed_body"
            )
        hints = [_hint(a, body) for a in annotations]
        project = self._project(body, annotations[0])
        tasks = sorted({task for task, _, _, _ in hints}, key=_natural)
        live = [h for h in hints if not h[3]]
        meta: dict[str, Any] = {
            "action": action,
            "annotations": [{"id": a, "task": t, "updated_at": u} for t, a, u, _ in hints],
        }
        if not live:
            # Every annotation named was skipped: the task's labels did not change; record it only.
            task = tasks[0] if len(tasks) == 1 else f"bulk-{_digest(hints)}"
            return Callback(
                dedupe_key=f"{self.source.name}:skipped:{_digest(hints)}",
                job_id=task,
                project=project,
                state="skipped",
                kind="state",
                meta={**meta, "job_state": "open"},
            )
        live_tasks = sorted({task for task, _, _, _ in live}, key=_natural)
        if len(live) == 1:
            # The common case: one annotation saved. Its id and update time are the version.
            task_id, annotation_id, updated, _ = live[0]
            key = f"{self.source.name}:annotation:{annotation_id}:{updated}"
            return Callback(dedupe_key=key, job_id=task_id, project=project, state=action, meta=meta)
        digest = _digest(live)
        key = f"{self.source.name}:annotations:{digest}"
        if len(live_tasks) == 1:
            return Callback(dedupe_key=key, job_id=live_tasks[0], project=project, state=action, meta=meta)
        # A bulk event across tasks: one delivery that the worker fans out, one output set per task.
        return Callback(
            dedupe_key=key,
            job_id=f"bulk-{digest}",
            project=project,
            state=action,
            meta={**meta, "tasks": live_tasks},
        )

    def _check_token(self, request: IncomingRequest) -> None:
        given = request.query.get("token") or request.headers.get(self._header)
        if not given:
            authorization = request.headers.get("authorization", "")
            if authorization.lower().startswith(_SCHEMES):
                given = authorization.split(" ", 1)[1].strip()
        if not given:
            raise Unauthorized(
                f"the webhook token (?token= or {self._header} header) is missing", code="missing_signature"
            )
        if not token_matches(given, self.source.secrets):
            raise Unauthorized("the webhook token does not match", code="invalid_signature")

    def _deleted(self, body: Mapping[str, Any]) -> Callback:
        items = body.get("annotations")
        ids = [str(a.get("id")) for a in items if isinstance(a, dict)] if isinstance(items, list) else []
        if not ids:
            raise BadRequest("ANNOTATIONS_DELETED names no annotation ids", code="malformed_body")
        digest = hashlib.sha256(json.dumps(sorted(ids)).encode()).hexdigest()[:16]
        return Callback(
            dedupe_key=f"{self.source.name}:deleted:{digest}",
            job_id=f"deleted-{digest}",
            project=self._project(body, {}),
            state="ANNOTATIONS_DELETED",
            kind="state",
            meta={"action": "ANNOTATIONS_DELETED", "job_state": "deleted", "annotations": ids},
        )

    def _project(self, body: Mapping[str, Any], annotation: Mapping[str, Any]) -> str:
        project = body.get("project")
        candidates = [
            project.get("id") if isinstance(project, dict) else project,
            annotation.get("project"),
        ]
        task = body.get("task")
        if isinstance(task, dict):
            candidates.append(task.get("project"))
        for value in candidates:
            if _id_like(value):
                return str(value)
        return self.source.name


def _hint(annotation: Mapping[str, Any], body: Mapping[str, Any]) -> tuple[str, str, str, bool]:
    """``(task id, annotation id, updated_at, skipped)`` of one annotation in the payload."""
    annotation_id = annotation.get("id")
    if not _id_like(annotation_id):
        raise BadRequest("an annotation in the payload has no id", code="malformed_body")
    task = annotation.get("task")
    if isinstance(task, dict):
        task = task.get("id")
    if not _id_like(task) and isinstance(body.get("task"), dict):
        task = body["task"].get("id")
    if not _id_like(task):
        raise BadRequest(f"annotation {annotation_id} names no task id", code="malformed_body")
    updated = annotation.get("updated_at") or annotation.get("created_at")
    if not isinstance(updated, str) or not updated or len(updated) > 64:
        raise BadRequest(f"annotation {annotation_id} has no updated_at", code="malformed_body")
    skipped = annotation.get("was_cancelled") is True
    return str(task), str(annotation_id), updated, skipped


def _id_like(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value >= 0
    return isinstance(value, str) and 0 < len(value) <= 64 and value.isprintable() and value.strip() == value


def _natural(value: str) -> tuple[int, str]:
    return (int(value), "") if value.isdigit() else (1 << 62, value)


def _digest(hints: list[tuple[str, str, str, bool]]) -> str:
    return hashlib.sha256(json.dumps(sorted(hints)).encode()).hexdigest()[:16]
