"""The bad-input matrix: every hostile or broken input → its HTTP status or its dead-letter reason.

Three tables. HTTP: raw bytes to a live uvicorn (with `BoundedHttpTools`, as `labelhook serve` runs it)
→ status and JSON error code. Fetch: vendor-chosen URLs through the real `Fetcher` with an injected
resolver and a transport that fails the test if anything gets through — never a packet to a private
address. Masks: bombs and broken PNGs through `process_segmentation` → `Permanent` with its reason.
Then secrets: wrong signatures and a failing vendor fetch must not echo a configured secret anywhere.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import io
import json
import socket
import struct
import time
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from processors.config import Settings
from processors.errors import Permanent
from processors.fetch import Fetcher, make_client
from processors.masks.segmentation import process_segmentation
from processors.queue import open_queue
from processors.store import open_store
from receiver.app import create_app
from receiver.protocol import BoundedHttpTools
from tests.faults import ScriptedServer
from tests.support import (
    SECRET,
    LiveServer,
    callback_body,
    cli_env,
    free_port,
    is_up,
    labelhook,
    run_cli,
    serving,
    sign,
    wait_for,
)

# --- HTTP ------------------------------------------------------------------------------------------


def request(
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    *,
    path: str = "/hooks/acme",
    method: str = "POST",
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def exchange(port: int, data: bytes, *, read_timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """Send ``data`` on a fresh connection; return the first response's status, headers and body."""
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as sock:
        # The server may answer early and close: the answer is still in our receive buffer.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        reply = b""
        try:
            while b"\r\n\r\n" not in reply or len(reply) < _expected(reply):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                reply += chunk
        except ConnectionResetError:
            pass
    head, _, rest = reply.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    return int(status_line.split()[1]), headers, rest[: int(headers.get("content-length", len(rest)))]


def _expected(reply: bytes) -> int:
    head, _, _ = reply.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(head) + 4 + int(line.split(b":")[1])
    return 0


def raw_sign(body: bytes, msg_id: str) -> dict[str, str]:
    """Standard Webhooks v1 over raw bytes (the library's signer wants text; a hostile body may not be)."""
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    ts = str(int(time.time()))
    mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": ts,
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
    }


def signed(body: bytes, msg_id: str = "m-matrix", **overrides: str) -> dict[str, str]:
    headers = {"content-type": "application/json", **raw_sign(body, msg_id)}
    for key, value in overrides.items():
        name = key.replace("_", "-")
        if value == "":
            headers.pop(name, None)
        else:
            headers[name] = value
    return headers


BODY = callback_body("matrix")
NOW = int(time.time())
DEEP = b'{"type": "x", "data": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"

BIG = json.dumps({"type": "job.completed", "data": {"job_id": "big", "pad": "x" * 200_000}}).encode()

