"""A Playment-like API for the demo and the tests: jobs, attachments behind signed URLs, job creation.

It follows seeds 000 and 003: `GET /v1/projects/:pid/jobs/:jid` and `POST /v1/projects/:pid/jobs`
need `x-api-key` (401 otherwise; unknown ids 404); `GET /v1/attachments?url=` answers a 302 to a
signed URL on the *other* loopback origin (`localhost` ↔ `127.0.0.1`), which checks its HMAC and
expiry (403 otherwise) and serves the bytes. It records every request's headers (so a test can show
the API key never reaches the signed-URL host), the bodies of created jobs, and can answer errors on
demand (`fail`). Built-in jobs (`add_samples`) have masks drawn deterministically with Pillow.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, ImageDraw
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

SANDBOX_API_KEY = "sandbox-playment-api-key"
SANDBOX_PROJECT = "905ea3ee-6f62-4bb7-8c31-471e486d9202"
SANDBOX_WORKFLOW = "51bb440c-f0ed-4286-8984-ea399cbc1f9a"
# Result URLs look like Playment's private S3 URLs; only the attachments API resolves them.
RESULT_URL_BASE = "https://playment-data-uploads.s3.ap-south-1.amazonaws.com/sandbox/"

SEMANTIC_JOB = "3f3e8675-ca69-46d7-aa34-96f90fcbb732"
INSTANCE_JOB = "8c1d2e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"
VIDEO_JOB = "b7e4c1a2-9d3f-4e5a-8b6c-7d8e9f0a1b2c"

SEMANTIC_LEGEND = {"#f23334": "Sky", "#fd2d34": "Tree", "#3b7dd8": "Road"}
# Seed 003's instance-aware legend, plus the simple example's malformed `#fdffd34` key.
INSTANCE_LEGEND = {
    "#00c537": "car # 1",
    "#01d9fc": "pedestrian # 1",
    "#fac1c2": "pedestrian # 2",
    "#fb0379": "pedestrian # 3",
    "#fcbe92": "car # 2",
    "#fda7df": "vegetation",
    "#fdffd34": "Car",
}
INSTANCES = [
    {"_id": "8037614b-b5b9-420b-8e82-d601b1a7f276", "color": "#00c537", "index": 1, "value": "car # 1",
     "class_id": "f0443067-b6a5-4eae-a743-c967d606bb01", "attributes": []},
    {"_id": "bc3a8010-82cc-40cc-bac0-9a1511b5ea0c", "color": "#fcbe92", "index": 2, "value": "car # 2",
     "class_id": "f0443067-b6a5-4eae-a743-c967d606bb01", "attributes": []},
    {"_id": "0037614b-b5b9-420b-8e82-d601b1a7f276", "color": "#01d9fc", "index": 1,
     "value": "pedestrian # 1", "class_id": "00443067-b6a5-4eae-a743-c967d606bb01", "attributes": []},
    {"_id": "1c3a8010-82cc-40cc-bac0-9a1511b5ea0c", "color": "#fac1c2", "index": 2,
     "value": "pedestrian # 2", "class_id": "00443067-b6a5-4eae-a743-c967d606bb01", "attributes": []},
    {"_id": "037614b-b5b9-420b-8e82-d601b1a7f276", "color": "#fb0379", "index": 3,
     "value": "pedestrian # 3", "class_id": "00443067-b6a5-4eae-a743-c967d606bb01", "attributes": []},
    {"_id": "7c3a8010-82cc-40cc-bac0-9a1511b5ea0c", "color": "#fda7df", "index": 0, "value": "vegetation",
     "class_id": "4443067-b6a5-4eae-a743-c967d606bb01", "attributes": []},
]  # fmt: skip


@dataclass
class SandboxJob:
    project_id: str
    job_id: str
    status: str
    result: str | None
    reference_id: str = "001"
    reason: str | None = None


@dataclass
class Recorded:
    """One request the sandbox received: method, host header, path, lower-cased headers, monotonic time."""

    method: str
    host: str
    path: str
    headers: dict[str, str]
    at: float


@dataclass
class _Fault:
    match: str
    status: int
    times: int
    retry_after: str | None = None
    body: bytes | None = None


@dataclass
class PlaymentSandbox:
    """The sandbox's state and its Starlette ``app``; safe to drive from a test thread."""

    api_key: str = SANDBOX_API_KEY
    url_ttl: float = 300.0
    clock: Callable[[], float] = time.time
    jobs: dict[tuple[str, str], SandboxJob] = field(default_factory=dict)
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    created: list[dict[str, Any]] = field(default_factory=list)
    #: Source images on the customer's own server (what a job's ``image_url``/``src`` points at).
    images: dict[str, tuple[bytes, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()
        self._signing_key = uuid.uuid4().bytes
        self.app = Starlette(
            routes=[
                Route("/v1/projects/{project}/jobs/{job}", self._get_job, methods=["GET"]),
                Route("/v1/projects/{project}/jobs", self._create_job, methods=["POST"]),
                Route("/v1/attachments", self._attachment, methods=["GET"]),
                Route("/signed/{name:path}", self._signed, methods=["GET"]),
                Route("/images/{name:path}", self._image, methods=["GET"]),
            ]
        )

    # -- driving the sandbox ------------------------------------------------------------------------

    def add_file(self, name: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        """Store an attachment; returns its (private) Playment-style URL."""
        self.files[name] = (data, content_type)
        return RESULT_URL_BASE + name

    def add_image(self, name: str, data: bytes, content_type: str = "image/jpeg") -> str:
        """Host a source image as a customer would (no key needed); returns its path on this server."""
        self.images[name] = (data, content_type)
        return f"/images/{name}"

    def add_job(
        self,
        job_id: str,
        result: Any = None,
        *,
        masks: dict[str, bytes] | None = None,
        status: str = "completed",
        project_id: str = SANDBOX_PROJECT,
        reason: str | None = None,
    ) -> SandboxJob:
        """Add a job; ``masks`` (name → PNG) become attachments, ``result`` its result object.

        Inside ``result``, a string ``"mask:<name>"`` as a ``url`` is replaced by that mask's URL.
        """
        for name, data in (masks or {}).items():
            self.add_file(f"{job_id}/{name}", data, "image/png")
        result_url = None
        if result is not None:
            resolved = _resolve_masks(result, job_id)
            result_url = self.add_file(
                f"{job_id}/result.json", json.dumps(resolved).encode(), "application/json"
            )
        job = SandboxJob(project_id, job_id, status, result_url, reason=reason)
        self.jobs[(project_id, job_id)] = job
        return job

    def set_status(
        self, job_id: str, status: str, *, reason: str | None = None, project_id: str = SANDBOX_PROJECT
    ) -> None:
        job = self.jobs[(project_id, job_id)]
        job.status, job.reason = status, reason

    def fail(
        self,
        match: str,
        status: int,
        *,
        times: int = 1,
        retry_after: str | None = None,
        body: bytes | None = None,
    ) -> None:
        """Answer ``status`` to the next ``times`` requests whose path+query contains ``match``."""
        with self._lock:
            self._faults.append(_Fault(match, status, times, retry_after, body))

    def requests_to(self, path_prefix: str) -> list[Recorded]:
        return [r for r in self.requests if r.path.startswith(path_prefix)]

    def add_samples(self) -> list[str]:
        """The built-in jobs (semantic image, instance-aware image, 3-frame video); returns their ids."""
        self.add_job(
            SEMANTIC_JOB,
            {"legend": SEMANTIC_LEGEND, "url": "mask:source.png"},
            masks={"source.png": semantic_mask()},
        )
        self.add_job(
            INSTANCE_JOB,
            {"legend": INSTANCE_LEGEND, "instances": INSTANCES, "url": "mask:source.png"},
            masks={"source.png": instance_mask()},
        )
        frames = {f"frame-{i}.png": video_frame(i) for i in range(3)}
        self.add_job(
            VIDEO_JOB,
            {
                "legend": SEMANTIC_LEGEND,
                "frames": [{"frame_index": i, "url": f"mask:frame-{i}.png"} for i in range(3)],
            },
            masks=frames,
        )
        for job_id, paths in SAMPLE_IMAGES.items():
            for frame, path in paths.items():
                self.add_image(path.removeprefix("/images/"), sample_photo(job_id, int(frame)))
        return [SEMANTIC_JOB, INSTANCE_JOB, VIDEO_JOB]

    # -- HTTP -------------------------------------------------------------------------------------

    def _enter(self, request: Request) -> Response | None:
        """Record the request; answer an injected fault if one matches."""
        self.requests.append(
            Recorded(
                request.method,
                request.headers.get("host", ""),
                request.url.path,
                {k.lower(): v for k, v in request.headers.items()},
                time.monotonic(),
            )
        )
        target = request.url.path + ("?" + request.url.query if request.url.query else "")
        with self._lock:
            for fault in self._faults:
                if fault.times > 0 and fault.match in target:
                    fault.times -= 1
                    headers = {"retry-after": fault.retry_after} if fault.retry_after else None
                    body = (
                        fault.body if fault.body is not None else b'{"success": false, "error": "injected"}'
                    )
                    return Response(body, fault.status, headers=headers, media_type="application/json")
        return None

    def _authorised(self, request: Request) -> Response | None:
        given = request.headers.get("x-api-key", "")
        if not hmac.compare_digest(given.encode(), self.api_key.encode()):
            return JSONResponse({"success": False, "error": "invalid api key"}, 401)
        return None

    async def _get_job(self, request: Request) -> Response:
        early = self._enter(request) or self._authorised(request)
        if early:
            return early
        job = self.jobs.get((request.path_params["project"], request.path_params["job"]))
        if job is None:
            return JSONResponse({"success": False, "error": "job not found"}, 404)
        data: dict[str, Any] = {
            "project_id": job.project_id,
            "reference_id": job.reference_id,
            "job_id": job.job_id,
            "batch_id": "468b6ae3-e98d-4d08-9427-b6e7a016054c",
            "status": job.status,
            "work_flow_id": SANDBOX_WORKFLOW,
            "priority_weight": 5,
            "tag": SANDBOX_WORKFLOW,
            "result": job.result,
        }
        if job.reason:
            data["reason"] = job.reason
        return JSONResponse({"data": data, "success": True})

    async def _create_job(self, request: Request) -> Response:
        early = self._enter(request) or self._authorised(request)
        if early:
            return early
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"success": False, "error": "body is not JSON"}, 400)
        missing = [
            k
            for k in ("reference_id", "work_flow_id", "data")
            if not isinstance(body, dict) or not body.get(k)
        ]
        if missing:
            return JSONResponse({"success": False, "error": f"missing {', '.join(missing)}"}, 400)
        project = request.path_params["project"]
        self.created.append({"project_id": project, "body": body})
        job_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{project}/{body['reference_id']}/{len(self.created)}"))
        self.jobs[(project, job_id)] = SandboxJob(project, job_id, "PENDING", None, str(body["reference_id"]))
        data = {"job_id": job_id, "reference_id": body["reference_id"], "work_flow_id": body["work_flow_id"]}
        return JSONResponse({"data": data, "success": True})

    async def _attachment(self, request: Request) -> Response:
        early = self._enter(request) or self._authorised(request)
        if early:
            return early
        url = request.query_params.get("url", "")
        name = url[len(RESULT_URL_BASE) :] if url.startswith(RESULT_URL_BASE) else None
        if name is None or name not in self.files:
            return JSONResponse({"success": False, "error": "attachment not found"}, 404)
        expires = str(int(self.clock() + self.url_ttl))
        query = urllib.parse.urlencode({"expires": expires, "signature": self._sign(name, expires)})
        # The signed URL lives on the other loopback name: a different origin, like S3 vs. the API.
        host = "localhost" if request.url.hostname == "127.0.0.1" else "127.0.0.1"
        return RedirectResponse(f"http://{host}:{request.url.port}/signed/{name}?{query}", 302)

    async def _image(self, request: Request) -> Response:
        early = self._enter(request)
        if early:
            return early
        if "x-api-key" in request.headers:  # the Playment key must never reach a customer's server
            return JSONResponse({"success": False, "error": "API key sent to an image host"}, 400)
        found = self.images.get(request.path_params["name"])
        if found is None:
            return Response(b"not found", 404)
        return Response(found[0], media_type=found[1])

    async def _signed(self, request: Request) -> Response:
        early = self._enter(request)
        if early:
            return early
        name = request.path_params["name"]
        expires = request.query_params.get("expires", "")
        signature = request.query_params.get("signature", "")
        if not hmac.compare_digest(signature.encode(), self._sign(name, expires).encode()):
            return Response(
                b"<Error><Code>SignatureDoesNotMatch</Code></Error>", 403, media_type="application/xml"
            )
        if not expires.isdigit() or int(expires) < self.clock():
            return Response(
                b"<Error><Code>AccessDenied</Code>Request has expired</Error>",
                403,
                media_type="application/xml",
            )
        if name not in self.files:
            return Response(b"<Error><Code>NoSuchKey</Code></Error>", 404, media_type="application/xml")
        data, content_type = self.files[name]
        return Response(data, 200, media_type=content_type)

    def _sign(self, name: str, expires: str) -> str:
        return hmac.new(self._signing_key, f"{name}\n{expires}".encode(), hashlib.sha256).hexdigest()


def _resolve_masks(value: Any, job_id: str) -> Any:
    if isinstance(value, dict):
        return {k: _resolve_masks(v, job_id) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_masks(v, job_id) for v in value]
    if isinstance(value, str) and value.startswith("mask:"):
        return RESULT_URL_BASE + f"{job_id}/{value[len('mask:') :]}"
    return value


# -- deterministic masks and photos ----------------------------------------------------------------

WIDTH, HEIGHT = 64, 48


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def semantic_mask() -> bytes:
    """Sky band, a tree, a road, a transparent corner and a few pixels of a colour not in the legend."""
    image = Image.new("RGBA", (WIDTH, HEIGHT), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, WIDTH - 1, 14), fill=(0xF2, 0x33, 0x34, 255))
    draw.rectangle((8, 10, 20, 34), fill=(0xFD, 0x2D, 0x34, 255))
    draw.rectangle((0, 36, WIDTH - 1, HEIGHT - 1), fill=(0x3B, 0x7D, 0xD8, 255))
    draw.rectangle((50, 20, 53, 22), fill=(0x12, 0x34, 0x56, 255))
    # Fully transparent but coloured: alpha 0 is unlabeled whatever the RGB.
    draw.rectangle((56, 0, 63, 5), fill=(0xF2, 0x33, 0x34, 0))
    return _png(image)


