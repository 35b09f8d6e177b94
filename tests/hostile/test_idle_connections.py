"""#4: idle connections cannot lock anyone out; /healthz always answers."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import httpx

from processors.queue.sqlite import SQLiteQueue
from processors.store import open_store
from receiver.app import create_app
from receiver.protocol import BoundedHttpTools
from tests.support import LiveServer, callback_body, sign


class _ShortIdle(BoundedHttpTools):
    idle_seconds = 0.5


class _FewConnections(BoundedHttpTools):
    max_connections = 20


def _app(make_settings: Any, tmp: Path, **env: str) -> Any:
    settings = make_settings(**env)
    return create_app(settings, SQLiteQueue(str(tmp / "queue.db")), open_store(settings.store_url))


def _post(url: str, job: str) -> httpx.Response:
    body = callback_body(job)
    return httpx.post(
        f"{url}/hooks/acme",
        content=body,
        headers={**sign(body, f"m-{job}"), "content-type": "application/json"},
    )


def test_130_idle_connections_do_not_turn_requests_into_503(make_settings: Any, tmp_path: Path) -> None:
    with LiveServer(_app(make_settings, tmp_path), http=BoundedHttpTools) as live:
        idle = [socket.create_connection(("127.0.0.1", live.port)) for _ in range(130)]
        try:
            time.sleep(0.3)
            started = time.perf_counter()
            assert httpx.get(f"{live.url}/healthz", timeout=5).status_code == 200
            assert time.perf_counter() - started < 1.0
            assert _post(live.url, "busy").status_code == 202  # under the default limit of 128 requests
        finally:
            for sock in idle:
                sock.close()


def test_an_idle_connection_is_closed_after_the_idle_deadline(make_settings: Any, tmp_path: Path) -> None:
    with (
        LiveServer(_app(make_settings, tmp_path), http=_ShortIdle) as live,
        socket.create_connection(("127.0.0.1", live.port), timeout=10) as sock,
    ):
        started = time.monotonic()
        assert sock.recv(1024) == b""  # closed by the server, without an answer
        assert time.monotonic() - started < 5


def test_past_the_connection_cap_the_oldest_idle_connections_make_room(
    make_settings: Any, tmp_path: Path
) -> None:
    with LiveServer(_app(make_settings, tmp_path), http=_FewConnections) as live:
        idle = [socket.create_connection(("127.0.0.1", live.port), timeout=10) for _ in range(40)]
        try:
            time.sleep(0.3)
            answer = httpx.get(f"{live.url}/healthz", timeout=5)
            assert answer.status_code == 200
            closed = 0
            for sock in idle[:20]:  # the oldest were closed to make room
                sock.settimeout(2)
                try:
                    closed += sock.recv(1) == b""
                except OSError:
                    closed += 1
            assert closed >= 19
        finally:
            for sock in idle:
                sock.close()


def test_a_request_limit_counts_requests_not_connections(make_settings: Any, tmp_path: Path) -> None:
    app = _app(make_settings, tmp_path, LABELHOOK_LIMIT_CONCURRENCY="2")
    with LiveServer(app, http=BoundedHttpTools) as live:
        idle = [socket.create_connection(("127.0.0.1", live.port)) for _ in range(10)]
        try:
            time.sleep(0.2)
            assert _post(live.url, "one").status_code == 202
        finally:
            for sock in idle:
                sock.close()
        assert json.loads(httpx.get(f"{live.url}/healthz").text) == {"status": "ok"}


def test_kept_alive_connections_also_make_room(make_settings: Any, tmp_path: Path) -> None:
    with LiveServer(_app(make_settings, tmp_path), http=_FewConnections) as live:
        kept: list[socket.socket] = []
        try:
            for _ in range(30):  # each asks once, then holds its keep-alive connection open
                sock = socket.create_connection(("127.0.0.1", live.port), timeout=10)
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                assert sock.recv(65536).startswith(b"HTTP/1.1 200")
                kept.append(sock)
            assert httpx.get(f"{live.url}/healthz", timeout=5).status_code == 200
            open_now = 0
            for sock in kept:
                sock.settimeout(0.5)
                try:
                    open_now += sock.recv(1) != b""
                except TimeoutError:
                    open_now += 1  # still open: nothing to read
                except OSError:
                    pass
            assert open_now <= 20
        finally:
            for sock in kept:
                sock.close()
