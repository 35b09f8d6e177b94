"""#5: a compressed vendor response can never expand in memory past the byte cap."""

from __future__ import annotations

import io
import tracemalloc
import zlib
from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from processors.config import Settings
from processors.errors import Permanent
from processors.fetch import Fetcher, make_client
from tests.hostile.inputs import gzip_bomb
from tests.support import LiveServer

CAP = 8 * 1024 * 1024
BOMBS: dict[str, bytes] = {}  # built once per module, by the fixture


async def bomb(request: Request) -> Response:
    kind = request.path_params["kind"]
    if kind == "gzip-gzip":
        return Response(BOMBS["two"], headers={"content-encoding": "gzip, gzip"})
    if kind == "gzip":
        return Response(BOMBS["one"], headers={"content-encoding": "gzip"})
    if kind == "br":
        return Response(b"\x00" * 10, headers={"content-encoding": "br"})
    if kind == "deflate":
        return Response(zlib.compress(b'{"ok": true}'), headers={"content-encoding": "deflate"})
    small = b'{"ok": true}'
    return Response(zlib.compress(small)[2:-4], headers={"content-encoding": "deflate"})  # raw deflate


@pytest.fixture(scope="module")
def vendor() -> Iterator[LiveServer]:
    BOMBS["one"] = gzip_bomb(64 * 1024 * 1024)  # 64 MiB of zeros in ~65 KB: 8 × the cap
    BOMBS["two"] = gzip_bomb(64 * 1024 * 1024, layers=2)  # the same in a few hundred bytes
    with LiveServer(Starlette(routes=[Route("/{kind}", bomb)])) as live:
        yield live


def _fetcher(live: LiveServer) -> Fetcher:
    settings = Settings(fetch_allow_hosts=(f"127.0.0.1:{live.port}",), fetch_max_bytes=CAP)
    return Fetcher(make_client(settings), max_bytes=CAP)


def _peak_during(fn: object) -> int:
    tracemalloc.start()
    try:
        assert callable(fn)
        fn()
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak


def test_stacked_encodings_are_refused_before_decoding(vendor: LiveServer) -> None:
    with _fetcher(vendor) as fetcher, pytest.raises(Permanent, match="stacked Content-Encoding"):
        fetcher.download(f"{vendor.url}/gzip-gzip", io.BytesIO())


def test_a_gzip_bomb_stops_at_the_cap_with_bounded_memory(vendor: LiveServer) -> None:
    def fetch() -> None:
        with _fetcher(vendor) as fetcher, pytest.raises(Permanent, match="exceeds LABELHOOK_FETCH_MAX_BYTES"):
            fetcher.download(f"{vendor.url}/gzip", io.BytesIO())

    # Python allocations while fetching (the sink is a BytesIO, so it holds up to the 8 MiB cap).
    assert _peak_during(fetch) < CAP + 8 * 1024 * 1024


def test_unrequested_encodings_are_refused_and_deflate_is_decoded(vendor: LiveServer) -> None:
    with _fetcher(vendor) as fetcher:
        with pytest.raises(Permanent, match="'br' is not supported"):
            fetcher.get_json(f"{vendor.url}/br")
        assert fetcher.get_json(f"{vendor.url}/deflate") == {"ok": True}
        assert fetcher.get_json(f"{vendor.url}/raw-deflate") == {"ok": True}
