"""The `labelhook` console script. Each subcommand imports what it needs, so `sources` stays instant."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from processors.config import DEMO_SOURCE, ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from processors.queue import Queue
    from processors.store import Store

log = logging.getLogger("labelhook")

# A PaaS sends SIGKILL 30 s after SIGTERM: uvicorn gets 5 s to finish requests, the worker 15-20 s
# to drain, which leaves headroom for closing the queue.
HTTP_GRACE_SECONDS = 5
RUN_DRAIN_SECONDS = 15.0
WORK_DRAIN_SECONDS = 20.0


def open_backends(settings: Settings) -> tuple[Queue, Store]:
    from processors.queue import RetryPolicy, open_queue
    from processors.store import open_store

    policy = RetryPolicy(settings.max_attempts, settings.retry_base_seconds, settings.retry_max_seconds)
    store = open_store(settings.store_url, endpoint_url=settings.aws_endpoint_url)
    # The store also holds SQS payloads too large for a message: web and worker must share it.
    queue = open_queue(settings.queue_url, policy, endpoint_url=settings.aws_endpoint_url, store=store)
    return queue, store


def _warn_demo_key(settings: Settings) -> None:
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


def _serve(settings: Settings, args: argparse.Namespace, *, with_worker: bool, demo: bool) -> int:
    import uvicorn

    from processors.worker import Worker
    from receiver.app import create_app
    from receiver.demo import PLAYMENT_SOURCE, send_playment_samples, send_samples
    from receiver.protocol import BoundedHttpTools

    queue, store = open_backends(settings)
    worker = Worker(settings, queue, store, drain_seconds=RUN_DRAIN_SECONDS) if with_worker else None
    host = args.host
    port = settings.port if args.port is None else args.port
    background = []
    if demo:
        source = settings.source(DEMO_SOURCE)
        if source is None or source.vendor != "standard":
            print(
                "labelhook: run --demo needs the standard 'demo' source (leave LABELHOOK_SOURCES unset)",
                file=sys.stderr,
            )
            return 2
        local = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        background.append(lambda: send_samples(f"http://{local}:{port}", source))
        sandbox = settings.source(PLAYMENT_SOURCE)
        if sandbox is not None and sandbox.options.get("sandbox") == "1":
            background.append(lambda: send_playment_samples(f"http://{local}:{port}", sandbox))
    app = create_app(settings, queue, store, worker=worker, background=background)
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
        limit_concurrency=settings.limit_concurrency,
        timeout_keep_alive=5,
        http=BoundedHttpTools,  # head-size cap, request deadline, JSON 400/503 (receiver/protocol.py)
    )
    _server_class()(config).run()
    return 0


def _work(settings: Settings) -> int:
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

    asyncio.run(main())
    return 0


def _sources(settings: Settings, as_json: bool) -> int:
    rows = [
        {
            "source": s.name,
            "vendor": s.vendor,
            "verification": s.verification,
            "secrets": f"{len(s.secrets)} configured (redacted)" if s.secrets else "none",
            "api_url": s.api_url or "",
            "api_key": "(redacted)" if s.api_key else "",
        }
        for s in settings.sources.values()
    ]
    print_rows(rows, as_json)
    return 0


def print_rows(rows: Sequence[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print(json.dumps(list(rows), indent=2))
        return
    if not rows:
        print("(none)")
        return
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    print("  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip())
    for row in rows:
        print("  ".join(str(row[c]).ljust(widths[c]) for c in columns).rstrip())


def _dead(settings: Settings, args: argparse.Namespace) -> int:
    async def main() -> int:
        queue, _ = open_backends(settings)
        try:
            if args.dead_command == "list":
                letters = await queue.dead_letters(limit=args.limit)
                rows = [
                    {
                        "id": d.id,
                        "source": d.source,
                        "job": d.job_id,
                        "attempts": d.attempts,
                        "reason": d.last_error or "",
                    }
                    for d in letters
                ]
                print_rows(rows, args.json)
                return 0
            if not args.all and not args.ids:
                print("labelhook: dead replay needs delivery ids or --all", file=sys.stderr)
                return 2
            count = await (_replay_all(queue) if args.all else queue.replay(args.ids))
            print(f"replayed {count} dead letter(s)")
            return 0 if count or args.all else 1
        finally:
            await queue.close()

    return asyncio.run(main())


async def _replay_all(queue: Queue, chunk: int = 50) -> int:
    """`dead replay --all` with a progress bar: list the dead letters, replay them in chunks, then
    sweep once more for any that died meanwhile (or lay beyond what one listing shows)."""
    from receiver.progress import Progress

    ids = [d.id for d in await queue.dead_letters(limit=1_000_000)]
    count = 0
    with Progress(len(ids), "replaying") as bar:
        for start in range(0, len(ids), chunk):
            batch = ids[start : start + chunk]
            count += await queue.replay(batch)
            for delivery_id in batch:
                bar.advance(delivery_id)
    return count + await queue.replay(None)


def _decode(settings: Settings, args: argparse.Namespace) -> int:
    from processors.segmentation import decode_command
    from receiver.progress import Progress

    if len(args.mask) == 1:
        code: int = decode_command(args.mask[0], args.result, args.out, max_pixels=settings.max_pixels)
        return code
    with Progress(len(args.mask), "decoding") as bar:
        code = decode_command(
            args.mask, args.result, args.out, max_pixels=settings.max_pixels, on_frame=bar.advance
        )
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="labelhook", description="Receiver for annotation-vendor callbacks."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="web + worker in one process (local mode)")
    run.add_argument("--demo", action="store_true", help="also send signed sample callbacks to itself")
    serve = sub.add_parser("serve", help="web only (Procfile web)")
    for p in (run, serve):
        p.add_argument("--host", default=None, help="bind address (default: HOST, or 127.0.0.1 for run)")
        p.add_argument("--port", type=int, default=None, help="port (default: $PORT or 8000)")
    sub.add_parser("work", help="worker only (Procfile worker)")
    sources = sub.add_parser("sources", help="configured sources (secrets redacted)")
    sources.add_argument("--json", action="store_true")
    dead = sub.add_parser("dead", help="dead letters")
    dead_sub = dead.add_subparsers(dest="dead_command", required=True)
    dead_list = dead_sub.add_parser("list", help="list dead letters with their reasons")
    dead_list.add_argument("--limit", type=int, default=100)
    dead_list.add_argument("--json", action="store_true")
    replay = dead_sub.add_parser("replay", help="re-queue dead letters")
    replay.add_argument("ids", nargs="*")
    replay.add_argument("--all", action="store_true")
    submit = sub.add_parser("submit", help="create a job at the vendor and record it")
    submit.add_argument("source")
    submit.add_argument("input", help="INPUT.json: the job(s) in the vendor's create-job shape")
    submit.add_argument("--json", action="store_true")
    poll = sub.add_parser("poll", help="poll a source's open jobs once; enqueue the finished ones")
    poll.add_argument("source")
    poll.add_argument("--json", action="store_true")
    jobs = sub.add_parser("jobs", help="known jobs: state, last delivery, output location")
    jobs.add_argument("--source", default=None)
    jobs.add_argument("--json", action="store_true")
    decode = sub.add_parser("decode", help="decode one vendor mask offline")
    decode.add_argument("mask", nargs="+", help="the mask PNG; several are a video's frames 0, 1, …")
    decode.add_argument("--result", required=True, help="the vendor result JSON (legend, instances)")
    decode.add_argument("--out", required=True, help="output directory")
    from receiver import cli_export

    cli_export.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run" and args.demo and not os.environ.get("LABELHOOK_SOURCES"):
            from receiver.demo import load_demo_settings

            settings = load_demo_settings(os.environ)  # adds the Playment sandbox source
        else:
            settings = load_settings()
    except ConfigError as exc:
        print(f"labelhook: configuration error: {exc}", file=sys.stderr)
        return 2
    from processors.logs import configure_logging

    # Long-running processes log to stdout (the PaaS log stream); one-shot commands keep stdout for data.
    configure_logging(stream=sys.stdout if args.command in ("run", "serve", "work") else sys.stderr)
    if args.command in ("run", "serve"):
        _warn_demo_key(settings)
        if args.host is None:
            # run is local mode: not reachable from the network unless asked; serve is for a PaaS.
            args.host = settings.host or ("127.0.0.1" if args.command == "run" else "0.0.0.0")
        return _serve(settings, args, with_worker=args.command == "run", demo=getattr(args, "demo", False))
    if args.command == "work":
        return _work(settings)
    if args.command == "sources":
        return _sources(settings, args.json)
    if args.command == "dead":
        return _dead(settings, args)
    if args.command == "decode":
        return _decode(settings, args)
    if args.command == "export":
        from receiver import cli_export

        return cli_export.export(settings, args)
    if args.command in ("submit", "poll", "jobs"):
        from receiver import cli_jobs

        command: int = getattr(cli_jobs, args.command)(settings, args)
        return command
    return 2
