"""processors.fetch: SSRF guard (no packet to a refused address), redirects, credentials, caps, errors.

Only 127.0.0.1 and ::1 are ever contacted. Every other address in this file is handled by a fake
resolver and a `Tripwire` inner transport that records what the guard let through and fails the test
instead of opening a socket.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from processors.config import Settings
from processors.errors import Permanent, Retryable
from processors.fetch import (
    DEFAULT_TIMEOUT,
    Fetcher,
    GuardTransport,
    HTTPStatusPermanent,
    HTTPStatusRetryable,
    make_client,
    parse_retry_after,
)
from tests.support import LiveServer, free_port

SECRET_HEADERS = ("x-api-key", "authorization", "api-key", "cookie", "x-custom-secret")
CREDENTIALS = {
    "x-api-key": "k1",
    "Authorization": "Bearer t1",
    "API-KEY": "k2",
    "Cookie": "session=c1",
    "X-Custom-Secret": "s1",
    "X-Trace": "trace-1",
}


def payload(size: int) -> bytes:
    return bytes(i % 251 for i in range(size))


# --- the local server ------------------------------------------------------------------------------


def build_app(received: list[tuple[str, dict[str, str]]]) -> Starlette:
    async def record(request: Request) -> None:
        received.append((request.url.path, dict(request.headers)))

    async def blob(request: Request) -> Response:
        await record(request)
        return Response(payload(int(request.path_params["size"])), media_type="application/octet-stream")

    async def chunked(request: Request) -> Response:
        size = int(request.path_params["size"])

        async def body() -> AsyncIterator[bytes]:
            data = payload(size)
            for start in range(0, size, 16 * 1024):
                yield data[start : start + 16 * 1024]

        return StreamingResponse(body(), media_type="application/octet-stream")

    async def json_ok(request: Request) -> Response:
        await record(request)
        return JSONResponse({"ok": True, "host": request.headers.get("host")})

    async def not_json(request: Request) -> Response:
        return Response(b"<html>gateway page</html>", media_type="text/html")

    async def status(request: Request) -> Response:
        headers = (
            {"Retry-After": request.query_params["retry_after"]}
            if "retry_after" in request.query_params
            else {}
        )
        return Response(b"", status_code=int(request.path_params["code"]), headers=headers)

    async def redirect(request: Request) -> Response:
        await record(request)
        code = int(request.query_params.get("code", "302"))
        return RedirectResponse(request.query_params["to"], status_code=code)

    async def hops(request: Request) -> Response:
        n = int(request.path_params["n"])
        return JSONResponse({"hops": "done"}) if n == 0 else RedirectResponse(f"/hops/{n - 1}")

    async def loop(request: Request) -> Response:
        return RedirectResponse("/loop")

    async def post(request: Request) -> Response:
        # A vendor API's create call: echoes the JSON it got, or answers the status in the path.
        await record(request)
        code = int(request.path_params["code"])
        if code == 302:
            return RedirectResponse("/json", status_code=302)
        if code >= 300:
            headers = {"Retry-After": "7"} if code == 429 else {}
            return JSONResponse({"error": code}, status_code=code, headers=headers)
        return JSONResponse({"got": await request.json()}, status_code=code)

    async def no_location(request: Request) -> Response:
        return Response(b"", status_code=302)

    async def secure(request: Request) -> Response:
        # The vendor API: needs its key and token.
        await record(request)
        if request.headers.get("x-api-key") != "k1" or request.headers.get("authorization") != "Bearer t1":
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        return JSONResponse({"secure": True})

    async def public(request: Request) -> Response:
        # Another origin (a signed S3 URL): must never see the vendor's credentials.
        await record(request)
        leaked = sorted(h for h in SECRET_HEADERS if h in request.headers)
        if leaked:
            return JSONResponse({"leaked": leaked}, status_code=400)
        return Response(payload(1000), media_type="image/png")

    async def set_cookie(request: Request) -> Response:
        response = RedirectResponse("/public")
        response.set_cookie("session", "from-server")
        return response

    async def slow(request: Request) -> Response:
        async def body() -> AsyncIterator[bytes]:
            await asyncio.sleep(1.5)
            yield b"late"

        return StreamingResponse(body())

    async def trickle(request: Request) -> Response:
        async def body() -> AsyncIterator[bytes]:
            for _ in range(30):
                yield b"x"
                await asyncio.sleep(0.1)

        return StreamingResponse(body())

    return Starlette(
        routes=[
            Route("/blob/{size:int}", blob),
            Route("/chunked/{size:int}", chunked),
            Route("/json", json_ok),
            Route("/not-json", not_json),
            Route("/status/{code:int}", status),
            Route("/redirect", redirect),
            Route("/hops/{n:int}", hops),
            Route("/loop", loop),
            Route("/no-location", no_location),
            Route("/post/{code:int}", post, methods=["POST"]),
            Route("/secure", secure),
            Route("/public", public),
            Route("/signed/{name}", public),
            Route("/set-cookie", set_cookie),
            Route("/slow", slow),
            Route("/trickle", trickle),
        ]
    )


_LIVE_PORT: list[int] = []


class Server:
    def __init__(self, live: LiveServer, received: list[tuple[str, dict[str, str]]]) -> None:
        self.port = live.port
        self.url = f"http://127.0.0.1:{live.port}"
        self.other_origin = f"http://localhost:{live.port}"
        self.received = received


@pytest.fixture(scope="module")
def live() -> Iterator[Server]:
    received: list[tuple[str, dict[str, str]]] = []
    with LiveServer(build_app(received)) as server:
        _LIVE_PORT[:] = [server.port]
        yield Server(server, received)


@pytest.fixture
def server(live: Server) -> Server:
    live.received.clear()
    return live


# --- test doubles ----------------------------------------------------------------------------------


class Tripwire(httpx.BaseTransport):
    """The guard's inner transport: records every request let through; only loopback reaches a socket."""

    LOOPBACK = ("127.0.0.1", "localhost", "::1")

    def __init__(self, real: httpx.BaseTransport | None = None) -> None:
        self.seen: list[httpx.Request] = []
        self.real = real

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        if self.real is None or request.url.host not in self.LOOPBACK:
            raise AssertionError(f"the guard let a request through to {request.url}")
        return self.real.handle_request(request)

    def close(self) -> None:
        if self.real is not None:
            self.real.close()