def instance_mask() -> bytes:
    """Two cars, two pedestrians, vegetation; pedestrian # 3 is in the legend but not drawn."""
    image = Image.new("RGBA", (WIDTH, HEIGHT), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, WIDTH - 1, 9), fill=(0xFD, 0xA7, 0xDF, 255))
    draw.rectangle((4, 20, 19, 29), fill=(0x00, 0xC5, 0x37, 255))
    draw.rectangle((30, 22, 47, 31), fill=(0xFC, 0xBE, 0x92, 255))
    draw.ellipse((50, 12, 57, 40), fill=(0x01, 0xD9, 0xFC, 255))
    draw.rectangle((22, 34, 25, 45), fill=(0xFA, 0xC1, 0xC2, 255))
    return _png(image)


def video_frame(index: int) -> bytes:
    """Frame ``index`` of the video job: a tree moving right across sky and road."""
    image = Image.new("RGBA", (WIDTH, HEIGHT), (0x3B, 0x7D, 0xD8, 255))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, WIDTH - 1, 11), fill=(0xF2, 0x33, 0x34, 255))
    draw.rectangle((4 + 10 * index, 14, 13 + 10 * index, 30), fill=(0xFD, 0x2D, 0x34, 255))
    return _png(image)


#: The photos the sample jobs were "drawn on", as the customer hosts them (path on the sandbox).
SAMPLE_IMAGES: dict[str, dict[str, str]] = {
    SEMANTIC_JOB: {"0": f"/images/{SEMANTIC_JOB}/0.png"},
    INSTANCE_JOB: {"0": f"/images/{INSTANCE_JOB}/0.png"},
    VIDEO_JOB: {str(i): f"/images/{VIDEO_JOB}/{i}.png" for i in range(3)},
}


def sample_photo(job_id: str, frame: int) -> bytes:
    """A soft photo-like picture of the mask's size: the mask's colours blurred, so they line up."""
    from PIL import ImageFilter

    mask = {SEMANTIC_JOB: semantic_mask, INSTANCE_JOB: instance_mask}.get(job_id)
    source = mask() if mask is not None else video_frame(frame)
    with Image.open(io.BytesIO(source)) as image:
        photo = image.convert("RGB").filter(ImageFilter.GaussianBlur(1.5))
    return _png(photo)