HTTP_CASES: list[tuple[str, bytes, int, str]] = [
    ("valid", request(BODY, signed(BODY)), 202, ""),
    # Head and a 200 KB body in one read: the head cap must count only head bytes.
    ("valid, 200 KB in one chunk", request(BIG, signed(BIG, "m-big")), 202, ""),
    (
        "wrong signature",
        request(BODY, signed(BODY, webhook_signature=sign(b"x", "m")["webhook-signature"])),
        401,
        "invalid_signature",
    ),
    (
        "signature of another id",
        request(BODY, {**signed(BODY), "webhook-id": "other"}),
        401,
        "invalid_signature",
    ),
    (
        "stale timestamp",
        request(BODY, {"Content-Type": "application/json", **sign(BODY, "m", timestamp=NOW - 3600)}),
        401,
        "stale_timestamp",
    ),
    (
        "future timestamp",
        request(BODY, {"Content-Type": "application/json", **sign(BODY, "m", timestamp=NOW + 3600)}),
        401,
        "stale_timestamp",
    ),
    ("no signature headers", request(BODY, {"Content-Type": "application/json"}), 401, "missing_signature"),
    ("empty signature", request(BODY, signed(BODY, webhook_signature=" ")), 401, "missing_signature"),
    (
        "garbled base64",
        request(BODY, signed(BODY, webhook_signature="v1,!!!not*base64!!!")),
        400,
        "malformed_signature",
    ),
    (
        "unknown version",
        request(BODY, signed(BODY, webhook_signature="v9," + base64.b64encode(b"x" * 32).decode())),
        400,  # no v1 signature at all: malformed, not merely wrong
        "malformed_signature",
    ),
    (
        "non-numeric timestamp",
        request(BODY, signed(BODY, webhook_timestamp="yesterday")),
        400,
        "malformed_headers",
    ),
    ("signed but not JSON", request(b"{not json", signed(b"{not json")), 400, "malformed_body"),
    ("signed but not UTF-8", request(b'{"a": "\xff"}', signed(b'{"a": "\xff"}')), 400, "malformed_body"),
    ("signed, 200k levels deep", request(DEEP, signed(DEEP)), 400, "too_deep"),
    ("empty body", request(b"", signed(b"")), 400, "malformed_body"),
    (
        "wrong content type",
        request(BODY, signed(BODY, content_type="text/plain")),
        415,
        "unsupported_media_type",
    ),
    (
        "form content type",
        request(BODY, signed(BODY, content_type="application/x-www-form-urlencoded")),
        415,
        "unsupported_media_type",
    ),
    (
        "oversize declared",
        request(b"", {"Content-Type": "application/json"}).replace(
            b"Content-Length: 0", b"Content-Length: 99999999"
        ),
        413,
        "payload_too_large",
    ),
    ("oversize sent", request(b"[" + b"1," * 600_000 + b"1]", signed(b"[]")), 413, "payload_too_large"),
    ("unknown source", request(BODY, signed(BODY), path="/hooks/nobody"), 404, "unknown_source"),
    ("path traversal source", request(BODY, signed(BODY), path="/hooks/../healthz"), 404, ""),
    ("GET on a hook", request(method="GET"), 405, "method_not_allowed"),
    ("huge header", request(BODY, {**signed(BODY), "X-Pad": "a" * 100_000}), 431, "headers_too_large"),
    (
        "many headers",
        request(BODY, {**signed(BODY), **{f"X-H{i}": "v" * 50 for i in range(3000)}}),
        431,
        "headers_too_large",
    ),
    (
        "huge URL",
        request(BODY, signed(BODY), path="/hooks/acme?" + "q" * 1_000_000),
        431,
        "headers_too_large",
    ),
    (
        "garbage request line",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http\r\n\r\n",
        400,
        "bad_request",
    ),
    (
        "bad chunked encoding",
        b"POST /hooks/acme HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        400,
        "bad_request",
    ),
]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("matrix")
    settings = _settings(tmp, LABELHOOK_MAX_BODY_BYTES="1048576")
    queue = open_queue(settings.queue_url)
    with LiveServer(
        create_app(settings, queue, open_store(settings.store_url)), http=BoundedHttpTools
    ) as server:
        yield server


def _settings(tmp: Path, **extra: str) -> Settings:
    from processors.config import load_settings

    return load_settings(
        {
            "LABELHOOK_QUEUE": f"sqlite:///{tmp}/queue.db",
            "LABELHOOK_STORE": f"file://{tmp}/out",
            "LABELHOOK_SOURCES": "acme",
            "LABELHOOK_ACME_VENDOR": "standard",
            "LABELHOOK_ACME_SECRET": SECRET,
            **extra,
        }
    )


@pytest.mark.parametrize(("name", "raw", "status", "code"), HTTP_CASES, ids=[c[0] for c in HTTP_CASES])
def test_http_bad_input(live: LiveServer, name: str, raw: bytes, status: int, code: str) -> None:
    got, headers, body = exchange(live.port, raw)
    assert got == status, body[:300]
    assert headers.get("content-type", "").startswith("application/json"), (headers, body[:200])
    payload = json.loads(body)
    if status >= 400:
        assert set(payload) == {"error", "detail"}
        if code:
            assert payload["error"] == code
    assert b"Traceback" not in body
    # The server is still fine afterwards.
    assert httpx.get(live.url + "/healthz", timeout=5).status_code == 200


class _Quick(BoundedHttpTools):
    request_seconds = 0.5


