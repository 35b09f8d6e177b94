"""The receiver over real HTTP: uvicorn on 127.0.0.1, signed callbacks in, files out."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from processors.config import Settings
from processors.queue import open_queue
from processors.store import Store, open_store
from processors.store.s3 import S3Store
from processors.worker import Worker
from receiver.app import create_app
from tests.support import OLD_SECRET, LiveServer, callback_body, sign, wait_for


def start(settings: Settings, store: Store | None = None, *, worker: bool = True) -> LiveServer:
    queue = open_queue(settings.queue_url)
    store = store or open_store(settings.store_url)
    w = Worker(settings, queue, store, drain_seconds=5) if worker else None
    return LiveServer(create_app(settings, queue, store, worker=w))


@pytest.fixture
def server(make_settings: Any) -> Iterator[LiveServer]:
    with start(make_settings()) as live:
        yield live


def post(url: str, body: bytes, headers: dict[str, str], path: str = "/hooks/acme") -> httpx.Response:
    return httpx.post(url + path, content=body, headers=headers, timeout=10)


def test_signed_callback_is_queued_processed_and_stored_with_manifest(
    server: LiveServer, tmp_path: Path
) -> None:
    body = callback_body("j-1")
    response = post(server.url, body, sign(body, "msg_e2e"))
    assert response.status_code == 202
    assert response.json()["duplicate"] is False and len(response.json()["delivery_id"]) == 32
    job = tmp_path / "out" / "standard" / "acme" / "msg_e2e"
    manifest = json.loads(
        wait_for(lambda: (job / "manifest.json").exists() and (job / "manifest.json").read_bytes())
    )
    assert (job / "callback.json").read_bytes() == body
    [entry] = manifest["files"]
    assert entry["path"] == "callback.json" and entry["size"] == len(body)
    import hashlib

    assert entry["sha256"] == hashlib.sha256(body).hexdigest()
    assert (manifest["vendor"], manifest["job"], manifest["source"]) == ("standard", "msg_e2e", "acme")


def test_signed_callback_lands_in_s3_via_moto(make_settings: Any, s3_client: Any, bucket: str) -> None:
    settings = make_settings(LABELHOOK_STORE=f"s3://{bucket}/labels")
    with start(settings, S3Store(bucket, "labels", client=s3_client)) as live:
        body = callback_body("j-s3")
        assert post(live.url, body, sign(body, "msg_s3")).status_code == 202

        def manifest() -> bytes | None:
            try:
                data: bytes = s3_client.get_object(
                    Bucket=bucket, Key="labels/standard/acme/msg_s3/manifest.json"
                )["Body"].read()
                return data
            except s3_client.exceptions.NoSuchKey:
                return None

        parsed = json.loads(wait_for(manifest, what="manifest in S3"))
    stored = s3_client.get_object(Bucket=bucket, Key="labels/standard/acme/msg_s3/callback.json")[
        "Body"
    ].read()
    assert stored == body
    assert parsed["files"][0]["size"] == len(body)


def test_same_webhook_id_five_times_concurrently_gives_one_202_and_four_duplicates(
    server: LiveServer, tmp_path: Path
) -> None:
    body = callback_body("dup")
    headers = sign(body, "msg_dup")

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            return await asyncio.gather(
                *(client.post("/hooks/acme", content=body, headers=headers) for _ in range(5))
            )

    responses = asyncio.run(burst())
    assert sorted(r.status_code for r in responses) == [200, 200, 200, 200, 202]
    accepted = next(r for r in responses if r.status_code == 202).json()["delivery_id"]
    for r in responses:
        if r.status_code == 200:
            assert r.json() == {"delivery_id": accepted, "duplicate": True}
    job = tmp_path / "out" / "standard" / "acme"
    wait_for(lambda: (job / "msg_dup" / "manifest.json").exists())
    assert [p.name for p in job.iterdir()] == ["msg_dup"]
    assert sorted(p.name for p in (job / "msg_dup").iterdir()) == ["callback.json", "manifest.json"]


def _assert_error(response: httpx.Response, status: int, code: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    payload = response.json()
    assert set(payload) == {"error", "detail"}
    if code:
        assert payload["error"] == code
    assert "Traceback" not in response.text


def _bad_cases() -> list[tuple[str, Any, int, str]]:
    body = callback_body("bad")
    now = int(time.time())
    good = sign(body, "m-bad")

    def with_header(name: str, value: str) -> dict[str, str]:
        return {**good, name: value}

    def without(name: str) -> dict[str, str]:
        return {k: v for k, v in good.items() if k != name}

    return [
        ("wrong signature", (body, sign(body + b" ", "m-bad")), 401, "invalid_signature"),
        ("rotated-out key", (body, sign(body, "m-bad", secret=OLD_SECRET)), 401, "invalid_signature"),
        ("10 minutes old", (body, sign(body, "m-bad", timestamp=now - 600)), 401, "stale_timestamp"),
        ("missing id", (body, without("webhook-id")), 401, "missing_signature"),
        ("missing signature", (body, without("webhook-signature")), 401, "missing_signature"),
        ("missing timestamp", (body, without("webhook-timestamp")), 401, "missing_signature"),
        (
            "garbage signature",
            (body, with_header("webhook-signature", "garbage,, v1,@@@")),
            400,
            "malformed_signature",
        ),
        ("garbage timestamp", (body, with_header("webhook-timestamp", "soon")), 400, "malformed_headers"),
        ("signed non-JSON", (b"<xml/>", sign(b"<xml/>", "m-x")), 400, "malformed_body"),
        (
            "wrong content type",
            (body, with_header("content-type", "text/plain")),
            415,
            "unsupported_media_type",
        ),
    ]


# Cases are signed when the test runs, not at collection: a full suite reaches them minutes later, past
# the ±5 min timestamp window.
@pytest.mark.parametrize("name", [case[0] for case in _bad_cases()])
def test_bad_input_gets_its_status_and_a_json_error(server: LiveServer, name: str, tmp_path: Path) -> None:
    _, (body, headers), status, code = next(case for case in _bad_cases() if case[0] == name)
    _assert_error(post(server.url, body, headers), status, code)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("manifest.json"))


def test_unknown_source_is_404(server: LiveServer) -> None:
    body = callback_body()
    _assert_error(post(server.url, body, sign(body, "m"), path="/hooks/nobody"), 404, "unknown_source")


def test_get_on_a_hook_is_405_json(server: LiveServer) -> None:
    _assert_error(httpx.get(server.url + "/hooks/acme"), 405, "method_not_allowed")


def test_unknown_route_is_404_json(server: LiveServer) -> None:
    _assert_error(httpx.get(server.url + "/nowhere"), 404, "not_found")


def test_declared_oversized_body_is_refused_before_it_is_sent(make_settings: Any) -> None:
    settings = make_settings(LABELHOOK_MAX_BODY_BYTES="4096")
    with start(settings) as live, socket.create_connection(("127.0.0.1", live.port), timeout=5) as sock:
        # Headers only: the server must answer without waiting for the 10 MB it was promised.
        sock.sendall(
            b"POST /hooks/acme HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 10000000\r\n\r\n"
        )
        reply = sock.recv(65536).decode()
    assert reply.startswith("HTTP/1.1 413")
    assert '"error": "payload_too_large"' in reply or '"error":"payload_too_large"' in reply


def test_chunked_body_over_the_limit_is_cut_off_while_streaming(make_settings: Any) -> None:
    settings = make_settings(LABELHOOK_MAX_BODY_BYTES="4096")
    sent = 0

    def chunks() -> Iterator[bytes]:
        nonlocal sent
        for _ in range(64):  # 64 × 64 KiB = 4 MiB offered, far past the 4 KiB cap
            sent += 65536
            yield b"x" * 65536

    with start(settings) as live:
        try:
            response = httpx.post(
                live.url + "/hooks/acme",
                content=chunks(),
                headers={"content-type": "application/json"},
                timeout=10,
            )
        except httpx.HTTPError:
            response = None  # the server may close mid-upload; then check it stayed healthy below
        if response is not None:
            _assert_error(response, 413, "payload_too_large")
        assert httpx.get(live.url + "/healthz").status_code == 200


def test_lying_content_length_reads_only_what_was_declared(make_settings: Any) -> None:
    settings = make_settings(LABELHOOK_MAX_BODY_BYTES="4096")
    with start(settings) as live:
        with socket.create_connection(("127.0.0.1", live.port), timeout=5) as sock:
            # Declares 20 bytes, then sends 1 MB. The request is the first 20 bytes (unsigned); the surplus
            # is not part of it: the HTTP layer reads it as a next, invalid request and closes the
            # connection with a 400. Nothing past the declared length reaches the app; nothing is 5xx.
            sock.sendall(
                b"POST /hooks/acme HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 20\r\n\r\n" + b"{" * 1_000_000
            )
            reply = b""
            try:
                while chunk := sock.recv(65536):
                    reply += chunk
            except ConnectionResetError:
                pass  # the server closed with our surplus unread: the point of the test
        statuses = [
            int(line.split()[1])
            for line in reply.decode(errors="replace").split("\r\n")
            if line.startswith("HTTP/1.1 ")
        ]
        assert statuses and all(400 <= s < 500 for s in statuses), statuses
        assert httpx.get(live.url + "/healthz").status_code == 200
    assert not list(Path(settings.store_url[len("file://") :]).rglob("manifest.json"))


def test_body_just_over_the_limit_without_signature_is_413(make_settings: Any) -> None:
    settings = make_settings(LABELHOOK_MAX_BODY_BYTES="4096")
    with start(settings) as live:
        body = b"[" + b"1," * 2100 + b"1]"
        _assert_error(post(live.url, body, sign(body, "m-big")), 413, "payload_too_large")
        small = callback_body()
        assert post(live.url, small, sign(small, "m-small")).status_code == 202


def test_health_readiness_and_schema(server: LiveServer) -> None:
    assert httpx.get(server.url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(server.url + "/readyz")
    assert ready.status_code == 200
    assert ready.json()["queue"] == "ok" and ready.json()["store"] == "ok"
    schema = httpx.get(server.url + "/openapi.json").json()
    assert schema["openapi"].startswith("3.")
    assert {"/hooks/{source}", "/healthz", "/readyz"} <= set(schema["paths"])


def test_readyz_is_503_when_the_store_cannot_be_written(make_settings: Any, tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the store folder should be")
    settings = make_settings(LABELHOOK_STORE=f"file://{blocker}/out")
    with start(settings, worker=False) as live:
        response = httpx.get(live.url + "/readyz")
    assert response.status_code == 503
    assert response.json()["error"] == "not_ready"


def test_many_concurrent_distinct_callbacks_are_all_acked_and_processed(
    server: LiveServer, tmp_path: Path
) -> None:
    def send(i: int) -> int:
        body = callback_body(f"j{i}")
        return post(server.url, body, sign(body, f"msg-{i}")).status_code

    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(send, range(100)))
    assert statuses == [202] * 100
    out = tmp_path / "out" / "standard" / "acme"
    wait_for(lambda: len(list(out.glob("*/manifest.json"))) == 100, timeout=30)