class FakeDNS:
    """A resolver with fixed answers that records each lookup; unknown names fail like getaddrinfo."""

    def __init__(self, answers: dict[str, Sequence[str]] | None = None) -> None:
        self.answers = answers or {}
        self.calls: list[str] = []

    def __call__(self, host: str, port: int) -> Sequence[str]:
        self.calls.append(host)
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.answers[host]


def make_fetcher(
    *allow: str,
    transport: httpx.BaseTransport | None = None,
    resolver: FakeDNS | None = None,
    max_bytes: int = 1 << 20,
    timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    deadline: float = 30.0,
) -> Fetcher:
    # ``{port}`` in an entry is the module's live server port (allow-list entries are host:port).
    ports = {"port": _LIVE_PORT[0]} if _LIVE_PORT else {"port": 0}
    settings = Settings(fetch_allow_hosts=tuple(a.format(**ports) for a in allow), fetch_max_bytes=max_bytes)
    client = make_client(settings, transport=transport, resolver=resolver or FakeDNS(), timeout=timeout)
    return Fetcher(client, max_bytes=settings.fetch_max_bytes, deadline=deadline)


LOCAL = ("127.0.0.1:{port}", "localhost:{port}")


class RecordingSink(io.BytesIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[int] = []

    def write(self, data: Any) -> int:
        self.writes.append(len(data))
        return super().write(data)


# --- downloads and caps ----------------------------------------------------------------------------


def test_download_streams_into_the_sink_with_size_and_sha256(server: Server) -> None:
    sink = RecordingSink()
    with make_fetcher(*LOCAL) as fetcher:
        result = fetcher.download(f"{server.url}/blob/300000?X-Amz-Signature=secret", sink)
    body = payload(300_000)
    assert sink.getvalue() == body
    assert result.size == 300_000
    assert result.sha256 == hashlib.sha256(body).hexdigest()
    assert result.content_type == "application/octet-stream"
    assert result.url == f"{server.url}/blob/300000"  # query string (a signature) removed
    assert len(sink.writes) > 1 and max(sink.writes) <= 256 * 1024  # chunks, not one buffer
    assert server.received[-1][1]["accept-encoding"] == "identity"


def test_open_stream_yields_chunks_and_metadata(server: Server) -> None:
    with make_fetcher(*LOCAL) as fetcher, fetcher.open_stream(f"{server.url}/blob/70000") as stream:
        assert (stream.status, stream.content_length) == (200, 70000)
        data = b"".join(stream)
        assert (stream.size, stream.sha256) == (70000, hashlib.sha256(data).hexdigest())
    assert data == payload(70000)


def test_body_exactly_at_the_cap_is_fine(server: Server) -> None:
    with make_fetcher(*LOCAL, max_bytes=4096) as fetcher:
        assert fetcher.download(f"{server.url}/blob/4096", io.BytesIO()).size == 4096


def test_declared_content_length_over_the_cap_fails_before_reading(server: Server) -> None:
    sink = io.BytesIO()
    with make_fetcher(*LOCAL, max_bytes=4096) as fetcher, pytest.raises(Permanent) as err:
        fetcher.download(f"{server.url}/blob/5000", sink)
    assert "declares 5000 bytes" in err.value.reason
    assert "exceeds LABELHOOK_FETCH_MAX_BYTES (4096 bytes)" in err.value.reason
    assert sink.getvalue() == b""


def test_chunked_body_fails_the_moment_it_passes_the_cap(server: Server) -> None:
    sink = io.BytesIO()
    with make_fetcher(*LOCAL, max_bytes=40_000) as fetcher, pytest.raises(Permanent) as err:
        fetcher.download(f"{server.url}/chunked/100000", sink)
    assert "exceeds LABELHOOK_FETCH_MAX_BYTES (40000 bytes)" in err.value.reason
    assert 0 < len(sink.getvalue()) <= 40_000


def test_close_delimited_body_over_the_cap_fails() -> None:
    # No Content-Length, no chunked: the body runs until the server closes (HTTP/1.0 framing).
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
            try:
                for _ in range(64):
                    conn.sendall(b"z" * 16384)
            except OSError:
                pass  # the client hung up at the cap, as it should

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with make_fetcher(f"127.0.0.1:{port}", max_bytes=100_000) as fetcher, pytest.raises(Permanent) as err:
            fetcher.download(f"http://127.0.0.1:{port}/unframed", io.BytesIO())
        assert "exceeds LABELHOOK_FETCH_MAX_BYTES (100000 bytes)" in err.value.reason
    finally:
        thread.join(10)
        listener.close()


def test_a_lying_content_length_is_not_trusted() -> None:
    # h11 frames real responses by Content-Length, so the lie is told by an injected inner transport.
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Length": "10"}, content=iter([b"a" * 30_000] * 4))

    liar = httpx.MockTransport(handler)
    with (
        make_fetcher("liar.test:80", transport=liar, max_bytes=50_000) as fetcher,
        pytest.raises(Permanent, match="exceeds LABELHOOK_FETCH_MAX_BYTES"),
    ):
        fetcher.download("http://liar.test/file", io.BytesIO())


def test_get_json(server: Server) -> None:
    with make_fetcher(*LOCAL) as fetcher:
        assert fetcher.get_json(f"{server.url}/json")["ok"] is True
    assert server.received[-1][1]["accept"] == "application/json"


def test_invalid_json_is_permanent(server: Server) -> None:
    with make_fetcher(*LOCAL) as fetcher, pytest.raises(Permanent, match="answered invalid JSON"):
        fetcher.get_json(f"{server.url}/not-json")


# --- redirects and credentials ---------------------------------------------------------------------


def test_same_origin_redirect_keeps_the_credentials(server: Server) -> None:
    with make_fetcher(*LOCAL) as fetcher:
        assert fetcher.get_json(f"{server.url}/redirect?to=/secure", headers=CREDENTIALS) == {"secure": True}
    assert [path for path, _ in server.received] == ["/redirect", "/secure"]


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_cross_origin_redirect_drops_every_credential(server: Server, code: int) -> None:
    # Playment's /v1/attachments?url= → 302 to a signed S3 URL; S3 rejects a request with both.
    target = f"{server.other_origin}/signed/mask.png?X-Amz-Signature=abc"
    with make_fetcher(*LOCAL) as fetcher:
        result = fetcher.download(
            f"{server.url}/redirect?code={code}&to={target}",
            io.BytesIO(),
            headers=CREDENTIALS,
            credential_headers=["X-Custom-Secret"],
        )
    assert result.size == 1000 and result.url == f"{server.other_origin}/signed/mask.png"
    (_, first), (_, second) = server.received
    assert first["x-api-key"] == "k1" and first["x-custom-secret"] == "s1"
    assert not set(SECRET_HEADERS) & set(second)
    assert second["x-trace"] == "trace-1"  # ordinary headers still travel


def test_credentials_stay_dropped_after_leaving_the_origin(server: Server) -> None:
    back = f"{server.url}/secure"
    via_other = f"{server.other_origin}/redirect?to={back}"
    with make_fetcher(*LOCAL) as fetcher, pytest.raises(HTTPStatusPermanent) as err:
        fetcher.get_json(
            f"{server.url}/redirect?to={httpx.QueryParams({'x': via_other})['x']}", headers=CREDENTIALS
        )
    assert err.value.status == 401


def test_no_cookie_jar_between_requests(server: Server) -> None:
    with make_fetcher(*LOCAL) as fetcher:
        assert fetcher.download(f"{server.url}/set-cookie", io.BytesIO()).size == 1000


def test_five_redirects_are_followed_six_are_not(server: Server) -> None:
    with make_fetcher(*LOCAL) as fetcher:
        assert fetcher.get_json(f"{server.url}/hops/5") == {"hops": "done"}
        with pytest.raises(Permanent, match="more than 5 redirects"):
            fetcher.get_json(f"{server.url}/hops/6")


def test_redirect_loop_is_permanent(server: Server) -> None:
    with make_fetcher(*LOCAL) as fetcher, pytest.raises(Permanent, match="more than 5 redirects"):
        fetcher.get_json(f"{server.url}/loop")


def test_redirect_without_location_is_permanent(server: Server) -> None:
    with make_fetcher(*LOCAL) as fetcher, pytest.raises(HTTPStatusPermanent, match="without a Location"):
        fetcher.get_json(f"{server.url}/no-location")


# --- status codes and transport errors -------------------------------------------------------------


def test_429_is_retryable_with_retry_after(server: Server) -> None:
    with make_fetcher(*LOCAL) as fetcher, pytest.raises(HTTPStatusRetryable) as err:
        fetcher.get_json(f"{server.url}/status/429?retry_after=7")
    assert (err.value.status, err.value.retry_after) == (429, 7.0)


def test_503_is_retryable(server: Server) -> None:
    with make_fetcher(*LOCAL) as fetcher, pytest.raises(HTTPStatusRetryable) as err:
        fetcher.download(f"{server.url}/status/503", io.BytesIO())
    assert err.value.status == 503 and err.value.retry_after is None


@pytest.mark.parametrize("code", [401, 403, 404, 410, 418])
def test_4xx_is_permanent_with_status_and_no_query_string(server: Server, code: int) -> None:
    with make_fetcher(*LOCAL) as fetcher, pytest.raises(HTTPStatusPermanent) as err:
        fetcher.get_json(f"{server.url}/status/{code}?token=s3cret")
    assert err.value.status == code
    assert f"{server.url}/status/{code}" in err.value.reason and "s3cret" not in err.value.reason
    assert not isinstance(err.value, Retryable)


def test_retry_after_as_http_date() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC).timestamp()
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now=lambda: now) == 30.0
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now=lambda: now) == 0.0
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_read_timeout_is_retryable(server: Server) -> None:
    timeout = httpx.Timeout(5.0, read=0.3)
    with make_fetcher(*LOCAL, timeout=timeout) as fetcher, pytest.raises(Retryable, match="timed out"):
        fetcher.download(f"{server.url}/slow", io.BytesIO())


