"""A fake Scale API (Starlette) for tests: tasks, secure result URLs, create-task, a public results bucket.

Follows the public API (docs.scale.com, scaleapi-python-client): HTTP Basic auth with the API key as
user name and an empty password (401 otherwise); ``GET /v1/task/{id}``; ``POST /v1/task/{type}``
creating a ``pending`` task; secure result URLs ``GET /v1/task/{id}/response_url/{uuid}`` (Basic auth).
The same app also plays the public ``scaleapi-results`` bucket (``GET /results/{uuid}``, no auth), so a
test runs it on two ports — two origins — and checks that the key never reaches the bucket.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


@dataclass
class Seen:
    method: str
    path: str
    host: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)


@dataclass
class FakeScale:
    api_key: str = "live_test_key"
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: uuid → (bytes, status): served at /results/{uuid} (public) and /v1/task/{id}/response_url/{uuid}.
    files: dict[str, tuple[bytes, int]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    next_id: int = 1
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- test controls ------------------------------------------------------------------------------

    def add_task(self, task: dict[str, Any]) -> None:
        self.tasks[task["task_id"]] = task

    def add_file(self, uuid: str, data: bytes, status: int = 200) -> None:
        self.files[uuid] = (data, status)

    def requests_to(self, path_prefix: str) -> list[Seen]:
        return [s for s in self.seen if s.path.startswith(path_prefix)]

    # -- the app ------------------------------------------------------------------------------------

    @property
    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/task/{task_id}", self._task, methods=["GET"]),
                Route("/v1/task/{task_id}/response_url/{uuid}", self._secure_file, methods=["GET"]),
                Route("/v1/task/{kind}", self._create, methods=["POST"]),
                Route("/results/{uuid}", self._public_file, methods=["GET"]),
            ]
        )

    async def _record(self, request: Request) -> Seen:
        seen = Seen(
            request.method,
            request.url.path,
            request.headers.get("host", ""),
            {k.lower(): v for k, v in request.headers.items()},
            await request.body(),
        )
        self.seen.append(seen)
        return seen

    def _authorised(self, seen: Seen) -> bool:
        expected = "Basic " + base64.b64encode(f"{self.api_key}:".encode()).decode()
        return seen.headers.get("authorization") == expected

    @staticmethod
    def _unauthorised() -> JSONResponse:
        return JSONResponse({"status_code": 401, "error": "Please provide a valid API key."}, status_code=401)

    async def _task(self, request: Request) -> Response:
        seen = await self._record(request)
        if not self._authorised(seen):
            return self._unauthorised()
        task = self.tasks.get(request.path_params["task_id"])
        if task is None:
            return JSONResponse({"status_code": 404, "error": "Task not found"}, status_code=404)
        return JSONResponse(task)

    async def _create(self, request: Request) -> Response:
        seen = await self._record(request)
        if not self._authorised(seen):
            return self._unauthorised()
        try:
            body = json.loads(seen.body)
        except ValueError:
            return JSONResponse({"status_code": 400, "error": "Invalid JSON"}, status_code=400)
        with self._lock:
            task_id = f"{self.next_id:024x}"
            self.next_id += 1
        task = {
            "task_id": task_id,
            "created_at": "2026-11-30T00:00:00.000Z",
            "callback_url": body.get("callback_url"),
            "type": request.path_params["kind"],
            "status": "pending",
            "instruction": body.get("instruction", ""),
            "params": {k: v for k, v in body.items() if k != "callback_url"},
            "metadata": body.get("metadata", {}),
            "project": body.get("project", "kitchen"),
        }
        self.tasks[task_id] = task
        return JSONResponse(task)

    async def _secure_file(self, request: Request) -> Response:
        seen = await self._record(request)
        if not self._authorised(seen):
            return self._unauthorised()
        return self._serve(request.path_params["uuid"])

    async def _public_file(self, request: Request) -> Response:
        await self._record(request)
        return self._serve(request.path_params["uuid"])

    def _serve(self, uuid: str) -> Response:
        if uuid not in self.files:
            return Response(b"<Error><Code>NoSuchKey</Code></Error>", status_code=404)
        data, status = self.files[uuid]
        return Response(
            data, status_code=status, media_type="image/png" if status == 200 else "application/xml"
        )
