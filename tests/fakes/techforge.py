"""A fake TechForge API (seed 001) as a Starlette app: create job, jobs-get, result files behind signed URLs.

Follows the documented behaviour: API key checked (401), unknown project (400) or job (404), new jobs
``QUEUED`` and moving through a per-job status script one jobs-get at a time. Injected trouble: 429 with
Retry-After, 5xx. Result files live at ``/api/files/<name>`` on the API origin (127.0.0.1), which
redirects to a signed URL on another origin (``localhost``, same port) that refuses the API key;
file bodies are generated on the fly, so 200 MB costs no memory, and can be cut off mid-body.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

API_KEY = "tf-test-key"
SIGNATURE = "sig-0123456789abcdef"
CHUNK = 256 * 1024


def pattern_bytes(name: str, size: int) -> Iterator[bytes]:
    """The deterministic content of file ``name``: a repeating 64 KiB block seeded by the name."""
    block = hashlib.sha256(name.encode()).digest() * 2048  # 64 KiB
    sent = 0
    while sent < size:
        piece = block * (CHUNK // len(block))
        piece = piece[: size - sent]
        sent += len(piece)
        yield piece


@dataclass
class FakeFile:
    size: int
    content_type: str
    drop_at: int | None = None  # close the connection after this many bytes


@dataclass
class FakeJob:
    uuid: str
    body: dict[str, Any]
    script: list[str]
    outputs: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    gets: int = 0


class FakeTechForge:
    """State and routes of the fake vendor; thread-safe (uvicorn serves it on its own thread)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.projects = {"tpl-brand-1", "proj-7"}
        self.jobs: dict[str, FakeJob] = {}
        self.files: dict[str, FakeFile] = {}
        self.requests: list[tuple[float, str, str, dict[str, str]]] = []
        self.throttle: list[tuple[int, str | None]] = []  # queued (status, Retry-After) answers to jobs-get
        self.default_script = ["QUEUED", "processing", "done"]
        self.api_origin = ""
        self.signed_origin = ""
        self.app = Starlette(
            routes=[
                Route("/api/provider/jobs", self.create_job, methods=["POST"]),
                Route("/api/jobs-get", self.get_job, methods=["GET"]),
                Route("/api/files/{name}", self.file_redirect, methods=["GET"]),
                Route("/signed/{name}", self.signed_file, methods=["GET"]),
            ]
        )

    def bind(self, port: int) -> None:
        self.api_origin = f"http://127.0.0.1:{port}"
        self.signed_origin = f"http://localhost:{port}"

    # --- test controls ----------------------------------------------------------------------------

    def add_file(self, name: str, size: int, content_type: str, *, drop_at: int | None = None) -> str:
        """Register a result file; returns its API URL (which redirects to the signed URL)."""
        self.files[name] = FakeFile(size, content_type, drop_at)
        return f"{self.api_origin}/api/files/{name}"

    def add_job(self, script: list[str], outputs: dict[str, Any] | None = None, **body: Any) -> str:
        job = FakeJob(str(uuid.uuid4()), body, list(script), dict(outputs or {}))
        with self.lock:
            self.jobs[job.uuid] = job
        return job.uuid

    def calls(self, path: str) -> list[tuple[float, str, dict[str, str]]]:
        with self.lock:
            return [(t, m, h) for t, m, p, h in self.requests if p == path]

    # --- routes -----------------------------------------------------------------------------------

    def _log(self, request: Request) -> None:
        with self.lock:
            self.requests.append((time.monotonic(), request.method, request.url.path, dict(request.headers)))

    @staticmethod
    def _authorized(request: Request) -> bool:
        return request.headers.get("x-api-key") == API_KEY

    async def create_job(self, request: Request) -> Response:
        self._log(request)
        if not self._authorized(request):
            return JSONResponse({"message": "Unauthorized"}, status_code=401)
        body = await request.json()
        source = body.get("template_id") or body.get("project_id")
        if source not in self.projects:
            return JSONResponse({"message": "Project or source not found"}, status_code=400)
        job = FakeJob(str(uuid.uuid4()), body, list(self.default_script))
        with self.lock:
            self.jobs[job.uuid] = job
        return JSONResponse(
            {
                "message": "Job update accepted and processing.",
                "job": {
                    "uuid": job.uuid,
                    "status": "QUEUED",
                    "job_type": body.get("job_type"),
                    "source_id": source,
                },
            },
            status_code=201,
        )

    def record(self, job: FakeJob, status: str) -> dict[str, Any]:
        record: dict[str, Any] = {
            "uuid": job.uuid,
            "status": status,
            "job_type": job.body.get("job_type"),
            "source_id": job.body.get("template_id") or job.body.get("project_id"),
            "jobinput": job.body,  # the vendor stores the whole request body, asset URLs included
            "created_at": "2026-11-23T10:00:00Z",
        }
        if status.lower() in ("done", "completed"):
            record.update(job.outputs)
        if status.upper() == "FAILED":
            record["error"] = job.error or "render failed"
        return {"job": record}

    async def get_job(self, request: Request) -> Response:
        self._log(request)
        if not self._authorized(request):
            return JSONResponse({"message": "Unauthorized"}, status_code=401)
        with self.lock:
            if self.throttle:
                status, retry_after = self.throttle.pop(0)
                headers = {"Retry-After": retry_after} if retry_after else {}
                return JSONResponse({"message": "slow down"}, status_code=status, headers=headers)
            job = self.jobs.get(request.query_params.get("uuid", ""))
            if job is None:
                return JSONResponse({"message": "Job not found"}, status_code=404)
            status = job.script[min(job.gets, len(job.script) - 1)]
            job.gets += 1
        return JSONResponse(self.record(job, status))

    async def file_redirect(self, request: Request) -> Response:
        self._log(request)
        if not self._authorized(request):
            return JSONResponse({"message": "Unauthorized"}, status_code=401)
        name = request.path_params["name"]
        if name not in self.files:
            return JSONResponse({"message": "File not found"}, status_code=404)
        target = f"{self.signed_origin}/signed/{name}?sig={SIGNATURE}&expires=9999999999"
        return RedirectResponse(target, status_code=302)

    async def signed_file(self, request: Request) -> Response:
        self._log(request)
        # A signed-URL host never needs (and must never see) the account's API key.
        if "x-api-key" in request.headers or "authorization" in request.headers:
            return JSONResponse({"message": "credential sent to the storage host"}, status_code=400)
        if request.query_params.get("sig") != SIGNATURE:
            return JSONResponse({"message": "bad signature"}, status_code=403)
        name = request.path_params["name"]
        spec = self.files.get(name)
        if spec is None:
            return JSONResponse({"message": "File not found"}, status_code=404)

        async def body() -> Any:
            sent = 0
            for piece in pattern_bytes(name, spec.size):
                if spec.drop_at is not None and sent + len(piece) > spec.drop_at:
                    raise ConnectionAbortedError("fake vendor drops the connection")
                sent += len(piece)
                yield piece

        headers = {"Content-Length": str(spec.size)}
        return StreamingResponse(body(), media_type=spec.content_type, headers=headers)
