"""Test helpers: a real uvicorn on 127.0.0.1, Standard Webhooks signing, subprocess CLI runs, polling."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx
import uvicorn
from starlette.types import ASGIApp

from processors.config import DEMO_SECRET
from processors.delivery import Delivery, new_delivery_id
from processors.queue.sqlite import SQLiteQueue
from receiver.demo.sender import signed_request

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
SECRET = "whsec_" + "dGVzdC1zZWNyZXQta2V5LTAxMjM0NTY3ODlhYmNkZWY="  # base64 of a 32-byte test key
OLD_SECRET = "whsec_" + "b2xkLXNlY3JldC1rZXktcm90YXRlZC1vdXQtMDEyMzQ="

__all__ = ["DEMO_SECRET", "OLD_SECRET", "ROOT", "SECRET", "LiveServer", "signed_request"]


class LiveServer:
    """Runs an ASGI app under a real uvicorn, on a socket bound to 127.0.0.1 and an ephemeral port."""

    def __init__(self, app: ASGIApp, **config: Any) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        cfg = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on", **config)
        self.server = uvicorn.Server(cfg)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        wait_for(lambda: self.server.started, timeout=10, what="uvicorn start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()


def wait_for(
    check: Callable[[], T], *, timeout: float = 15.0, interval: float = 0.05, what: str = "condition"
) -> T:
    """Poll ``check`` until it returns something truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def sign(body: bytes, msg_id: str, *, secret: str = SECRET, timestamp: int | None = None) -> dict[str, str]:
    return signed_request(secret, msg_id, body, timestamp)


def callback_body(job: str = "job-1", **extra: Any) -> bytes:
    return json.dumps({"type": "job.completed", "data": {"job_id": job, **extra}}).encode()


def cli_env(tmp: Path, **extra: str) -> dict[str, str]:
    """A clean environment for a `labelhook` subprocess working in ``tmp``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABELHOOK_", "AWS_"))}
    env.update(
        LABELHOOK_QUEUE=f"sqlite:///{tmp}/queue.db",
        LABELHOOK_STORE=f"file://{tmp}/out",
        LABELHOOK_SOURCES="acme",
        LABELHOOK_ACME_VENDOR="standard",
        LABELHOOK_ACME_SECRET=SECRET,
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def labelhook(*args: str, env: Mapping[str, str], cwd: Path, **kwargs: Any) -> subprocess.Popen[bytes]:
    """Start `labelhook ARGS…` as a real subprocess; its output goes to ``cwd/labelhook-<pid>.log``.

    A file, not a pipe: nobody reads a pipe while the test waits, and a full pipe would stall the
    process on its next log line.
    """
    log = open(cwd / f"labelhook-{time.monotonic_ns()}.log", "wb")  # noqa: SIM115 - closed by the child's exit
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "receiver", *args],
            env=dict(env),
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            **kwargs,
        )
    finally:
        log.close()


@contextlib.contextmanager
def serving(tmp: Path, **env: str) -> Iterator[int]:
    """`labelhook serve` as a real subprocess on a free 127.0.0.1 port (``cli_env(tmp, **env)``), up
    and answering `/healthz`; yields the port, and stops the process afterwards."""
    port = free_port()
    proc = labelhook("serve", env=cli_env(tmp, PORT=str(port), HOST="127.0.0.1", **env), cwd=tmp)
    try:
        wait_for(lambda: is_up(f"http://127.0.0.1:{port}"), timeout=30, what="labelhook serve up")
        yield port
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, grace: float = 30.0) -> None:
    """Stop a process a test started: ``sig``, then SIGKILL if it has not exited after ``grace``
    seconds. Always reaps it, so a failing test never leaves a process behind."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def loopback_origins(url: str) -> str:
    """LABELHOOK_FETCH_ALLOW_HOSTS for a fake vendor at ``url``: its port on both loopback names."""
    port = httpx.URL(url).port
    return f"127.0.0.1:{port},localhost:{port}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def index_queue(db: Path) -> None:
    """Index the SQLite queue's intake journal into its table, as every reader of the queue does
    first: acknowledged deliveries may still be only in the journal."""

    async def index() -> None:
        queue = SQLiteQueue(str(db))
        try:
            await queue.index()
        finally:
            await queue.close()

    asyncio.run(index())


def queue_rows(db: Path) -> dict[str, tuple[str, int]]:
    """dedupe_key → (status, attempts), read straight from the SQLite file (read-only), journal indexed."""
    index_queue(db)
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        return {k: (s, a) for k, s, a in conn.execute("SELECT dedupe_key, status, attempts FROM deliveries")}


def is_up(url: str) -> bool:
    """True once a labelhook at ``url`` answers `/healthz`."""
    try:
        return httpx.get(url + "/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def run_cli(*args: str, env: Mapping[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a one-shot `labelhook ARGS…` command to completion, capturing its output as text."""
    return subprocess.run(
        [sys.executable, "-m", "receiver", *args],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def acme_delivery(job: str, body: bytes = b'{"k": 1}') -> Delivery:
    """A Standard Webhooks delivery for source `acme`, keyed by ``job``."""
    return Delivery(
        id=new_delivery_id(),
        source="acme",
        vendor="standard",
        dedupe_key=f"acme:{job}",
        job_id=job,
        project="acme",
        body=body,
        received_at=time.time(),
    )


def enqueue_deliveries(db: Path, job_ids: Sequence[str], body: Callable[[str], bytes]) -> list[Delivery]:
    """Put Standard Webhooks deliveries for source `acme` straight into the SQLite queue at ``db``."""

    async def main() -> list[Delivery]:
        queue = SQLiteQueue(str(db))
        items = [acme_delivery(job, body(job)) for job in job_ids]
        await asyncio.gather(*(queue.enqueue(d) for d in items))
        await queue.close()
        return items

    return asyncio.run(main())
