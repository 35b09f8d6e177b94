"""`LABELHOOK_<SOURCE>_MAX_BODY_BYTES`: one source's callback body cap, over real HTTP.

Label Studio puts the whole annotation in its webhook (a 6-megapixel brush region is ~4 MB of JSON)
and never retries a 413, so its source raises its own cap; every other source keeps the global one.
"""

from __future__ import annotations

import json
import random
import socket
from typing import Any

import httpx
import pytest

from processors.config import ConfigError
from processors.queue import open_queue
from processors.store import open_store
from receiver.app import create_app
from tests.support import LiveServer, sign
from tests.test_labelstudio import TOKEN, magicwand_annotation, webhook

SIX_MB = 6_000_000


def settings_for(make_settings: Any, **env: str) -> Any:
    base = {
        "LABELHOOK_SOURCES": "acme,ls",
        "LABELHOOK_LS_VENDOR": "labelstudio",
        "LABELHOOK_LS_SECRET": TOKEN,
        "LABELHOOK_LS_API_KEY": "0" * 40,
        "LABELHOOK_LS_API_URL": "http://127.0.0.1:9",
        "LABELHOOK_LS_MAX_BODY_BYTES": str(8 * 1024 * 1024),
    }
    return make_settings(**{**base, **env})


def brush_webhook(size: int) -> bytes:
    """A Label Studio annotation webhook carrying a brush region whose RLE makes it ``size`` bytes."""
    annotation = magicwand_annotation()
    region = {
        "id": "big", "type": "brushlabels", "from_name": "tag", "to_name": "image",
        "original_width": 3000, "original_height": 2000, "image_rotation": 0,
        "value": {"format": "rle", "rle": [], "brushlabels": ["Car"]},
    }  # fmt: skip
    annotation["result"] = [*annotation["result"], region]
    base = len(webhook(annotation, None, 3))
    rng = random.Random(6)
    region["value"]["rle"] = [rng.randrange(256) for _ in range((size - base) // 5)]
    body = webhook(annotation, None, 3)
    return body + b" " * (size - len(body))  # JSON allows trailing whitespace: exactly ``size`` bytes


def raw_post(port: int, path: str, head: str, body_chunks: list[bytes]) -> tuple[int, dict[str, Any]]:
    """Send a request over a raw socket, stopping when the server answers or hangs up; its reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{head}\r\n".encode()
        )
        try:
            for chunk in body_chunks:
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused mid-upload: the reply is already on its way
        reply = b""
        while b"\r\n\r\n" not in reply or len(reply.split(b"\r\n\r\n", 1)[1]) < _length(reply):
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            reply += data
    head_part, _, content = reply.partition(b"\r\n\r\n")
    return int(head_part.split()[1]), json.loads(content)


def _length(reply: bytes) -> int:
    for line in reply.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 1 << 30


def chunked(body: bytes, size: int = 256 * 1024) -> list[bytes]:
    parts = [
        b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size]) for i in range(0, len(body), size)
    ]
    return [*parts, b"0\r\n\r\n"]


@pytest.fixture
def receiver(make_settings: Any) -> Any:
    settings = settings_for(make_settings)
    queue, store = open_queue(settings.queue_url), open_store(settings.store_url)
    with LiveServer(create_app(settings, queue, store)) as live:
        yield live


def test_a_source_with_a_raised_cap_takes_a_6_mb_brush_annotation(receiver: LiveServer) -> None:
    body = brush_webhook(SIX_MB)
    assert len(body) == SIX_MB
    response = httpx.post(
        f"{receiver.url}/hooks/ls?token={TOKEN}",
        content=body,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    assert response.json()["delivery_id"]
    # Streamed (chunked, no Content-Length) it is counted against the same cap as it arrives.
    status, _ = raw_post(
        receiver.port, f"/hooks/ls?token={TOKEN}", "Transfer-Encoding: chunked\r\n", chunked(body)
    )
    assert status in (200, 202)


def test_other_sources_keep_the_global_cap_and_the_raised_one_still_bounds(receiver: LiveServer) -> None:
    body = brush_webhook(SIX_MB)
    limit = 4 * 1024 * 1024 + 256 * 1024
    declared = f"Content-Length: {len(body)}\r\n{_signed_head(body)}"
    status, answer = raw_post(receiver.port, "/hooks/acme", declared, [body])
    assert (status, answer) == (
        413,
        {"error": "payload_too_large", "detail": f"request body exceeds {limit} bytes"},
    )
    # No Content-Length: refused while streaming, once the global cap is passed.
    status, answer = raw_post(receiver.port, "/hooks/acme", "Transfer-Encoding: chunked\r\n", chunked(body))
    assert status == 413 and answer["error"] == "payload_too_large"
    # The raised cap is a cap too: 9 MB to the Label Studio source is refused, declared or streamed.
    big = brush_webhook(9_000_000)
    cap = 8 * 1024 * 1024
    for head, chunks in (
        (f"Content-Length: {len(big)}\r\n", [big]),
        ("Transfer-Encoding: chunked\r\n", chunked(big)),
    ):
        status, answer = raw_post(receiver.port, f"/hooks/ls?token={TOKEN}", head, chunks)
        assert (status, answer["detail"]) == (413, f"request body exceeds {cap} bytes")
    assert httpx.get(receiver.url + "/healthz").status_code == 200


def _signed_head(body: bytes) -> str:
    return "".join(f"{k}: {v}\r\n" for k, v in sign(body, "m-cap").items() if k.lower() != "content-type")


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("lots", "must be a whole number of bytes, got 'lots'"),
        ("0", "must be between 1024 and 268435456 bytes, got 0"),
        ("-5", "must be between 1024 and 268435456 bytes, got -5"),
        ("268435457", "must be between 1024 and 268435456 bytes, got 268435457"),
    ],
)
def test_the_option_is_validated_and_names_its_variable(make_settings: Any, raw: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_for(make_settings, LABELHOOK_LS_MAX_BODY_BYTES=raw)
    assert str(caught.value) == f"LABELHOOK_LS_MAX_BODY_BYTES: {problem}"


def test_unset_it_is_the_global_cap(make_settings: Any) -> None:
    settings = settings_for(make_settings, LABELHOOK_LS_MAX_BODY_BYTES="", LABELHOOK_MAX_BODY_BYTES="65536")
    assert settings.source("ls").max_body_bytes is None and settings.max_body_bytes == 65536
    assert settings_for(make_settings).source("ls").max_body_bytes == 8 * 1024 * 1024
