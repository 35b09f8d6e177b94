"""Fault-injection helpers (loopback only): a vendor-like load generator, a flaky HTTP proxy, process kills.

`LoadGenerator` behaves like a Standard Webhooks vendor: each delivery has its own `webhook-id` and is
re-sent (same id, fresh signature) until it gets a 2xx, so after a run every delivery it made up was
acknowledged at least once. `FlakyProxy` sits in front of an HTTP server (moto's S3) and answers
every Nth request of a method with a 500 without forwarding it. `Restarter` kill -9s and restarts a
`labelhook` subprocess. `bench/soak.py` uses the same pieces.
"""

from __future__ import annotations

import http.client
import json
import random
import signal
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from receiver.demo.sender import signed_request

_S3_ERROR = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code>'
    b"<Message>injected fault</Message></Error>"
)
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "upgrade"}


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client hanging up mid-request (a killed process) is part of the test, not news


def delivery_body(msg_id: str) -> bytes:
    return json.dumps({"type": "job.completed", "data": {"job_id": msg_id, "pad": "x" * 200}}).encode()


@dataclass
class LoadStats:
    sent: int = 0  # HTTP attempts, retries included
    errors: int = 0  # attempts without an answer (connection refused/reset: the process was down)
    non_2xx: dict[int, int] = field(default_factory=dict)
    acked: dict[str, float] = field(default_factory=dict)  # webhook-id -> latency of its first 2xx (s)
    duplicates: int = 0  # 2xx answers saying "already seen" (a re-send of a durable delivery)

    def latency_ms(self, q: float) -> float:
        values = sorted(self.acked.values())
        if not values:
            return float("nan")
        if len(values) == 1:
            return values[0] * 1000
        return statistics.quantiles(values, n=1000, method="inclusive")[round(q * 1000) - 1] * 1000


class LoadGenerator:
    """Sends signed deliveries from ``threads`` threads; each is re-sent until a 2xx (a vendor's retry)."""

    def __init__(
        self,
        url: str,
        secret: str,
        *,
        source: str = "acme",
        prefix: str = "ld",
        threads: int = 4,
        rate: float | None = None,
        limit: int | None = None,
    ) -> None:
        self.endpoint = f"{url}/hooks/{source}"
        self.secret = secret
        self.prefix = prefix
        self.threads = threads
        self.interval = threads / rate if rate else 0.0
        self.limit = limit
        self.stats = LoadStats()
        self._lock = threading.Lock()
        self._next = 0
        self._stop = threading.Event()
        self._workers = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> LoadGenerator:
        for t in self._workers:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self, timeout: float = 60) -> None:
        """Stop making up new deliveries; finish (ack) the ones in hand."""
        self._stop.set()
        for t in self._workers:
            t.join(timeout)

    def wait_acked(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.stats.acked) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {len(self.stats.acked)} of {count} deliveries acked")
            time.sleep(0.05)

    def _take(self) -> str | None:
        with self._lock:
            if self._stop.is_set() or (self.limit is not None and self._next >= self.limit):
                return None
            self._next += 1
            return f"{self.prefix}-{self._next - 1}"

    def _run(self) -> None:
        with httpx.Client(timeout=httpx.Timeout(10, connect=2)) as client:
            while (msg_id := self._take()) is not None:
                started = time.monotonic()
                self._deliver(client, msg_id, started)
                if self.interval:
                    time.sleep(max(0.0, self.interval - (time.monotonic() - started)))

    def _deliver(self, client: httpx.Client, msg_id: str, started: float) -> None:
        body = delivery_body(msg_id)
        for attempt in range(600):  # ~ a minute of retries; the process under test restarts in seconds
            try:
                response = client.post(
                    self.endpoint, content=body, headers=signed_request(self.secret, msg_id, body)
                )
            except httpx.HTTPError:
                with self._lock:
                    self.stats.sent += 1
                    self.stats.errors += 1
                time.sleep(min(0.5, 0.02 * (attempt + 1)))
                continue
            with self._lock:
                self.stats.sent += 1
                if 200 <= response.status_code < 300:
                    self.stats.acked.setdefault(msg_id, time.monotonic() - started)
                    self.stats.duplicates += response.json().get("duplicate") is True
                    return
                self.stats.non_2xx[response.status_code] = self.stats.non_2xx.get(response.status_code, 0) + 1
            time.sleep(0.05)
        raise AssertionError(f"{msg_id} was never acknowledged")


