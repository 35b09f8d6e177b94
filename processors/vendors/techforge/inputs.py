"""Validate TechForge "Create Job" bodies (seed 001) per job type, before anything is sent.

Pure: a user's INPUT.json in, the list of job bodies out (unchanged, because the vendor stores the
full request body as the job's input), or `Permanent` naming the first bad field, e.g.
``jobs[1].values.logo: an asset object needs one of image_url, audio_url, …``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from processors.errors import Permanent

JOB_TYPES = ("ai_talking_video", "video", "tts", "image", "photo_qc", "pdf", "ai_image_generation")
# Seed 001: background music fields are top-level options of the video workflows only.
VIDEO_TYPES = frozenset({"video", "ai_talking_video"})
BACKGROUND_FIELDS = ("background_music", "background_volume", "background_start")
# Asset objects carry their file under one of these keys ({"image_url": …}, {"audio_url": …, "effects": […]}).
ASSET_URL_KEYS = ("image_url", "audio_url", "video_url", "file_url", "pdf_url", "url")


def split_jobs(payload: Any) -> list[tuple[str, dict[str, Any]]]:
    """The job bodies of an INPUT.json: one object, a list of them, or ``{"jobs": [...]}``.

    Returns ``(label, body)`` pairs; the label prefixes field names in error messages.
    """
    if isinstance(payload, Mapping) and "jobs" in payload and "job_type" not in payload:
        payload = payload["jobs"]
        prefix = "jobs"
    else:
        prefix = "jobs" if isinstance(payload, list) else ""
    if isinstance(payload, Mapping):
        return [("", dict(payload))]
    if not isinstance(payload, list) or not payload:
        raise Permanent('input: expected a job object, a non-empty list of them, or {"jobs": [...]}')
    jobs = []
    for index, item in enumerate(payload):
        label = f"{prefix}[{index}]."
        if not isinstance(item, Mapping):
            raise Permanent(f"{label[:-1]}: each job must be a JSON object")
        jobs.append((label, dict(item)))
    return jobs


def validate_jobs(payload: Any) -> list[dict[str, Any]]:
    """Every job body of ``payload``, validated; `Permanent` naming the first bad field."""
    jobs = split_jobs(payload)
    for label, body in jobs:
        validate_job(body, label)
    return [body for _, body in jobs]


def validate_job(body: Mapping[str, Any], label: str = "") -> None:
    """Check one Create Job body against seed 001's rules for its ``job_type``."""
    job_type = body.get("job_type")
    if not isinstance(job_type, str) or job_type.strip().lower() not in JOB_TYPES:
        shown = "missing" if job_type is None else f"unknown job type {job_type!r}"
        raise Permanent(f"{label}job_type: {shown} (expected one of {', '.join(JOB_TYPES)})")
    job_type = job_type.strip().lower()
    if not (_is_id(body.get("template_id")) or _is_id(body.get("project_id"))):
        raise Permanent(
            f"{label}template_id: a template_id (or project_id) is required for {job_type} jobs"
            if body.get("template_id") is None and body.get("project_id") is None
            else f"{label}template_id/project_id: must be a non-empty string id"
        )
    for name in ("template_id", "project_id"):
        if body.get(name) is not None and not _is_id(body.get(name)):
            raise Permanent(f"{label}{name}: must be a non-empty string id")
    _check_values(body.get("values"), f"{label}values")
    version = body.get("version")
    if version is not None and _as_int(version) is None:
        raise Permanent(f"{label}version: must be a positive integer, got {version!r}")
    session = body.get("session_id")
    if session is not None and not isinstance(session, str | int):
        raise Permanent(f"{label}session_id: must be a string")
    present = [f for f in BACKGROUND_FIELDS if body.get(f) is not None]
    if present and job_type not in VIDEO_TYPES:
        raise Permanent(f"{label}{present[0]}: only video and ai_talking_video jobs take background music")
    music = body.get("background_music")
    if music is not None and not (isinstance(music, str) and music.strip()):
        raise Permanent(f"{label}background_music: must be a URL string or null")
    volume = body.get("background_volume")
    if volume is not None:
        value = _as_number(volume)
        if value is None or not 0.0 <= value <= 1.0:
            raise Permanent(f"{label}background_volume: must be a number from 0 to 1, got {volume!r}")
    start = body.get("background_start")
    if start is not None:
        value = _as_number(start)
        if value is None or value < 0:
            raise Permanent(f"{label}background_start: must be a number of seconds >= 0, got {start!r}")


def _check_values(values: Any, where: str) -> None:
    if values is None:
        return
    if isinstance(values, Mapping):
        items = [(f"{where}.{key}", entry) for key, entry in values.items()]
    elif isinstance(values, list):
        items = [(f"{where}[{i}]", entry) for i, entry in enumerate(values)]
    else:
        raise Permanent(f"{where}: must be an object of field → value")
    for field, entry in items:
        if isinstance(entry, str):
            continue
        if not isinstance(entry, Mapping):
            raise Permanent(
                f'{field}: must be a string or an asset object such as {{"image_url": …}}, '
                f"got {type(entry).__name__}"
            )
        urls = [key for key in ASSET_URL_KEYS if key in entry]
        if not urls:
            raise Permanent(f"{field}: an asset object needs one of {', '.join(ASSET_URL_KEYS)}")
        for key in urls:
            if not (isinstance(entry[key], str) and entry[key].strip()):
                raise Permanent(f"{field}.{key}: must be a non-empty URL string")
        effects = entry.get("effects")
        if effects is not None and not isinstance(effects, list):
            raise Permanent(f"{field}.effects: must be a list")


def _is_id(value: Any) -> bool:
    return (isinstance(value, str) and bool(value.strip())) or (
        isinstance(value, int) and not isinstance(value, bool)
    )


def _as_number(value: Any) -> float | None:
    """Numbers, and numeric strings (be liberal); never booleans, NaN or infinity."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _as_int(value: Any) -> int | None:
    number = _as_number(value)
    if number is None or number != int(number) or number < 1:
        return None
    return int(number)