def test_total_deadline_is_retryable(server: Server) -> None:
    with make_fetcher(*LOCAL, deadline=0.5) as fetcher, pytest.raises(Retryable, match=r"deadline of 0\.5 s"):
        fetcher.download(f"{server.url}/trickle", io.BytesIO())


def test_connection_refused_is_retryable() -> None:
    port = free_port()
    with make_fetcher(f"127.0.0.1:{port}") as fetcher, pytest.raises(Retryable, match="ConnectError"):
        fetcher.get_json(f"http://127.0.0.1:{port}/json")


def test_dns_failure_is_retryable() -> None:
    tripwire = Tripwire()
    with make_fetcher(transport=tripwire) as fetcher, pytest.raises(Retryable, match="cannot resolve"):
        fetcher.get_json("https://nxdomain.test/x")
    assert tripwire.seen == []


# --- the guard: refused before any packet ------------------------------------------------------------

PUBLIC = "93.184.216.34"

REFUSED: list[tuple[str, dict[str, Sequence[str]], str]] = [
    ("https://a.test/x", {"a.test": ["10.0.0.5"]}, "a.test resolves to a private address (10.0.0.5)"),
    ("https://a.test/x", {"a.test": ["172.16.0.1"]}, "private address (172.16.0.1)"),
    ("https://a.test/x", {"a.test": ["192.168.1.1"]}, "private address (192.168.1.1)"),
    ("https://a.test/x", {"a.test": ["127.0.0.1"]}, "loopback address (127.0.0.1)"),
    ("https://a.test/x", {"a.test": ["::1"]}, "loopback address (::1)"),
    ("https://a.test/x", {"a.test": ["169.254.169.254"]}, "cloud metadata address"),
    ("https://a.test/x", {"a.test": ["fd00:ec2::254"]}, "cloud metadata address"),
    ("https://a.test/x", {"a.test": ["fe80::1"]}, "link-local address"),
    ("https://a.test/x", {"a.test": ["fc00::1"]}, "private address (fc00::1)"),
    ("https://a.test/x", {"a.test": ["::ffff:10.0.0.1"]}, "IPv4-mapped private address"),
    ("https://a.test/x", {"a.test": ["2002:7f00:1::"]}, "6to4 loopback address"),
    ("https://a.test/x", {"a.test": ["64:ff9b::a9fe:a9fe"]}, "NAT64 cloud metadata address"),
    ("https://a.test/x", {"a.test": ["::10.0.0.1"]}, "IPv4-compatible"),
    ("https://a.test/x", {"a.test": ["0.0.0.0"]}, "unspecified address"),
    ("https://a.test/x", {"a.test": ["::"]}, "unspecified address"),
    ("https://a.test/x", {"a.test": ["100.64.0.1"]}, "shared address space address"),
    ("https://a.test/x", {"a.test": ["224.0.0.1"]}, "multicast address"),
    ("https://a.test/x", {"a.test": [PUBLIC, "10.0.0.5"]}, "private address (10.0.0.5)"),
    ("https://10.0.0.5/x", {}, "10.0.0.5 is a private address"),
    ("https://[::1]/x", {}, "loopback address"),
    ("https://[::ffff:127.0.0.1]/x", {}, "IPv4-mapped loopback"),
    ("https://169.254.169.254/latest/meta-data", {}, "cloud metadata address"),
    ("http://a.test/x", {"a.test": [PUBLIC]}, "http is only allowed for LABELHOOK_FETCH_ALLOW_HOSTS"),
    ("http://2130706433/", {}, "2130706433 is not a canonical IP address"),
    ("https://0x7f.1/", {}, "is not a canonical IP address"),
    ("https://017700000001/", {}, "is not a canonical IP address"),
    ("https://127.1/", {}, "is not a canonical IP address"),
    ("https://user:pw@a.test/x", {"a.test": [PUBLIC]}, "credentials in the URL"),
    ("ftp://a.test/x", {"a.test": [PUBLIC]}, "scheme 'ftp' is not http(s)"),
]


