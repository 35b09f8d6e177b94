"""A fake super.AI API (Starlette) for tests: jobs, job responses, signed data URLs, fault injection.

Follows the public API: ``API-KEY`` header checked (401), unknown ids 404, ``POST /v1/apps/{app}/jobs``,
``GET /v1/apps/{app}/batches/{batch}``, ``GET /v1/jobs/{id}``, ``GET /v1/jobs/{id}/response``, ``GET /v1/data/url?path=data://…&secondsTtl=``
answering ``{ownerId, path, signedUrl}``. Signed URLs point at the *other* loopback origin
(``localhost`` when called on ``127.0.0.1`` and vice versa), carry an HMAC and an expiry, and answer
403 once expired, like a cloud bucket. Faults (429 with Retry-After, 5xx) are queued per path.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)


@dataclass
class FakeJob:
    state: str
    response: Any = None  # JSON value, or bytes served verbatim (to serve malformed JSON)
    input: Any = None  # the job's input as created (an image URL for image projects), echoed by GET


@dataclass
class FakeSuperAI:
    api_key: str = "sai-test-key"
    jobs: dict[str, FakeJob] = field(default_factory=dict)
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    public: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    faults: dict[str, list[tuple[int, dict[str, str]]]] = field(default_factory=dict)
    #: ``(app id, batch id)`` → the answer of ``GET /v1/apps/{app}/batches/{batch}`` (the SDK's
    #: ``fetch_batch_job``); its layout is not published, ``jobIds`` is labelhook's assumption.
    batches: dict[tuple[str, str], Any] = field(default_factory=dict)
    #: The next N signed URLs are issued already expired (a slow worker, a clock skew).
    expire_next: int = 0
    next_id: int = 1000
    _key: bytes = field(default_factory=lambda: os.urandom(16))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- test controls ------------------------------------------------------------------------------

    def add_job(self, job_id: str, state: str = "COMPLETED", response: Any = None, input: Any = None) -> None:
        self.jobs[job_id] = FakeJob(state, response, input)

    def add_public(self, name: str, data: bytes, content_type: str = "image/jpeg") -> str:
        """A file on the customer's own server (not super.AI's): served without credentials at /public/."""
        self.public[name] = (data, content_type)
        return f"/public/{name}"

    def add_file(self, data_path: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self.files[data_path] = (data, content_type)

    def fail(self, path: str, status: int, *, times: int = 1, headers: dict[str, str] | None = None) -> None:
        self.faults.setdefault(path, []).extend([(status, headers or {})] * times)

    def requests_to(self, path: str, method: str = "GET") -> list[Seen]:
        return [s for s in self.seen if s.path == path and s.method == method]

    # -- the app ------------------------------------------------------------------------------------

    @property
    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/apps/{app_id}/jobs", self._create, methods=["POST"]),
                Route("/v1/apps/{app_id}/batches/{batch_id}", self._batch, methods=["GET"]),
                Route("/v1/jobs/{job_id}", self._job, methods=["GET"]),
                Route("/v1/jobs/{job_id}/response", self._response, methods=["GET"]),
                Route("/v1/data/url", self._data_url, methods=["GET"]),
                Route("/signed/{token:path}", self._signed, methods=["GET"]),
                Route("/public/{name:path}", self._public, methods=["GET"]),
            ]
        )

    async def _record(self, request: Request) -> Response | None:
        body = await request.body()
        self.seen.append(
            Seen(request.method, request.url.path, dict(request.query_params), dict(request.headers), body)
        )
        with self._lock:
            queued = self.faults.get(request.url.path)
            fault = queued.pop(0) if queued else None
        if fault is not None:
            status, headers = fault
            return JSONResponse({"error": "injected"}, status_code=status, headers=headers)
        unauthenticated = request.url.path.startswith(("/signed/", "/public/"))
        if not unauthenticated and request.headers.get("api-key") != self.api_key:
            return JSONResponse({"error": "Unauthorized"}, status_code=401)
        return None

    async def _create(self, request: Request) -> Response:
        if (early := await self._record(request)) is not None:
            return early
        try:
            body = json.loads(self.seen[-1].body)
            inputs = body["inputs"]
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": "inputs required"}, status_code=400)
        created = []
        for _ in inputs:
            with self._lock:
                self.next_id += 1
                job_id = str(self.next_id)
            self.jobs[job_id] = FakeJob("SCHEDULED")
            created.append({"id": int(job_id), "uuid": f"uuid-{job_id}", "state": "SCHEDULED"})
        return JSONResponse({"batchId": "batch-1", "jobs": created}, status_code=200)

    async def _batch(self, request: Request) -> Response:
        if (early := await self._record(request)) is not None:
            return early
        answer = self.batches.get((request.path_params["app_id"], request.path_params["batch_id"]))
        if answer is None:
            return JSONResponse({"error": "Batch not found"}, status_code=404)
        return JSONResponse(answer)

    async def _job(self, request: Request) -> Response:
        if (early := await self._record(request)) is not None:
            return early
        job_id = request.path_params["job_id"]
        job = self.jobs.get(job_id)
        if job is None:
            return JSONResponse({"error": "Job not found"}, status_code=404)
        body: dict[str, Any] = {"id": int(job_id) if job_id.isdigit() else job_id, "state": job.state}
        if job.input is not None:
            body["input"] = job.input
        return JSONResponse(body)

    async def _response(self, request: Request) -> Response:
        if (early := await self._record(request)) is not None:
            return early
        job = self.jobs.get(request.path_params["job_id"])
        if job is None:
            return JSONResponse({"error": "Job not found"}, status_code=404)
        if isinstance(job.response, bytes):
            return Response(job.response, media_type="application/json")
        return JSONResponse(job.response)

    async def _data_url(self, request: Request) -> Response:
        if (early := await self._record(request)) is not None:
            return early
        path = request.query_params.get("path", "")
        if path not in self.files:
            return JSONResponse({"error": "Data not found"}, status_code=404)
        ttl = int(request.query_params.get("secondsTtl", "600"))
        with self._lock:
            expired = self.expire_next > 0
            self.expire_next -= 1 if expired else 0
        expires = int(time.time()) + (-10 if expired else ttl)
        other = "localhost" if request.url.hostname == "127.0.0.1" else "127.0.0.1"
        token = quote(path, safe="")
        signature = self._sign(path, expires)
        url = f"http://{other}:{request.url.port}/signed/{token}?expires={expires}&sig={signature}"
        return JSONResponse({"ownerId": 1, "path": path, "signedUrl": url})

    async def _public(self, request: Request) -> Response:
        if (early := await self._record(request)) is not None:
            return early
        if "api-key" in request.headers:
            return JSONResponse({"error": "API key sent to a customer server"}, status_code=400)
        found = self.public.get(request.path_params["name"])
        if found is None:
            return Response(b"not found", status_code=404)
        return Response(found[0], media_type=found[1])

    async def _signed(self, request: Request) -> Response:
        if (early := await self._record(request)) is not None:
            return early
        path = unquote(request.path_params["token"])
        try:
            expires = int(request.query_params.get("expires", ""))
        except ValueError:
            return Response(b"<Error><Code>AccessDenied</Code></Error>", status_code=403)
        good = hmac.compare_digest(request.query_params.get("sig", ""), self._sign(path, expires))
        if not good or expires < time.time():
            return Response(b"<Error><Code>AccessDenied</Code><Message>expired</Message></Error>", 403)
        data, content_type = self.files[path]
        return Response(data, media_type=content_type)

    def _sign(self, path: str, expires: int) -> str:
        return hmac.new(self._key, f"{path}|{expires}".encode(), hashlib.sha256).hexdigest()
