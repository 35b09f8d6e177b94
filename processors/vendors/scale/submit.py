"""Scale create-task requests from a user's INPUT.json, and the created task's id (pure)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from processors.errors import Permanent

DEFAULT_TASK_TYPE = "segmentannotation"
#: Scale's task type path segment (``segmentannotation``, ``imageannotation``, …).
_TASK_TYPE = re.compile(r"[a-z][a-z0-9_]{0,63}")
#: The callback URL is labelhook's to set; INPUT.json spelling it is refused rather than overridden silently.
_CALLBACK_KEYS = ("callback_url", "callbackUrl")


def task_request(payload: Any, callback_url: str | None) -> list[tuple[str, bytes]]:
    """(task type, encoded JSON body) per task; `Permanent` naming the bad field or entry."""
    entries = payload if isinstance(payload, list) else [payload]
    if not entries:
        raise Permanent("INPUT.json is an empty list: nothing to submit")
    requests: list[tuple[str, bytes]] = []
    for position, entry in enumerate(entries):
        where = f"INPUT.json entry #{position}" if isinstance(payload, list) else "INPUT.json"
        if not isinstance(entry, Mapping):
            raise Permanent(f"{where} must be a task object (Scale's create-task fields)")
        body = dict(entry)
        kind = body.pop("type", DEFAULT_TASK_TYPE)
        if not isinstance(kind, str) or not _TASK_TYPE.fullmatch(kind):
            raise Permanent(f"{where}: 'type' must be a Scale task type such as {DEFAULT_TASK_TYPE!r}")
        if any(key in body for key in _CALLBACK_KEYS):
            raise Permanent(f"{where}: leave out callback_url; labelhook sets it to its own hook URL")
        attachment = body.get("attachment")
        if not isinstance(attachment, str) or not attachment.strip():
            raise Permanent(f"{where}: 'attachment' (the image URL) is required")
        if kind == DEFAULT_TASK_TYPE:
            labels = body.get("labels")
            if not isinstance(labels, list) or not labels:
                raise Permanent(f"{where}: segmentannotation needs a non-empty 'labels' list")
        if callback_url:
            body["callback_url"] = callback_url
        requests.append((kind, json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()))
    return requests


def created_task(answer: Any) -> tuple[str, str, dict[str, Any]]:
    """(task id, status, meta) of a create-task answer; `Permanent` when it names no task."""
    if not isinstance(answer, Mapping):
        raise Permanent("Scale create-task answered no task object")
    task_id = answer.get("task_id") or answer.get("id")
    if not isinstance(task_id, str) or not task_id:
        raise Permanent("Scale create-task answered no task_id")
    status = str(answer.get("status") or "pending")
    meta = {k: answer[k] for k in ("type", "project", "batch") if isinstance(answer.get(k), str)}
    return task_id, status, meta