@pytest.mark.parametrize(("url", "answers", "why"), REFUSED, ids=[f"{u} {a}" for u, a, _ in REFUSED])
def test_guard_refuses_without_sending_a_packet(
    url: str, answers: dict[str, Sequence[str]], why: str
) -> None:
    tripwire, dns = Tripwire(), FakeDNS(answers)
    with (
        make_fetcher(transport=tripwire, resolver=dns) as fetcher,
        pytest.raises(Permanent) as err,
    ):
        fetcher.get_json(url)
    assert err.value.reason.startswith("refused to fetch ")
    assert why in err.value.reason
    assert "pw" not in err.value.reason
    assert tripwire.seen == []
    assert len(dns.calls) <= 1


def test_guard_refuses_a_request_without_host() -> None:
    tripwire = Tripwire()
    with pytest.raises(Permanent, match="no host"):
        GuardTransport(tripwire, resolver=FakeDNS()).handle_request(httpx.Request("GET", "https:///x"))
    assert tripwire.seen == []


def test_guard_refusal_message() -> None:
    dns = FakeDNS({"a.test": ["10.0.0.5"]})
    with make_fetcher(transport=Tripwire(), resolver=dns) as fetcher, pytest.raises(Permanent) as err:
        fetcher.get_json("https://a.test/v1/file?sig=abc")
    assert (
        err.value.reason
        == "refused to fetch https://a.test/v1/file: a.test resolves to a private address (10.0.0.5)"
    )


