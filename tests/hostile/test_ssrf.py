"""#8 and #9: embedded and special-purpose addresses are refused; allow-list entries admit one port."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from processors.config import ConfigError, Settings, load_settings
from processors.errors import Permanent
from processors.fetch import Fetcher, make_client
from processors.fetch.addresses import address_class
from processors.origins import fetch_allow_for
from tests.support import SECRET, LiveServer


@pytest.mark.parametrize(
    "address",
    [
        "::ffff:0:7f00:1",  # IPv4-translated 127.0.0.1
        "::ffff:0:a9fe:a9fe",  # IPv4-translated 169.254.169.254 (cloud metadata)
        "::ffff:0:a00:1",  # IPv4-translated 10.0.0.1
        "192.0.0.8",  # IPv4 dummy address (RFC 7600); Python 3.11 calls it global
        "192.0.0.170",
        "192.0.2.1",
        "198.18.0.1",
        "::ffff:127.0.0.1",
        "::127.0.0.1",
        "2002:7f00:1::",
        "64:ff9b::a9fe:a9fe",
        "64:ff9b:1::1",
        "2001:db8::1",
        "100::1",
        "fe80::1%eth0",
    ],
)
def test_non_public_addresses_in_any_spelling_are_refused(address: str) -> None:
    assert address_class(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "::ffff:0:808:808", "2606:4700:4700::1111", "64:ff9b::808:808"]
)
def test_public_addresses_pass(address: str) -> None:
    assert address_class(ipaddress.ip_address(address)) is None


def test_the_guard_refuses_a_translated_loopback_literal() -> None:
    with (
        Fetcher(make_client(Settings()), max_bytes=1024) as fetcher,
        pytest.raises(Permanent, match="IPv4-translated"),
    ):
        fetcher.get_json("https://[::ffff:0:7f00:1]/")


@pytest.fixture
def two_services() -> Iterator[tuple[LiveServer, LiveServer]]:
    async def secret(request: Request) -> Response:
        return JSONResponse({"internal": True})

    internal_app = Starlette(routes=[Route("/secret", secret)])
    with LiveServer(internal_app) as internal:

        async def hop(request: Request) -> Response:
            return RedirectResponse(f"http://127.0.0.1:{internal.port}/secret")

        with LiveServer(Starlette(routes=[Route("/result", hop)])) as vendor:
            yield vendor, internal


def test_an_allow_listed_port_does_not_open_the_host_s_other_ports(
    two_services: tuple[LiveServer, LiveServer],
) -> None:
    vendor, internal = two_services
    settings = Settings(fetch_allow_hosts=(f"127.0.0.1:{vendor.port}",))
    refused = re.escape(f"127.0.0.1:{internal.port}")
    with (
        Fetcher(make_client(settings), max_bytes=1 << 20) as fetcher,
        pytest.raises(Permanent, match=refused),
    ):
        fetcher.get_json(f"{vendor.url}/result")  # the redirect to another local port is refused
    assert httpx.get(f"{internal.url}/secret").status_code == 200  # (it is there)


def test_bare_hosts_are_a_configuration_error() -> None:
    base = {"LABELHOOK_SOURCES": "acme", "LABELHOOK_ACME_VENDOR": "standard", "LABELHOOK_ACME_SECRET": SECRET}
    with pytest.raises(
        ConfigError, match=re.escape("LABELHOOK_FETCH_ALLOW_HOSTS: '127.0.0.1' is not host:port")
    ):
        load_settings({**base, "LABELHOOK_FETCH_ALLOW_HOSTS": "127.0.0.1"})
    with pytest.raises(ConfigError, match="LABELHOOK_ACME_FETCH_ALLOW"):
        load_settings({**base, "LABELHOOK_ACME_FETCH_ALLOW": "::1"})
    settings = load_settings({**base, "LABELHOOK_FETCH_ALLOW_HOSTS": "cvat.corp:8080,[::1]:9000"})
    assert settings.fetch_allow_hosts == ("cvat.corp:8080", "[::1]:9000")


def test_allow_lists_are_scoped_per_source() -> None:
    settings = load_settings(
        {
            "LABELHOOK_SOURCES": "a,b",
            "LABELHOOK_A_VENDOR": "standard",
            "LABELHOOK_A_SECRET": SECRET,
            "LABELHOOK_A_FETCH_ALLOW": "127.0.0.1:8001",
            "LABELHOOK_B_VENDOR": "standard",
            "LABELHOOK_B_SECRET": SECRET,
            "LABELHOOK_B_API_URL": "http://10.1.2.3:8080/api",
            "LABELHOOK_FETCH_ALLOW_HOSTS": "shared.corp:443",
        }
    )
    assert fetch_allow_for(settings, settings.sources["a"]) == ("shared.corp:443", "127.0.0.1:8001")
    assert fetch_allow_for(settings, settings.sources["b"]) == ("shared.corp:443", "10.1.2.3:8080")
    assert fetch_allow_for(settings, None) == ("shared.corp:443",)
