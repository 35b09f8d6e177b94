"""What the dashboard shows, as JSON-ready dicts, and the `/api/…` routes that serve it.

`DashboardData` reads the queue's delivery log and the job book, and a job's outputs through its
manifest: only files a manifest lists are ever read back, so a request cannot steer a store read
anywhere else. Instance masks are 16-bit; `instance_preview` colourises them for a browser.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
from collections.abc import Callable, Collection
from typing import Any

import numpy as np
from PIL import Image
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from processors.delivery import path_segment
from processors.fleet import OUTCOMES, Fleet
from processors.history import read_history
from processors.jobs import JobBook, JobRecord
from processors.queue import DeliveryRecord, Queue
from processors.store import Store
from processors.store.base import MANIFEST
from receiver.bounded_json import JSONRejected, loads_bounded
from receiver.errors import BadRequest, NotFound, UnsupportedMedia

Authorize = Callable[..., object]
STATUSES = ("queued", "leased", "done", "dead")
#: What the pages call each status; the queue's `leased` and `depth()`'s `in_flight` are one thing.
STATUS_NAMES = {
    "queued": "queued",
    "leased": "in flight",
    "in_flight": "in flight",
    "done": "done",
    "dead": "dead",
}
MASK_KINDS = ("semantic", "instances")
PREVIEW_MAX_SIDE = 1024
_FRAME = re.compile(r"^masks/(\d+)/semantic\.png$")
_SCAN = 1000  # delivery-log rows scanned for a filtered listing
WORKERS_SHOWN_SECONDS = 86400.0


def delivery_json(record: DeliveryRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "source": record.source,
        "vendor": record.vendor,
        "job": record.job_id,
        "status": record.status,
        "attempts": record.attempts,
        "received_at": record.received_at,
        "updated_at": record.updated_at,
        "latency_s": round(max(0.0, record.updated_at - record.received_at), 3),
        "last_error": record.last_error,
    }


def job_json(record: JobRecord) -> dict[str, Any]:
    # `meta` is the vendor's own bookkeeping (ids, URLs): not needed here, and not ours to publish.
    data = record.to_json()
    data.pop("meta", None)
    return data


def instance_preview(png: bytes) -> bytes:
    """An 8-bit RGB PNG of a 16-bit instance mask: one fixed colour per instance number, 0 black.

    Colours come from a multiplicative hash of the number, so a given instance looks the same in
    every frame and on every reload. Large masks are subsampled to at most 1024 px a side.
    """
    with Image.open(io.BytesIO(png)) as image:
        numbers = np.asarray(image).astype(np.uint32)
    if numbers.ndim != 2:
        numbers = numbers[..., 0]
    step = max(1, -(-max(numbers.shape) // PREVIEW_MAX_SIDE))
    numbers = numbers[::step, ::step]
    hashed = (numbers * np.uint32(2654435761)) & np.uint32(0xFFFFFFFF)
    rgb = np.stack([(hashed >> shift) & 0xFF for shift in (24, 16, 8)], axis=-1) | 0x40
    rgb[numbers == 0] = 0
    out = io.BytesIO()
    Image.fromarray(rgb.astype(np.uint8), "RGB").save(out, "PNG")
    return out.getvalue()


class DashboardData:
    """Read side of the dashboard (plus replay). Store reads are blocking and run in a thread."""

    def __init__(
        self, queue: Queue, store: Store, sources: Collection[str], fleet: Fleet | None = None
    ) -> None:
        self.queue = queue
        self.store = store
        self.sources = sorted(sources)
        self.book = JobBook(store)
        self.fleet = fleet

    async def workers(self) -> list[dict[str, Any]]:
        """Every worker heard from in the last day: its heartbeat and totals, newest first."""
        if self.fleet is None:
            return []
        return [
            {
                "worker": w.worker,
                "heartbeat_at": w.heartbeat_at,
                "started_at": w.started_at,
                "stopped_at": w.stopped_at,
                "in_flight": w.in_flight,
                "totals": {o: w.total(o) for o in OUTCOMES},
            }
            for w in self.fleet.workers(max_age=WORKERS_SHOWN_SECONDS)
        ]

    async def delivery(self, delivery_id: str) -> dict[str, Any] | None:
        """One delivery: its queue record and, when it ever failed, its attempts and body preview."""
        rows = await self.queue.recent(_SCAN)
        record = next((r for r in rows if r.id == delivery_id), None)
        if record is None:  # an old dead letter may lie beyond the recent rows
            record = next((r for r in await self.queue.dead_letters(_SCAN) if r.id == delivery_id), None)
        if record is None:
            return None
        history = await asyncio.to_thread(read_history, self.store, delivery_id) or {}
        attempts = [a for a in history.get("attempts", []) if isinstance(a, dict)]
        return {**delivery_json(record), "history": attempts, "body_preview": history.get("body_preview")}

    async def file(self, source: str, job_id: str, path: str) -> tuple[bytes, str] | None:
        """A file of a job's output set, by its manifest path: (bytes, content type), or None."""
        return await asyncio.to_thread(self._file, source, job_id, path)

    def _file(self, source: str, job_id: str, path: str) -> tuple[bytes, str] | None:
        record = self.book.get(source, job_id)
        if record is None:
            return None
        prefix, manifest = self._manifest(record)
        if path == MANIFEST and manifest is not None:
            return json.dumps(manifest, indent=2).encode(), "application/json"
        listed = {
            str(f["path"]): str(f.get("content_type") or "application/octet-stream")
            for f in (manifest or {}).get("files", [])
            if isinstance(f, dict) and "path" in f
        }
        if path not in listed:  # only what the manifest lists: a request never steers a store read
            return None
        try:
            return self.store.get(f"{prefix}/{path}"), listed[path]
        except KeyError:
            return None

    async def deliveries(
        self, source: str | None = None, status: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[dict[str, Any]]:
        """A page of the delivery log, newest first; filtered pages look at the newest 1000 rows."""
        rows = await self.queue.recent(_SCAN if (source or status) else min(_SCAN, offset + limit))
        picked = [
            r for r in rows if (not source or r.source == source) and (not status or r.status == status)
        ]
        return [delivery_json(r) for r in picked[offset : offset + limit]]

    async def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        return [delivery_json(r) for r in await self.queue.dead_letters(limit)]

    async def replay(self, ids: list[str] | None) -> int:
        return await self.queue.replay(ids)

    async def depth(self) -> dict[str, int]:
        return await self.queue.depth()

    async def jobs(self, source: str | None = None) -> list[dict[str, Any]]:
        records = await asyncio.to_thread(self.book.list, source)
        return [job_json(r) for r in sorted(records, key=lambda r: r.updated_at, reverse=True)]

    async def job(self, source: str, job_id: str) -> dict[str, Any] | None:
        return await asyncio.to_thread(self._job, source, job_id)

    async def mask(self, source: str, job_id: str, frame: int, kind: str) -> bytes | None:
        """The frame's semantic PNG as stored, or a colourised preview of its instance mask."""
        return await asyncio.to_thread(self._mask, source, job_id, frame, kind)

    def _prefix(self, record: JobRecord) -> str:
        base = self.store.describe().rstrip("/") + "/"
        if record.output and record.output.startswith(base):
            return record.output[len(base) :].strip("/")
        return "/".join(path_segment(p) for p in (record.vendor, record.project, record.job_id))

    def _manifest(self, record: JobRecord) -> tuple[str, dict[str, Any] | None]:
        prefix = self._prefix(record)
        try:
            manifest = json.loads(self.store.get(f"{prefix}/{MANIFEST}"))
        except (KeyError, ValueError):
            return prefix, None
        return prefix, manifest if isinstance(manifest, dict) else None

    def _read_json(self, prefix: str, listed: set[str], name: str) -> Any:
        if name not in listed:
            return None
        try:
            return json.loads(self.store.get(f"{prefix}/{name}"))
        except (KeyError, ValueError):
            return None

    def _job(self, source: str, job_id: str) -> dict[str, Any] | None:
        record = self.book.get(source, job_id)
        if record is None:
            return None
        prefix, manifest = self._manifest(record)
        detail: dict[str, Any] = {
            "job": job_json(record),
            "files": [],
            "frames": [],
            "class_areas": [],
            "warnings": {},
        }
        if manifest is None:
            return detail
        files = [f for f in manifest.get("files", []) if isinstance(f, dict) and "path" in f]
        listed = {str(f["path"]) for f in files}
        detail["files"] = [
            {"path": f["path"], "size": f.get("size"), "content_type": f.get("content_type")} for f in files
        ]
        detail["frames"] = sorted(int(m.group(1)) for p in listed if (m := _FRAME.match(p)))
        labelmap = self._read_json(prefix, listed, "labelmap.json")
        annotations = self._read_json(prefix, listed, "annotations.json")
        detail["class_areas"] = _class_areas(labelmap, annotations, manifest.get("segmentation"))
        if isinstance(annotations, dict) and isinstance(annotations.get("warnings"), dict):
            detail["warnings"] = annotations["warnings"]
        elif isinstance(manifest.get("segmentation"), dict):
            detail["warnings"] = manifest["segmentation"].get("warnings") or {}
        return detail

    def _mask(self, source: str, job_id: str, frame: int, kind: str) -> bytes | None:
        record = self.book.get(source, job_id)
        if record is None or kind not in MASK_KINDS:
            return None
        prefix, manifest = self._manifest(record)
        name = f"masks/{frame}/{kind}.png"
        if manifest is None or name not in {f.get("path") for f in manifest.get("files", [])}:
            return None
        try:
            data = self.store.get(f"{prefix}/{name}")
        except KeyError:
            return None
        return data if kind == "semantic" else instance_preview(data)


def _class_areas(labelmap: Any, annotations: Any, segmentation: Any) -> list[dict[str, Any]]:
    """[{"id", "name", "color", "area", "share"}]: pixels per class over all frames, id 0 = unlabeled."""
    entries = {e["id"]: e for e in labelmap if isinstance(e, dict) and "id" in e} if labelmap else {}
    areas: dict[int, int] = {}
    if isinstance(segmentation, dict) and isinstance(segmentation.get("class_areas"), list):
        areas = {int(a["id"]): int(a["area"]) for a in segmentation["class_areas"]}
    elif isinstance(annotations, dict):
        total = sum(int(i.get("width", 0)) * int(i.get("height", 0)) for i in annotations.get("images", []))
        for ann in annotations.get("annotations", []):
            areas[int(ann["category_id"])] = areas.get(int(ann["category_id"]), 0) + int(ann["area"])
        areas[0] = max(0, total - sum(areas.values()))
    total_area = sum(areas.values()) or 1
    return [
        {
            "id": label,
            "name": entries.get(label, {}).get("name", "unlabeled" if label == 0 else str(label)),
            "color": entries.get(label, {}).get("color"),
            "area": area,
            "share": round(area / total_area, 4),
        }
        for label, area in sorted(areas.items())
    ]


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit", "100")
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise BadRequest("limit must be an integer from 1 to 1000")
    return int(raw)


def _filter(request: Request, name: str, allowed: Collection[str]) -> str | None:
    value = request.query_params.get(name) or None
    if value is not None and value not in allowed:
        raise BadRequest(f"{name} must be one of: {', '.join(allowed)}")
    return value


async def replay_ids(request: Request) -> list[str] | None:
    """Parse `{"ids": [...]}` or `{"all": true}` from a JSON body."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise UnsupportedMedia("replay takes application/json")
    try:
        body = loads_bounded(await request.body())
    except JSONRejected as exc:
        raise BadRequest(str(exc), code=exc.code) from None
    if isinstance(body, dict) and body.get("all") is True:
        return None
    ids = body.get("ids") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise BadRequest('send {"ids": ["<delivery id>", ...]} or {"all": true}')
    return ids


def api_routes(data: DashboardData, authorize: Authorize) -> list[Route]:
    """`/api/…`; ``authorize(request, unsafe=…)`` raises a `ReceiverError` unless the caller may."""

    async def deliveries(request: Request) -> Response:
        authorize(request)
        source = _filter(request, "source", data.sources)
        status = _filter(request, "status", STATUSES)
        return JSONResponse(await data.deliveries(source, status, _limit(request)))

    async def dead(request: Request) -> Response:
        authorize(request)
        return JSONResponse(await data.dead_letters(_limit(request)))

    async def replay(request: Request) -> Response:
        authorize(request, unsafe=True, csrf=request.headers.get("x-csrf-token"))
        ids = await replay_ids(request)
        return JSONResponse({"replayed": await data.replay(ids)})

    async def queue(request: Request) -> Response:
        authorize(request)
        return JSONResponse(await data.depth())

    async def jobs(request: Request) -> Response:
        authorize(request)
        return JSONResponse(await data.jobs(_filter(request, "source", data.sources)))

    async def job(request: Request) -> Response:
        authorize(request)
        detail = await data.job(request.path_params["source"], request.path_params["job"])
        if detail is None:
            raise NotFound("no such job", code="unknown_job")
        return JSONResponse(detail)

    async def delivery(request: Request) -> Response:
        authorize(request)
        detail = await data.delivery(request.path_params["id"])
        if detail is None:
            raise NotFound("no such delivery", code="unknown_delivery")
        return JSONResponse(detail)

    async def workers(request: Request) -> Response:
        authorize(request)
        return JSONResponse(await data.workers())

    return [
        Route("/api/deliveries", deliveries, methods=["GET"]),
        Route("/api/deliveries/{id}", delivery, methods=["GET"]),
        Route("/api/workers", workers, methods=["GET"]),
        Route("/api/dead-letters", dead, methods=["GET"]),
        Route("/api/replay", replay, methods=["POST"]),
        Route("/api/queue", queue, methods=["GET"]),
        Route("/api/jobs", jobs, methods=["GET"]),
        Route("/api/jobs/{source}/{job:path}", job, methods=["GET"]),
    ]
