"""A fake CVAT server (Starlette) for tests, following seed 004's jobs API and its data shapes.

``Authorization: Token <key>`` is checked (401), unknown ids answer 404. Routes: ``GET /api/jobs/{id}``,
``GET /api/jobs/{id}/annotations/``, ``GET /api/jobs/{id}/data/meta``, ``GET /api/jobs/{id}/data?type=frame
&number=N&quality=original`` (the frame's image), ``GET /api/labels?job_id=``
(paginated ``{count, next, previous, results}``), ``POST /api/jobs/{id}/dataset/export?format=`` →
``{rq_id}``, ``GET /api/requests/{rq_id}`` (queued/started for a configurable number of polls, then
finished with ``result_url`` or failed with ``message``), and the download, which redirects to a
signed URL on the *other* loopback origin (``localhost`` vs ``127.0.0.1``) that refuses requests
carrying credentials; ``FakeExport.result_origin`` makes ``result_url`` name another origin altogether,
as a CVAT behind a proxy does. Labels are a job's own (``FakeCvatJob.labels``) or the shared list.
Faults (status + headers, e.g. 429 with Retry-After, 503) are queued per path.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

SIGNING_KEY = b"fake-cvat-bucket-key"


@dataclass
class FakeExport:
    polls_before_finish: int = 2  # answers of "started" before "finished"
    fail_message: str | None = None  # finish as "failed" with this message instead
    archive: bytes = b"PK\x05\x06" + bytes(18)  # an empty zip by default
    #: Origin (``http://host:port``) the finished ``result_url`` names instead of this server's own:
    #: CVAT builds it from its configured host, which behind a proxy may be another origin entirely.
    result_origin: str | None = None
    polls: int = 0


@dataclass
class FakeCvatJob:
    job: dict[str, Any]
    annotations: Any
    meta: dict[str, Any]
    #: Frame number → original image bytes; frames not listed are made up as JPEGs of the meta's size.
    frames: dict[int, bytes] = field(default_factory=dict)
    labels: list[dict[str, Any]] | None = None  # the job's task/project labels; None: FakeCvat.labels

    def frame_image(self, number: int) -> bytes | None:
        """What ``GET /api/jobs/{id}/data?type=frame&number=N&quality=original`` answers."""
        if number in self.frames:
            return self.frames[number]
        sizes = self.meta.get("frames") or []
        included = self.meta.get("included_frames")
        if isinstance(included, list) and included:  # a ground-truth job: its frames, in this order
            numbers = [int(n) for n in included]
        else:
            start = int(self.job.get("start_frame", 0))
            numbers = list(range(start, int(self.job.get("stop_frame", start + len(sizes) - 1)) + 1))
        if not sizes or number not in numbers:
            return None
        size = sizes[0] if len(sizes) == 1 else sizes[numbers.index(number)]
        return frame_jpeg(int(size["width"]), int(size["height"]), number)


def frame_jpeg(width: int, height: int, seed: int) -> bytes:
    """A photo-like JPEG (noise) standing in for an uploaded frame."""
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


@dataclass
class FakeCvat:
    api_key: str = "cvat-test-token"
    jobs: dict[str, FakeCvatJob] = field(default_factory=dict)
    labels: list[dict[str, Any]] = field(default_factory=list)
    export: FakeExport = field(default_factory=FakeExport)
    page_size_cap: int = 2  # the server caps page_size, so pagination is exercised
    faults: dict[str, list[tuple[int, dict[str, str]]]] = field(default_factory=dict)
    seen: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fault(self, path: str, status: int, headers: dict[str, str] | None = None) -> None:
        self.faults.setdefault(path, []).append((status, headers or {}))


def build_app(fake: FakeCvat) -> Starlette:
    def check(request: Request) -> Response | None:
        with fake.lock:
            fake.seen.append((request.method, request.url.path, dict(request.headers)))
            queued = fake.faults.get(request.url.path)
            if queued:
                status, headers = queued.pop(0)
                return JSONResponse({"detail": "injected"}, status_code=status, headers=headers)
        if request.headers.get("authorization") != f"Token {fake.api_key}":
            return JSONResponse({"detail": "Authentication credentials were not provided."}, status_code=401)
        return None

    def job_of(request: Request) -> FakeCvatJob | None:
        return fake.jobs.get(request.path_params["id"])

    async def job(request: Request) -> Response:
        if (denied := check(request)) is not None:
            return denied
        found = job_of(request)
        return JSONResponse(found.job) if found else _not_found()

    async def annotations(request: Request) -> Response:
        if (denied := check(request)) is not None:
            return denied
        found = job_of(request)
        return JSONResponse(found.annotations) if found else _not_found()

    async def meta(request: Request) -> Response:
        if (denied := check(request)) is not None:
            return denied
        found = job_of(request)
        return JSONResponse(found.meta) if found else _not_found()

    async def data(request: Request) -> Response:
        if (denied := check(request)) is not None:
            return denied
        found = job_of(request)
        if found is None:
            return _not_found()
        # CVAT answers 400 for a bad type/quality/number, 404 for a frame outside the job.
        query = request.query_params
        if query.get("type") != "frame" or query.get("quality") not in ("original", "compressed"):
            return JSONResponse({"detail": "Wrong type or quality"}, status_code=400)
        try:
            number = int(query.get("number", ""))
        except ValueError:
            return JSONResponse({"detail": "number must be an integer"}, status_code=400)
        image = found.frame_image(number)
        if image is None:
            return JSONResponse({"detail": f"Frame {number} is out of the job range"}, status_code=404)
        return Response(image, media_type="image/jpeg" if image[:3] == b"\xff\xd8\xff" else "image/png")

    async def labels(request: Request) -> Response:
        if (denied := check(request)) is not None:
            return denied
        found = fake.jobs.get(request.query_params.get("job_id", ""))
        if found is None:
            return _not_found()
        all_labels = fake.labels if found.labels is None else found.labels
        page = int(request.query_params.get("page", "1"))
        size = min(int(request.query_params.get("page_size", "10")), fake.page_size_cap)
        chunk = all_labels[(page - 1) * size : page * size]
        more = page * size < len(all_labels)
        base = str(request.url.remove_query_params("page"))
        return JSONResponse(
            {
                "count": len(all_labels),
                "next": f"{base}&page={page + 1}" if more else None,
                "previous": None,
                "results": chunk,
            }
        )

    async def start_export(request: Request) -> Response:
        if (denied := check(request)) is not None:
            return denied
        if job_of(request) is None:
            return _not_found()
        if not request.query_params.get("format"):
            return JSONResponse({"format": ["This field is required."]}, status_code=400)
        fake.export.polls = 0
        rq_id = f"export:job-{request.path_params['id']}-{request.query_params['format']}"
        return JSONResponse({"rq_id": rq_id}, status_code=202)

    async def request_status(request: Request) -> Response:
        if (denied := check(request)) is not None:
            return denied
        rq_id = request.path_params["rq_id"]
        if not rq_id.startswith("export:job-"):
            return _not_found()
        export = fake.export
        export.polls += 1
        body: dict[str, Any] = {"id": rq_id, "status": "started", "message": "", "progress": 0.5}
        if export.polls > export.polls_before_finish:
            if export.fail_message is not None:
                body.update(status="failed", message=export.fail_message)
            else:
                job_id = rq_id.split("-", 2)[1]
                result_url = str(request.url_for("download", id=job_id)) + f"?rq_id={rq_id}"
                if export.result_origin is not None:
                    result_url = export.result_origin + "/api/" + result_url.split("/api/", 1)[1]
                body.update(status="finished", progress=1.0, result_url=result_url)
        return JSONResponse(body)

    async def download(request: Request) -> Response:
        if (denied := check(request)) is not None:
            return denied
        if job_of(request) is None:
            return _not_found()
        other = "localhost" if request.url.hostname == "127.0.0.1" else "127.0.0.1"
        name = f"job-{request.path_params['id']}.zip"
        signature = hmac.new(SIGNING_KEY, name.encode(), hashlib.sha256).hexdigest()
        return RedirectResponse(
            f"http://{other}:{request.url.port}/bucket/{name}?X-Amz-Signature={signature}", status_code=302
        )

    async def bucket(request: Request) -> Response:
        fake.seen.append((request.method, request.url.path, dict(request.headers)))
        if "authorization" in request.headers:
            return JSONResponse({"detail": "credentials sent to the bucket"}, status_code=400)
        name = request.path_params["name"]
        expected = hmac.new(SIGNING_KEY, name.encode(), hashlib.sha256).hexdigest()
        if request.query_params.get("X-Amz-Signature") != expected:
            return Response(status_code=403)
        return Response(fake.export.archive, media_type="application/zip")

    return Starlette(
        routes=[
            Route("/api/jobs/{id}", job, methods=["GET"]),
            Route("/api/jobs/{id}/annotations/", annotations, methods=["GET"]),
            Route("/api/jobs/{id}/data/meta", meta, methods=["GET"]),
            Route("/api/jobs/{id}/data", data, methods=["GET"]),
            Route("/api/labels", labels, methods=["GET"]),
            Route("/api/jobs/{id}/dataset/export", start_export, methods=["POST"]),
            Route("/api/jobs/{id}/dataset/download", download, methods=["GET"], name="download"),
            Route("/api/requests/{rq_id}", request_status, methods=["GET"]),
            Route("/bucket/{name}", bucket, methods=["GET"]),
        ]
    )


def _not_found() -> Response:
    return JSONResponse({"detail": "Not found."}, status_code=404)