@pytest.mark.parametrize(
    ("target", "answers"),
    [
        ("https://169.254.169.254/latest/meta-data", {}),
        ("https://sneaky.test/latest/meta-data", {"sneaky.test": ["10.1.2.3"]}),
        ("http://[::1]:1/", {}),
    ],
)
def test_redirect_hops_are_checked_again(
    server: Server, target: str, answers: dict[str, Sequence[str]]
) -> None:
    tripwire, dns = Tripwire(httpx.HTTPTransport()), FakeDNS(answers)
    with make_fetcher(*LOCAL, transport=tripwire, resolver=dns) as fetcher, pytest.raises(Permanent) as err:
        fetcher.get_json(f"{server.url}/redirect?to={target}", headers=CREDENTIALS)
    assert err.value.reason.startswith("refused to fetch ")
    assert [r.url.host for r in tripwire.seen] == ["127.0.0.1"]  # the first hop only
    assert dns.calls == list(answers)


def test_allow_list_is_exact_and_allow_listed_names_skip_the_check() -> None:
    # On-prem CVAT: allow-listed by name, reachable over http at a private address, resolved by the OS
    # at connect time (the inner transport), not checked or pinned by the guard.
    seen: list[httpx.Request] = []

    def cvat(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ok": True})

    dns = FakeDNS({name: ["10.0.0.7"] for name in ("cvat.corp.evil.test", "evilcvat.corp", "cvat.corp")})
    with make_fetcher("cvat.corp:80", transport=httpx.MockTransport(cvat), resolver=dns) as fetcher:
        assert fetcher.get_json("http://CVAT.corp/api/jobs/1/annotations/") == {"ok": True}
        assert dns.calls == [] and seen[0].url.host == "cvat.corp"
        for url in ("https://cvat.corp.evil.test/", "https://evilcvat.corp/", "http://cvat.corp.evil.test/"):
            with pytest.raises(Permanent, match="refused to fetch"):
                fetcher.get_json(url)
    assert len(seen) == 1


def test_an_allow_listed_address_admits_names_resolving_to_it_over_https_only() -> None:
    seen: list[httpx.Request] = []

    def cvat(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ok": True})

    dns = FakeDNS({"cvat.corp": ["10.0.0.7"], "twin.corp": ["10.0.0.7", "10.0.0.8"]})
    with make_fetcher(
        "10.0.0.7:443", "10.0.0.7:80", transport=httpx.MockTransport(cvat), resolver=dns
    ) as fetcher:
        assert fetcher.get_json("https://cvat.corp/api") == {"ok": True}
        assert fetcher.get_json("http://10.0.0.7/api") == {"ok": True}
        with pytest.raises(Permanent, match="http is only allowed"):
            fetcher.get_json("http://cvat.corp/api")
        with pytest.raises(Permanent, match=r"private address \(10\.0\.0\.8\)"):
            fetcher.get_json("https://twin.corp/api")
    assert [(r.url.host, r.headers["host"]) for r in seen] == [
        ("10.0.0.7", "cvat.corp"),
        ("10.0.0.7", "10.0.0.7"),
    ]


# --- the guard connects to the address it checked ----------------------------------------------------


def test_the_checked_address_is_the_one_connected_to() -> None:
    seen: list[httpx.Request] = []

    def vendor(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.headers["host"] == "vendor.test":
            return httpx.Response(302, headers={"Location": "https://cdn.test/blob"})
        return httpx.Response(200, json={"host": request.headers["host"]})

    # A rebinding resolver would give a private address on a second lookup; there is none.
    dns = FakeDNS({"vendor.test": [PUBLIC], "cdn.test": ["2606:4700::6810:84e5", PUBLIC]})
    with make_fetcher(transport=httpx.MockTransport(vendor), resolver=dns) as fetcher:
        assert fetcher.get_json("https://vendor.test/job", headers={"x-api-key": "k"}) == {"host": "cdn.test"}
    assert dns.calls == ["vendor.test", "cdn.test"]  # once per hop
    first, second = seen
    assert (first.url.host, first.headers["host"], first.extensions["sni_hostname"]) == (
        PUBLIC,
        "vendor.test",
        "vendor.test",
    )
    assert (second.url.host, second.headers["host"], second.extensions["sni_hostname"]) == (
        "2606:4700::6810:84e5",
        "cdn.test",
        "cdn.test",
    )
    assert first.headers["connection"] == "close"
    assert first.headers["x-api-key"] == "k" and "x-api-key" not in second.headers


def test_next_checked_address_is_tried_when_the_first_refuses() -> None:
    tried: list[str] = []

    def flaky(request: httpx.Request) -> httpx.Response:
        tried.append(request.url.host)
        if len(tried) == 1:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json=[1])

    dns = FakeDNS({"vendor.test": [PUBLIC, "93.184.216.35"]})
    with make_fetcher(transport=httpx.MockTransport(flaky), resolver=dns) as fetcher:
        assert fetcher.get_json("https://vendor.test/") == [1]
    assert tried == [PUBLIC, "93.184.216.35"] and dns.calls == ["vendor.test"]


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A throwaway CA and a certificate for the name ``vendor.test`` only (no IP in it)."""
    pytest.importorskip("cryptography")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    tmp = tmp_path_factory.mktemp("tls")
    now = datetime.now(UTC)
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "labelhook test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vendor.test")]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("vendor.test")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem, cert_pem, key_pem = tmp / "ca.pem", tmp / "cert.pem", tmp / "key.pem"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_pem.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return ca_pem, cert_pem, key_pem


def test_pinned_https_uses_the_name_for_sni_and_the_certificate(tls_files: tuple[Path, Path, Path]) -> None:
    # vendor.test is not allow-listed; only the address 127.0.0.1 is. So the request takes the production
    # path: https required, one lookup, the address checked, the URL pinned to it, TLS verified for the name.
    ca_pem, cert_pem, key_pem = tls_files
    received: list[tuple[str, dict[str, str]]] = []
    with LiveServer(build_app(received), ssl_certfile=str(cert_pem), ssl_keyfile=str(key_pem)) as live:
        verify = ssl.create_default_context(cafile=str(ca_pem))
        dns = FakeDNS({"vendor.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]})
        inner = Tripwire(httpx.HTTPTransport(verify=verify))
        with make_fetcher(f"127.0.0.1:{live.port}", transport=inner, resolver=dns) as fetcher:
            answer = fetcher.get_json(f"https://vendor.test:{live.port}/json")
            assert answer == {"ok": True, "host": f"vendor.test:{live.port}"}
            assert [r.url.host for r in inner.seen] == ["127.0.0.1"]
            assert dns.calls == ["vendor.test"]

            # Same socket address, a name the certificate does not cover: TLS must fail.
            with pytest.raises(Retryable, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
                fetcher.get_json(f"https://other.test:{live.port}/json")
            # And the name is still https-only: the address allow-list does not admit http.
            with pytest.raises(Permanent, match="http is only allowed"):
                fetcher.get_json(f"http://vendor.test:{live.port}/json")


def test_post_json_sends_the_body_and_parses_the_answer(server: Server) -> None:
    with make_fetcher(*LOCAL) as fetcher:
        answer = fetcher.post_json(
            server.url + "/post/201", json_body={"job": 1}, headers={"x-api-key": "k1"}
        )
    assert answer == {"got": {"job": 1}}
    path, headers = server.received[-1]
    assert path == "/post/201" and headers["x-api-key"] == "k1" and headers["accept"] == "application/json"


def test_post_json_maps_statuses_like_gets(server: Server) -> None:
    with make_fetcher(*LOCAL) as fetcher:
        with pytest.raises(HTTPStatusRetryable) as throttled:
            fetcher.post_json(server.url + "/post/429", json_body={})
        assert throttled.value.retry_after == 7 and throttled.value.reason.startswith("POST ")
        with pytest.raises(HTTPStatusPermanent) as missing:
            fetcher.post_json(server.url + "/post/404?sig=secret", json_body={})
        assert missing.value.status == 404 and "secret" not in missing.value.reason


def test_post_json_does_not_follow_redirects(server: Server) -> None:
    with make_fetcher(*LOCAL) as fetcher, pytest.raises(HTTPStatusPermanent) as err:
        fetcher.post_json(server.url + "/post/302", json_body={"job": 1})
    assert err.value.status == 302
    assert [path for path, _ in server.received[-1:]] == ["/post/302"]  # /json was never requested


def test_post_json_goes_through_the_guard() -> None:
    tripwire = Tripwire()
    with (
        make_fetcher(transport=tripwire, resolver=FakeDNS({"vendor.test": ["10.0.0.5"]})) as fetcher,
        pytest.raises(Permanent, match="refused to fetch"),
    ):
        fetcher.post_json("https://vendor.test/jobs", json_body={"job": 1})
    assert tripwire.seen == []
