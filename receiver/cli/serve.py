"""The long-running commands: `labelhook run` (web + worker), `serve` (web), `work` (worker)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

from processors.config import DEMO_SOURCE, Settings
from processors.vendors.playment.options import PlaymentOptions
from receiver.cli.backends import open_backends

log = logging.getLogger("labelhook")

# A PaaS sends SIGKILL 30 s after SIGTERM: uvicorn gets 5 s to finish requests, the worker 15-20 s
# to drain, which leaves headroom for closing the queue.
HTTP_GRACE_SECONDS = 5
RUN_DRAIN_SECONDS = 15.0
WORK_DRAIN_SECONDS = 20.0


def warn_demo_key(settings: Settings) -> None:
    if settings.demo_secret_in_use:
        log.warning(
            "LABELHOOK_SOURCES is unset: serving only the 'demo' source with the public demo key; "
            "configure your own sources before exposing this port"
        )


def _server_class() -> type[Any]:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, minus re-raising the signal after shutdown: a drained exit is status 0."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            # uvicorn's handler only sets should_exit (a second signal forces exit): flag-only handlers.
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return Server


def serve(settings: Settings, args: argparse.Namespace, *, with_worker: bool, demo: bool) -> int:
    """`labelhook run` (web + worker, optionally the demo) and `labelhook serve` (web only)."""
    import uvicorn

    from processors.worker import Worker
    from receiver.app import create_app
    from receiver.demo.sender import PLAYMENT_SOURCE, send_playment_samples, send_samples
    from receiver.protocol import BoundedHttpTools

    queue, store = open_backends(settings)
    worker = Worker(settings, queue, store, drain_seconds=RUN_DRAIN_SECONDS) if with_worker else None
    host = args.host
    port = settings.port if args.port is None else args.port
    background = []
    # Where this process can reach itself: the demo posts there, the banner names it.
    local = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    url = f"http://{'[' + local + ']' if ':' in local else local}:{port}"
    if demo:
        source = settings.source(DEMO_SOURCE)
        if source is None or source.vendor != "standard":
            print(
                "labelhook: run --demo needs the standard 'demo' source (leave LABELHOOK_SOURCES unset)",
                file=sys.stderr,
            )
            return 2
        background.append(lambda: send_samples(url, source))
        sandbox = settings.source(PLAYMENT_SOURCE)
        if sandbox is not None and PlaymentOptions.of(sandbox).sandbox:
            background.append(lambda: send_playment_samples(url, sandbox, store=store))
    if with_worker:
        from receiver.cli.banner import announce

        token = getattr(args, "demo_token", None)
        background.append(lambda: announce(url, settings, store, demo_token=token))
    server: Any = None

    def worker_died() -> None:
        # The PaaS restarts a process that exits; a web dyno with a dead worker would ack forever.
        if server is not None:
            server.should_exit = True

    app = create_app(
        settings, queue, store, worker=worker, background=background, on_worker_death=worker_died
    )
    log.info(
        "starting",
        extra={
            "host": host,
            "port": port,
            "queue": settings.queue_url,
            "store": store.describe(),
            "worker": with_worker,
            "demo": demo,
        },
    )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        timeout_graceful_shutdown=HTTP_GRACE_SECONDS,
        # No limit_concurrency: uvicorn's counts idle connections as load (the app limits requests,
        # the protocol idle connections: receiver/request_limit.py, receiver/protocol.py).
        timeout_keep_alive=5,
        http=BoundedHttpTools,  # head-size cap, idle and request deadlines, JSON 400 (receiver/protocol.py)
    )
    server = _server_class()(config)
    server.run()
    if worker is not None and worker.failure is not None:
        log.critical("exiting: the worker died", extra={"error": worker.failure})
        return 1
    return 0


def work(settings: Settings) -> int:
    """`labelhook work`: the worker alone, until SIGTERM/SIGINT and a drain."""
    from processors.worker import Worker

    async def main() -> None:
        queue, store = open_backends(settings)
        worker = Worker(settings, queue, store, drain_seconds=WORK_DRAIN_SECONDS)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            # The handler only sets a flag; the loop drains and returns on its own.
            loop.add_signal_handler(sig, worker.stop)
        log.info(
            "worker starting",
            extra={
                "queue": settings.queue_url,
                "store": store.describe(),
                "concurrency": settings.worker_concurrency,
            },
        )
        try:
            await worker.run()
        finally:
            await queue.close()

    try:
        asyncio.run(main())
    except Exception:
        return 1  # Worker.run logged why; a non-zero exit makes the platform restart the process
    return 0