def test_a_request_that_never_finishes_its_head_gets_408(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    app = create_app(settings, open_queue(settings.queue_url), open_store(settings.store_url))
    with LiveServer(app, http=_Quick) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"POST /hooks/acme HTTP/1.1\r\nHost: x\r\n")  # ... and then nothing
            for _ in range(3):
                time.sleep(0.2)
                sock.sendall(
                    b"X-Slow: 1\r\n"
                )  # a slowloris keeps trickling; each byte used to reset the timer
            reply = sock.recv(65536)
        assert reply.startswith(b"HTTP/1.1 408"), reply
        assert json.loads(reply.partition(b"\r\n\r\n")[2])["error"] == "request_timeout"
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            body = BODY
            sock.sendall(request(body, signed(body, "m-slow-body"))[:-10])  # the body never completes
            started = time.monotonic()
            assert sock.recv(65536) == b""  # closed, no answer
            assert time.monotonic() - started < 3
        assert not list((tmp_path / "out").rglob("manifest.json"))


def test_over_the_concurrency_limit_is_a_json_503(tmp_path: Path) -> None:
    # Requests being served count; idle connections do not (tests/hostile/test_idle_connections.py).
    settings = _settings(tmp_path, LABELHOOK_LIMIT_CONCURRENCY="2")
    app = create_app(settings, open_queue(settings.queue_url), open_store(settings.store_url))
    with LiveServer(app, http=BoundedHttpTools) as server:
        # Two requests in the app, each waiting for the rest of its body.
        slow = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(2)]
        try:
            for sock in slow:
                sock.sendall(request(BODY, signed(BODY))[:-10])
            time.sleep(0.3)
            status, headers, body = exchange(server.port, request(BODY, signed(BODY)))
            assert httpx.get(server.url + "/healthz", timeout=5).status_code == 200  # never limited
        finally:
            for s in slow:
                s.close()
        assert status == 503
        assert headers["content-type"] == "application/json" and headers.get("retry-after") == "1"
        assert json.loads(body)["error"] == "overloaded"
        time.sleep(0.2)
        assert exchange(server.port, request(BODY, signed(BODY)))[0] == 202  # below the limit again


def test_serve_uses_the_bounded_protocol_and_default_limits(tmp_path: Path) -> None:
    with serving(tmp_path) as port:
        status, _, body = exchange(port, request(BODY, {**signed(BODY), "X-Pad": "a" * 100_000}))
        assert status == 431 and json.loads(body)["error"] == "headers_too_large"
        status, _, body = exchange(port, b"\x00\x01garbage\r\n\r\n")
        assert status == 400 and json.loads(body)["error"] == "bad_request"
    assert _settings(tmp_path).limit_concurrency == 128


# --- vendor-chosen URLs (SSRF) ----------------------------------------------------------------------


class Tripwire(httpx.BaseTransport):
    """Inner transport: answers only for public test addresses; anything else fails the test."""

    def __init__(self, answers: dict[str, httpx.Response]) -> None:
        self.answers = answers

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        if host not in self.answers:
            raise AssertionError(f"the guard let a request through to {request.url}")
        return self.answers[host]


PUBLIC = "93.184.216.34"
DNS = {
    "vendor.example": [PUBLIC],
    "internal.example": ["10.1.2.3"],
    "rebind.example": [PUBLIC, "127.0.0.1"],
    "meta.example": ["169.254.169.254"],
    "v6.example": ["fd00:ec2::254"],
}
SSRF_CASES: list[tuple[str, str, dict[str, httpx.Response], str]] = [
    ("private literal", "https://10.0.0.5/result", {}, "10.0.0.5 is a private address"),
    ("loopback literal", "https://127.0.0.1/result", {}, "loopback"),
    ("metadata literal", "https://169.254.169.254/latest/meta-data", {}, "cloud metadata"),
    ("mapped loopback", "https://[::ffff:127.0.0.1]/result", {}, "loopback"),
    ("decimal IP", "https://2130706433/result", {}, "not a canonical IP address"),
    ("name -> private", "https://internal.example/r", {}, "resolves to a private address (10.1.2.3)"),
    ("name -> public+loopback", "https://rebind.example/r", {}, "resolves to a loopback address"),
    ("name -> metadata", "https://meta.example/r", {}, "cloud metadata"),
    ("name -> v6 metadata", "https://v6.example/r", {}, "cloud metadata"),
    ("plain http", "http://vendor.example/r", {}, "http is only allowed"),
    ("credentials in URL", "https://user:pw@vendor.example/r", {}, "credentials in the URL"),
    ("file scheme", "file:///etc/passwd", {}, ""),
    (
        "redirect to private",
        "https://vendor.example/r",
        {PUBLIC: httpx.Response(302, headers={"location": "https://10.9.9.9/x"})},
        "10.9.9.9 is a private address",
    ),
    (
        "redirect to a name -> loopback",
        "https://vendor.example/r",
        {PUBLIC: httpx.Response(307, headers={"location": "https://rebind.example/x"})},
        "resolves to a loopback address",
    ),
]


