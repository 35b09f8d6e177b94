"""A fake Label Studio server (Starlette) for tests, following the SDK's REST paths and DRF's shapes.

Auth as Label Studio does it: ``Authorization: Token <legacy key>``, or ``Bearer <access>`` where the
access token (a JWT with ``exp``) came from ``POST /api/token/refresh/`` with ``{"refresh": <personal
access token>}``; anything else answers 401 ``{"detail": …}``. Routes: ``GET /api/tasks/{id}/``,
``GET /api/tasks/{id}/annotations/`` (a list), ``GET /api/projects/{id}/``, and uploaded files under
``/data/upload/…`` (which Label Studio serves to authenticated users only). Unknown ids answer 404
``{"detail": "Not found."}``. Faults (status + headers) are queued per path. Tasks, annotations and
projects are stored as given: tests load them verbatim from tests/conformance/payloads/labelstudio/.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


def make_jwt(claims: dict[str, Any]) -> str:
    """An unsigned-looking JWT (header.payload.signature); the fake only checks it is one it issued."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.{secrets.token_urlsafe(16)}"


@dataclass
class FakeLabelStudio:
    legacy_token: str = "0123456789abcdef0123456789abcdef01234567"
    refresh_token: str = field(
        default_factory=lambda: make_jwt({"token_type": "refresh", "exp": int(time.time()) + 86400})
    )
    access_ttl: float = 3600.0  # seconds an issued access token is valid
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    annotations: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    projects: dict[str, dict[str, Any]] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)  # server path → bytes (auth required)
    faults: dict[str, list[tuple[int, dict[str, str]]]] = field(default_factory=dict)
    seen: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    issued: dict[str, float] = field(default_factory=dict)  # access token → expiry
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fault(self, path: str, status: int, headers: dict[str, str] | None = None) -> None:
        self.faults.setdefault(path, []).append((status, headers or {}))

    def revoke_access_tokens(self) -> None:
        with self.lock:
            self.issued.clear()

    def requests_to(self, prefix: str) -> list[tuple[str, str, dict[str, str]]]:
        return [seen for seen in self.seen if seen[1].startswith(prefix)]


def build_app(fake: FakeLabelStudio) -> Starlette:
    def check(request: Request) -> Response | None:
        with fake.lock:
            fake.seen.append((request.method, request.url.path, dict(request.headers)))
            queued = fake.faults.get(request.url.path)
            if queued:
                status, headers = queued.pop(0)
                return JSONResponse({"detail": "injected"}, status_code=status, headers=headers)
            authorization = request.headers.get("authorization", "")
            if authorization == f"Token {fake.legacy_token}":
                return None
            if authorization.startswith("Bearer "):
                expiry = fake.issued.get(authorization[len("Bearer ") :])
                if expiry is not None and expiry > time.time():
                    return None
                return JSONResponse(
                    {"detail": "Given token not valid for any token type", "code": "token_not_valid"},
                    status_code=401,
                )
        return JSONResponse({"detail": "Authentication credentials were not provided."}, status_code=401)

    async def refresh(request: Request) -> Response:
        with fake.lock:
            fake.seen.append((request.method, request.url.path, dict(request.headers)))
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"detail": "JSON parse error"}, status_code=400)
        if not isinstance(body, dict) or body.get("refresh") != fake.refresh_token:
            return JSONResponse(
                {"detail": "Token is invalid or expired", "code": "token_not_valid"}, status_code=401
            )
        expiry = time.time() + fake.access_ttl
        access = make_jwt({"token_type": "access", "exp": int(expiry), "user_id": 1})
        with fake.lock:
            fake.issued[access] = expiry
        return JSONResponse({"access": access})

    async def task(request: Request) -> Response:
        if (denied := check(request)) is not None:
            return denied
        found = fake.tasks.get(request.path_params["id"])
        return JSONResponse(found) if found is not None else _not_found()

    async def task_annotations(request: Request) -> Response:
        if (denied := check(request)) is not None:
            return denied
        found = fake.annotations.get(request.path_params["id"])
        return JSONResponse(found) if found is not None else _not_found()

    async def project(request: Request) -> Response:
        if (denied := check(request)) is not None:
            return denied
        found = fake.projects.get(request.path_params["id"])
        return JSONResponse(found) if found is not None else _not_found()

    async def data(request: Request) -> Response:
        if (denied := check(request)) is not None:
            return denied
        found = fake.files.get(request.url.path)
        return Response(found, media_type="application/octet-stream") if found is not None else _not_found()

    return Starlette(
        routes=[
            Route("/data/{path:path}", data, methods=["GET"]),
            Route("/api/token/refresh/", refresh, methods=["POST"]),
            Route("/api/tasks/{id}/", task, methods=["GET"]),
            Route("/api/tasks/{id}/annotations/", task_annotations, methods=["GET"]),
            Route("/api/projects/{id}/", project, methods=["GET"]),
            Route("/{path:path}", data, methods=["GET"]),  # other server paths a task's data names
        ]
    )


def _not_found() -> Response:
    return JSONResponse({"detail": "Not found."}, status_code=404)