class FlakyProxy:
    """HTTP proxy on 127.0.0.1 to ``upstream``; every ``fail_every``-th ``method`` request gets a 500.

    The failed request is read in full and never forwarded, so the upstream never sees it: a clean
    "the store had a bad moment" fault. Bodies pass through unchanged (Content-Length or chunked).
    """

    def __init__(self, upstream: str, *, fail_every: int = 3, method: str = "PUT") -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.fail_every = fail_every
        self.method = method
        self.forwarded = 0
        self.failed = 0
        self._seen = 0
        self._lock = threading.Lock()
        self._server = _QuietServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FlakyProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _should_fail(self, method: str) -> bool:
        with self._lock:
            if method != self.method or self.fail_every <= 0:
                self.forwarded += 1
                return False
            self._seen += 1
            if self._seen % self.fail_every == 0:
                self.failed += 1
                return True
            self.forwarded += 1
            return False

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _body(self) -> bytes:
                if self.headers.get("transfer-encoding", "").lower() == "chunked":
                    raw = b""
                    while True:
                        line = self.rfile.readline()
                        raw += line
                        size = int(line.split(b";")[0].strip(), 16)
                        chunk = self.rfile.read(size + 2)
                        raw += chunk
                        if size == 0:
                            # trailers end with an empty line
                            while chunk not in (b"\r\n", b""):
                                chunk = self.rfile.readline()
                                raw += chunk
                            return raw
                length = int(self.headers.get("content-length") or 0)
                return self.rfile.read(length) if length else b""

            def _any(self) -> None:
                body = self._body()
                if proxy._should_fail(self.command):
                    self.send_response(500)
                    self.send_header("content-type", "application/xml")
                    self.send_header("content-length", str(len(_S3_ERROR)))
                    self.end_headers()
                    self.wfile.write(_S3_ERROR)
                    return
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=30)
                try:
                    conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                    for name, value in self.headers.items():
                        conn.putheader(name, value)
                    conn.endheaders()
                    if body:
                        conn.send(body)
                    reply = conn.getresponse()
                    data = reply.read()
                finally:
                    conn.close()
                self.send_response(reply.status)
                for name, value in reply.getheaders():
                    if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                        self.send_header(name, value)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _any

        return Handler


class ScriptedServer:
    """A tiny HTTP server on 127.0.0.1 answering each GET with the next status of ``script``, then 200."""

    def __init__(self, script: list[int], body: bytes = b'{"ok": true}') -> None:
        self.script = list(script)
        self.body = body
        self.hits: list[tuple[str, int]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                status = server.script.pop(0) if server.script else 200
                server.hits.append((self.path, status))
                payload = server.body if status == 200 else b'{"error": "try later"}'
                self.send_response(status)
                if status in (429, 503):
                    self.send_header("retry-after", "0")
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class Restarter:
    """Keeps one `labelhook` subprocess running; `kill()` is a kill -9 followed by a restart."""

    def __init__(self, start: Callable[[], subprocess.Popen[bytes]], ready: Callable[[], bool]) -> None:
        self._start = start
        self._ready = ready
        self.kills = 0
        self.process = start()

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not self._ready():
            if self.process.poll() is not None:
                raise AssertionError(f"process exited with {self.process.returncode} while starting")
            if time.monotonic() > deadline:
                raise AssertionError("process did not become ready")
            time.sleep(0.05)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self.kills += 1
        self.process = self._start()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def kill_loop(target: Restarter, kills: int, gap: tuple[float, float], *, ready_first: bool = True) -> None:
    """kill -9 ``target`` ``kills`` times, each a random ``gap`` (seconds) after it was ready again."""
    rng = random.Random()
    for _ in range(kills):
        if ready_first:
            target.wait_ready()
        time.sleep(rng.uniform(*gap))
        target.kill()
    target.wait_ready()


def up(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def output_sets(out: Path, vendor_dir: str = "standard/acme") -> dict[str, list[str]]:
    """job -> sorted file names, for every job folder under ``out/vendor_dir``.

    `LocalStore`'s `.tmp-*` files are left out: they are invisible to every reader (`Store.list`) and
    a kill -9 mid-write leaves one behind; `orphan_temp_files` counts them.
    """
    base = out / vendor_dir
    if not base.exists():
        return {}
    return {
        d.name: sorted(p.name for p in d.iterdir() if not p.name.startswith(".tmp-"))
        for d in base.iterdir()
        if d.is_dir()
    }


def orphan_temp_files(out: Path) -> int:
    return sum(1 for _ in out.rglob(".tmp-*")) if out.exists() else 0


@dataclass
class Tally:
    acked: int
    processed: int
    duplicated: int  # deliveries processed more than once (a re-run after a crash; identical bytes)
    lost: int  # acked without a complete output set
    extra: int  # output sets nobody acked, or with more than callback.json + manifest.json

    def line(self) -> str:
        return (
            f"acked={self.acked} processed={self.processed} duplicated={self.duplicated} "
            f"lost={self.lost} extra={self.extra}"
        )


def tally(
    acked: Iterator[str] | set[str], sets: Mapping[str, list[str]], attempts: Mapping[str, int]
) -> Tally:
    """Compare what was acknowledged with what was written. ``attempts``: job -> times it was claimed."""
    acked = set(acked)
    complete = {job for job, files in sets.items() if files == ["callback.json", "manifest.json"]}
    return Tally(
        acked=len(acked),
        processed=len(complete & acked),
        duplicated=sum(1 for job in complete if attempts.get(job, 1) > 1),
        lost=len(acked - complete),
        extra=len(set(sets) - acked) + len(set(sets) - complete),
    )