@pytest.mark.parametrize(("name", "url", "answers", "reason"), SSRF_CASES, ids=[c[0] for c in SSRF_CASES])
def test_vendor_urls_that_point_inside_are_permanent(
    name: str, url: str, answers: dict[str, httpx.Response], reason: str
) -> None:
    client = make_client(Settings(), transport=Tripwire(answers), resolver=lambda h, p: DNS[h])
    with Fetcher(client, max_bytes=1 << 20) as fetcher, pytest.raises(Permanent) as err:
        fetcher.get_json(url)
    assert reason in err.value.reason
    assert "pw" not in err.value.reason  # credentials never echoed


# --- masks ------------------------------------------------------------------------------------------


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _forged_png(width: int, height: int) -> bytes:
    """A valid-looking PNG that claims ``width``×``height`` RGBA: a few hundred bytes, a huge decode."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    idat = zlib.compress(b"\0" * 4096, 9)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((height, width, 4), dtype=np.uint8), "RGBA").save(buffer, "PNG")
    return buffer.getvalue()


GOOD = _png(8, 8)
RESULT = {"legend": {"#ff0000": "car"}}
MASK_CASES: list[tuple[str, Any, Sequence[tuple[int, bytes]], int, str]] = [
    ("bomb: 100k x 100k header", RESULT, [(0, _forged_png(100_000, 100_000))], 100_000_000, "over the limit"),
    (
        "bomb: zeros over a small limit",
        RESULT,
        [(0, _png(2000, 2000))],
        1_000_000,
        "over the limit of 1000000",
    ),
    ("truncated mid-IDAT", RESULT, [(0, GOOD[: len(GOOD) // 2])], 10**8, "truncated"),
    ("no IEND", RESULT, [(0, GOOD[:-12])], 10**8, "truncated"),
    ("only the signature", RESULT, [(0, GOOD[:8])], 10**8, "truncated or has no IHDR"),
    ("not a PNG", RESULT, [(0, b"GIF89a" + b"\0" * 100)], 10**8, "not a PNG"),
    ("bad CRC", RESULT, [(0, GOOD[:30] + bytes([GOOD[30] ^ 0xFF]) + GOOD[31:])], 10**8, "bad CRC"),
    ("zero size", RESULT, [(0, _forged_png(0, 10))], 10**8, "zero width or height"),
    ("result not an object", ["legend"], [(0, GOOD)], 10**8, "not a JSON object"),
    ("result without legend", {"instances": []}, [(0, GOOD)], 10**8, "no legend"),
    ("no frames", RESULT, [], 10**8, "no mask frames"),
    ("frame twice", RESULT, [(0, GOOD), (0, GOOD)], 10**8, "appears twice"),
    ("negative frame", RESULT, [(-1, GOOD)], 10**8, "not a non-negative integer"),
]


@pytest.mark.parametrize(
    ("name", "result", "frames", "max_pixels", "reason"), MASK_CASES, ids=[c[0] for c in MASK_CASES]
)
def test_bad_masks_are_permanent_with_a_reason(
    name: str, result: Any, frames: Sequence[tuple[int, bytes]], max_pixels: int, reason: str
) -> None:
    written: list[str] = []
    started = time.monotonic()
    with pytest.raises(Permanent) as err:
        process_segmentation(result, frames, lambda key, data: written.append(key), max_pixels=max_pixels)
    assert reason in err.value.reason, err.value.reason
    assert time.monotonic() - started < 10  # refused from the header, not after decoding a bomb


# --- secrets ----------------------------------------------------------------------------------------

TOKEN = "tok-SECRET-superai-7f3a9c0d"
API_KEY = "sai-APIKEY-5e1b2c3d4f"


def test_no_configured_secret_appears_in_logs_responses_or_schema(tmp_path: Path) -> None:
    port = free_port()
    env = cli_env(
        tmp_path,
        PORT=str(port),
        LABELHOOK_SOURCES="acme,superai",
        LABELHOOK_SUPERAI_SECRET=TOKEN,
        LABELHOOK_SUPERAI_API_KEY=API_KEY,
        LABELHOOK_FETCH_ALLOW_HOSTS="127.0.0.1:9",
        LABELHOOK_MAX_ATTEMPTS="2",
        LABELHOOK_RETRY_BASE_SECONDS="0.05",
        LABELHOOK_DASHBOARD_TOKEN="dash-TOKEN-0a1b2c",
    )
    secrets = [SECRET, SECRET.removeprefix("whsec_"), TOKEN, API_KEY, "dash-TOKEN-0a1b2c"]
    # The vendor API fails: first 500 (retried), then 401 echoing nothing; its reasons go to dead letters.
    with ScriptedServer([500, 401, 500, 401], body=b"{}") as vendor:
        env["LABELHOOK_SUPERAI_API_URL"] = vendor.url
        run = labelhook("run", env=env, cwd=tmp_path)
        answers: list[bytes] = []
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for(lambda: is_up(f"http://127.0.0.1:{port}"), timeout=30, what="labelhook run up")
            for i, (body, headers) in enumerate(
                [
                    (BODY, sign(BODY + b"x", "w1")),
                    (BODY, {**sign(BODY, "w2"), "webhook-signature": "v1," + SECRET}),
                    (BODY, {"webhook-id": TOKEN, "webhook-timestamp": "1", "webhook-signature": API_KEY}),
                ]
            ):
                r = httpx.post(f"{url}/hooks/acme", content=body, headers=headers, timeout=10)
                answers.append(r.content)
                assert r.status_code in (400, 401), (i, r.text)
            for token in ("wrong-token", TOKEN[:-1]):
                r = httpx.post(f"{url}/hooks/superai?token={token}", json={"id": 1, "state": "COMPLETED"})
                answers.append(r.content)
                assert r.status_code == 401
            job = {"id": 4242, "uuid": "u-1", "state": "COMPLETED"}
            accepted = httpx.post(f"{url}/hooks/superai?token={TOKEN}", json=job, timeout=10)
            answers.append(accepted.content)
            assert accepted.status_code == 202, accepted.text
            for path in ("/openapi.json", "/readyz", "/healthz", "/metrics", "/nowhere"):
                answers.append(httpx.get(url + path, timeout=10).content)
            wait_for(lambda: len(vendor.hits) >= 2, timeout=30, what="the worker to try the vendor twice")
            time.sleep(0.5)
        finally:
            run.terminate()
            run.wait(30)
    dead = run_cli("dead", "list", "--json", env=env, cwd=tmp_path)
    sources = run_cli("sources", env=env, cwd=tmp_path)
    logs = "".join(p.read_text(errors="replace") for p in tmp_path.glob("labelhook-*.log"))
    assert "processing failed" in logs and "401" in dead.stdout, (logs[-2000:], dead.stdout)
    haystacks = {
        "logs": logs,
        "responses": b"".join(answers).decode(errors="replace"),
        "dead list": dead.stdout + dead.stderr,
        "sources": sources.stdout + sources.stderr,
        "stored outputs": "".join(
            p.read_text(errors="replace") for p in (tmp_path / "out").rglob("*") if p.is_file()
        )
        if (tmp_path / "out").exists()
        else "",
    }
    for where, text in haystacks.items():
        for secret in secrets:
            assert secret not in text, f"a configured secret appears in {where}"


def test_a_source_without_a_secret_refuses_to_start(tmp_path: Path) -> None:
    port = free_port()
    env = cli_env(tmp_path, PORT=str(port))
    del env["LABELHOOK_ACME_SECRET"]
    for command in ("serve", "run", "work"):
        done = run_cli(command, env=env, cwd=tmp_path)
        assert done.returncode == 2, (command, done.stdout, done.stderr)
        assert "LABELHOOK_ACME_SECRET is required" in done.stderr
        assert not is_up(f"http://127.0.0.1:{port}")
