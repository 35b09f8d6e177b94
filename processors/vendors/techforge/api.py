"""What TechForge job records mean: the job object, its status in labelhook's terms, its result files.

Pure functions over parsed JSON. Seed 001 documents the create response (a message and ``job`` with
``uuid``, ``status`` = ``QUEUED``, ``job_type``, ``source_id``) but not the jobs-get record, so the
readers here are liberal: the job may sit under ``job``/``data``/``result`` or at the top level,
statuses are matched case-insensitively, and result files are any URL under an output-like key.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from processors.errors import Permanent

OPEN, COMPLETED, FAILED = "open", "completed", "failed"

# Vendor status (lower-cased, spaces/dashes as underscores) → labelhook job state. Anything not listed
# counts as still running: an unknown word must never drop a job nor mark it finished.
STATUS_TABLE: dict[str, str] = {
    **dict.fromkeys(
        ("queued", "pending", "created", "submitted", "waiting", "scheduled", "accepted"), OPEN
    ),
    **dict.fromkeys(
        ("processing", "running", "in_progress", "started", "rendering", "generating", "uploading"), OPEN
    ),
    **dict.fromkeys(
        ("done", "completed", "complete", "succeeded", "success", "successful", "finished", "ready"),
        COMPLETED,
    ),
    **dict.fromkeys(
        ("failed", "failure", "error", "errored", "cancelled", "canceled", "rejected", "expired", "timeout",
         "timed_out", "aborted"),
        FAILED,
    ),
}  # fmt: skip

_STATUS_KEYS = ("status", "state", "job_status")
_ID_KEYS = ("uuid", "id", "job_id", "jobId", "job_uuid")
_REASON_KEYS = ("error", "error_message", "errorMessage", "failure_reason", "reason", "message", "detail")
# Subtrees that describe what was asked for, not what was made: the vendor stores the whole request
# body as the job input, and its asset objects ({"image_url": …}) must not be mistaken for results.
_INPUT_KEYS = frozenset(
    {"jobinput", "job_input", "input", "inputs", "values", "request", "params", "payload", "project",
     "template", "mapping_fields"}
)  # fmt: skip
_NOT_RESULT_URL_KEYS = frozenset({"background_music", "callback_url", "webhook_url", "preview_page"})
_URL_KEY = re.compile(r"(^|_)(url|urls|uri|link|href|src|download)$", re.IGNORECASE)
_OUTPUT_KEY = re.compile(r"(output|result|file|media|asset|download|video|audio|image|pdf)", re.IGNORECASE)


def job_object(document: Any) -> dict[str, Any]:
    """The job inside a create or jobs-get answer; `Permanent` if there is none."""
    if isinstance(document, list) and len(document) == 1:
        document = document[0]
    if not isinstance(document, Mapping):
        raise Permanent("TechForge answered JSON that is not a job object")
    if _first(document, _ID_KEYS) is not None and _first(document, _STATUS_KEYS) is not None:
        return dict(document)  # the record itself, even if it has a "result" of its own
    for key in ("job", "data", "result"):
        inner = document.get(key)
        if isinstance(inner, list) and len(inner) == 1:
            inner = inner[0]
        if isinstance(inner, Mapping) and (_first(inner, _STATUS_KEYS) or _first(inner, _ID_KEYS)):
            return job_object(inner) if "job" in inner and isinstance(inner["job"], Mapping) else dict(inner)
    return dict(document)


def job_id(job: Mapping[str, Any]) -> str | None:
    value = _first(job, _ID_KEYS)
    return str(value) if value is not None and str(value).strip() else None


def vendor_status(job: Mapping[str, Any]) -> str:
    """The vendor's status word as sent; `Permanent` if the record has none."""
    value = _first(job, _STATUS_KEYS)
    if isinstance(value, Mapping):  # {"status": {"name": "done", "message": …}}
        value = _first(value, ("name", "code", "value", "status"))
    if value is None or not str(value).strip():
        raise Permanent("TechForge job record has no status")
    return str(value).strip()


def labelhook_state(status: str) -> str:
    """Map a vendor status word to open / completed / failed (see `STATUS_TABLE`)."""
    word = re.sub(r"[\s-]+", "_", status.strip().lower())
    return STATUS_TABLE.get(word, OPEN)


def failure_reason(job: Mapping[str, Any], status: str) -> str:
    """The vendor's reason for a failed job, one line, or the status word if it gives none."""
    for key in _REASON_KEYS:
        value = job.get(key)
        if isinstance(value, Mapping):
            value = _first(value, ("message", "detail", "reason", "error", "code"))
        if isinstance(value, str) and value.strip():
            return " ".join(value.split())[:500]
    return f"vendor status {status}"


def result_urls(job: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(json_path, url)`` of every result file in a job record, in document order, without repeats.

    A URL counts when its key looks like a URL key (``video_url``, ``url``, ``download``, …) or sits in
    a list under an output-like key (``outputs: ["https://…"]``), outside the input subtrees.
    """
    seen: set[str] = set()
    found: list[tuple[str, str]] = []
    for path, url in _walk(job, "", in_output=False):
        if url not in seen:
            seen.add(url)
            found.append((path, url))
    return found


def _walk(node: Any, path: str, *, in_output: bool) -> Iterator[tuple[str, str]]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            name = str(key)
            if name.lower() in _INPUT_KEYS or name.lower() in _NOT_RESULT_URL_KEYS:
                continue
            child = f"{path}.{name}" if path else name
            if isinstance(value, str):
                if _is_http(value) and (_URL_KEY.search(name) or _OUTPUT_KEY.search(name) or in_output):
                    yield child, value.strip()
            else:
                yield from _walk(value, child, in_output=in_output or bool(_OUTPUT_KEY.search(name)))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            child = f"{path}[{index}]"
            if isinstance(item, str):
                if in_output and _is_http(item):
                    yield child, item.strip()
            else:
                yield from _walk(item, child, in_output=in_output)


def lookup(document: Any, path: str) -> Any:
    """The value at a `result_urls` path (``output.files[0].url``) or None."""
    node = document
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        if part.startswith("[") and isinstance(node, list):
            index = int(part[1:-1])
            node = node[index] if index < len(node) else None
        elif isinstance(node, Mapping):
            node = node.get(part)
        else:
            return None
    return node


def _is_http(value: str) -> bool:
    return value.strip().lower().startswith(("http://", "https://"))


def _first(mapping: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        if mapping.get(key) is not None:
            return mapping[key]
    return None
