"""`create_app`: the Starlette application — callback intake, health, readiness, schema.

The intake path is the hot path and stays small: find the source, check the content type, read the
(capped) body, let the vendor adapter verify it, enqueue durably, answer. Nothing slow happens before
the ack; fetching and decoding are the worker's job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from processors.config import Settings
from processors.delivery import Delivery, new_delivery_id
from processors.queue import Queue, QueueUnavailable
from processors.store import Store, StoreError
from processors.worker import VERSION, Worker
from receiver.errors import NotFound, ReceiverError, Unavailable, UnsupportedMedia, error_response
from receiver.middleware import BodyLimitMiddleware
from receiver.openapi import openapi_schema
from receiver.vendors import ADAPTERS, IncomingRequest, VendorAdapter

log = logging.getLogger("labelhook.receiver")
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 400: "bad_request"}


def _is_json(content_type: str | None) -> bool:
    if content_type is None:
        return True  # absent: try to parse; the adapter answers 400 if it is not JSON
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def create_app(
    settings: Settings,
    queue: Queue,
    store: Store,
    *,
    worker: Worker | None = None,
    background: Sequence[Callable[[], Coroutine[Any, Any, None]]] = (),
    clock: Callable[[], float] = time.time,
    close_on_shutdown: bool = True,
) -> Starlette:
    """Build the app. ``worker`` (for `labelhook run`) and ``background`` tasks live in the lifespan."""
    adapters: dict[str, VendorAdapter] = {
        name: ADAPTERS[source.vendor](source) for name, source in settings.sources.items()
    }

    async def receive_hook(request: Request) -> Response:
        name = request.path_params["source"]
        adapter = adapters.get(name)
        if adapter is None:
            raise NotFound(f"no source named {name!r}", code="unknown_source")
        if not _is_json(request.headers.get("content-type")):
            raise UnsupportedMedia("callbacks must be application/json")
        body = await request.body()
        now = clock()
        callback = adapter.verify(IncomingRequest(request.headers, request.query_params, body), now)
        if not callback.enqueue:
            return JSONResponse({"delivery_id": None, "duplicate": False, "queued": False}, status_code=200)
        delivery = Delivery(
            id=new_delivery_id(),
            source=name,
            vendor=adapter.source.vendor,
            dedupe_key=callback.dedupe_key,
            job_id=callback.job_id,
            project=callback.project,
            body=body,
            received_at=now,
            state=callback.state,
            kind=callback.kind,
            meta=callback.meta,
        )
        try:
            result = await queue.enqueue(delivery)
        except QueueUnavailable as exc:
            log.error("enqueue failed", extra={"source": name, "error": str(exc)})
            raise Unavailable("queue unavailable; retry later", code="queue_unavailable") from exc
        if result.duplicate:
            return JSONResponse({"delivery_id": result.delivery_id, "duplicate": True}, status_code=200)
        return JSONResponse({"delivery_id": result.delivery_id, "duplicate": False}, status_code=202)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        checks: dict[str, Any] = {}
        ok = True
        try:
            await queue.ping()
            checks["queue"] = "ok"
            checks["depth"] = await queue.depth()
        except QueueUnavailable as exc:
            ok, checks["queue"] = False, str(exc)
        try:
            await asyncio.to_thread(store.ping)
            checks["store"] = "ok"
        except StoreError as exc:
            ok, checks["store"] = False, exc.reason
        if not ok:
            return JSONResponse({"error": "not_ready", "detail": checks}, status_code=503)
        return JSONResponse({"status": "ready", **checks})

    schema = openapi_schema(VERSION)

    async def openapi(request: Request) -> Response:
        return JSONResponse(schema)

    async def on_receiver_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ReceiverError)
        if exc.status_code == 401:
            log.info("rejected", extra={"path": request.url.path, "reason": exc.code})
        return exc.response()

    async def on_http_exception(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), dict(exc.headers or {}))

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error", extra={"path": request.url.path})
        return error_response(500, "internal_error", "internal error")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        tasks: list[asyncio.Task[None]] = [asyncio.create_task(fn()) for fn in background]
        worker_task = asyncio.create_task(worker.run()) if worker is not None else None
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            if worker is not None and worker_task is not None:
                worker.stop()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(worker_task, worker.drain_seconds + 5)
            if close_on_shutdown:
                await queue.close()

    return Starlette(
        routes=[
            Route("/hooks/{source}", receive_hook, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/openapi.json", openapi, methods=["GET"]),
        ],
        middleware=[Middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes)],
        exception_handlers={
            ReceiverError: on_receiver_error,
            HTTPException: on_http_exception,
            Exception: on_unexpected,
        },
        lifespan=lifespan,
    )
