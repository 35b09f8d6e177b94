"""`create_app`: the application — callback intake in front, Starlette for health, readiness, schema.

`receiver.intake.Intake` answers `POST /hooks/{source}` (the hot path: verify, enqueue durably, ack;
nothing slow before the ack — fetching and decoding are the worker's job). Everything else is an
ordinary Starlette app with one JSON error format; its lifespan hosts the worker in `labelhook run`.
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
from starlette.types import ASGIApp

from processors.config import Settings
from processors.fleet import Fleet
from processors.metrics import CONTENT_TYPE, Metrics
from processors.queue import Queue
from processors.store import Store
from processors.version import VERSION
from processors.worker import Worker
from receiver.dashboard import DashboardAuth, dashboard_routes
from receiver.errors import NotFound, ReceiverError, error_response
from receiver.intake import Intake
from receiver.middleware import BodyLimitMiddleware
from receiver.openapi import openapi_schema
from receiver.readiness import Readiness
from receiver.request_limit import RequestLimit
from receiver.vendors import REGISTRY, VendorAdapter

log = logging.getLogger("labelhook.receiver")
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 400: "bad_request"}
#: What `/readyz` tells a caller without the dashboard token (once one is set): the verdicts only.
_CHECKS = ("queue", "store", "worker")


def create_app(
    settings: Settings,
    queue: Queue,
    store: Store,
    *,
    worker: Worker | None = None,
    background: Sequence[Callable[[], Coroutine[Any, Any, None]]] = (),
    clock: Callable[[], float] = time.time,
    close_on_shutdown: bool = True,
    metrics: Metrics | None = None,
    on_worker_death: Callable[[], None] | None = None,
) -> ASGIApp:
    """Build the app. ``worker`` (for `labelhook run`) and ``background`` tasks live in the lifespan.

    ``metrics`` defaults to the worker's, so one `/metrics` shows intake and worker together.
    If the hosted worker's task ends on its own, `/readyz` answers 503 from then on and
    ``on_worker_death`` is called (the CLI stops the server and exits non-zero).
    """
    if metrics is None:
        metrics = worker.metrics if worker is not None else Metrics(settings.sources)
    # Worker books: the in-process worker's live, the others' as they publish them to the store.
    fleet = Fleet(store, local=worker.stats if worker is not None else None)
    metrics.fleet = fleet
    adapters: dict[str, VendorAdapter] = {
        name: REGISTRY[source.vendor].adapter(source) for name, source in settings.sources.items()
    }

    async def post_only(request: Request) -> Response:
        # POSTs to /hooks/… are taken by `Intake` before the router; the route exists so that other
        # methods get the router's 405. Reaching this means the intake was bypassed.
        raise NotFound("callbacks are handled by the intake", code="not_found")

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    # Both probes read figures a background task refreshes (receiver/readiness.py): a scrape never
    # reads a backend, so it can neither stall the loop nor wait on a lock.
    readiness = Readiness(queue, store)

    async def readyz(request: Request) -> Response:
        ok, checks = readiness.report()
        if worker is not None and worker_done.is_set():
            ok, checks["worker"] = False, worker.failure or "worker stopped"
        if metrics_auth is not None and metrics_auth.identify(request) is None:
            # Same rule as /metrics: with a dashboard token set, queue figures and failure reasons are
            # for its holders. Probes cannot send a token, so the verdict itself stays open.
            checks = {
                name: "ok" if value == "ok" else "failing"
                for name, value in checks.items()
                if name in _CHECKS
            }
        if not ok:
            return JSONResponse({"error": "not_ready", "detail": checks}, status_code=503)
        return JSONResponse({"status": "ready", **checks})

    schema = openapi_schema(VERSION)
    token = settings.dashboard_token
    dashboard = dashboard_routes(token, queue, store, list(settings.sources), fleet) if token else []
    # /metrics is open like most exporters unless a dashboard token is set; then it takes that token.
    metrics_auth = DashboardAuth(token) if token else None

    async def metrics_endpoint(request: Request) -> Response:
        if metrics_auth is not None:
            metrics_auth.require(request)
        gauges = readiness.gauges
        depth = gauges.depth if gauges is not None and gauges.problem is None else None
        disk_bytes = gauges.disk_bytes if gauges is not None else None
        return Response(metrics.render(depth, disk_bytes), headers={"Content-Type": CONTENT_TYPE})

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

    worker_done = asyncio.Event()

    def worker_ended(task: asyncio.Task[None]) -> None:
        worker_done.set()
        if not task.cancelled():
            task.exception()  # retrieved here; Worker.run logged it with its traceback
        if worker is None or worker.stopping:
            return  # a requested stop (shutdown): not a death
        if worker.failure is None:
            worker.failure = "worker task ended" if task.cancelled() else "worker returned while not stopping"
        log.critical("worker is not running; readiness fails", extra={"error": worker.failure})
        if on_worker_death is not None:
            on_worker_death()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await readiness.refresh()  # ready or not, /readyz has an answer from the first request
        tasks: list[asyncio.Task[None]] = [asyncio.create_task(fn()) for fn in background]
        tasks.append(asyncio.create_task(readiness.run()))
        tasks.append(asyncio.create_task(fleet.run()))  # the workers' reports, for /metrics and the dashboard
        worker_task = asyncio.create_task(worker.run()) if worker is not None else None
        if worker_task is not None:
            worker_task.add_done_callback(worker_ended)
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

    app = Starlette(
        routes=[
            Route("/hooks/{source}", post_only, methods=["POST"]),
            Route("/hooks/{source}/", post_only, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/openapi.json", openapi, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
            *dashboard,
        ],
        middleware=[Middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes)],
        exception_handlers={
            ReceiverError: on_receiver_error,
            HTTPException: on_http_exception,
            Exception: on_unexpected,
        },
        lifespan=lifespan,
    )
    intake = Intake(
        app,
        adapters=adapters,
        queue=queue,
        max_body_bytes=settings.max_body_bytes,
        clock=clock,
        counters=metrics.intake,
    )
    return RequestLimit(intake, settings.limit_concurrency)
