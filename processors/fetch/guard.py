"""The SSRF guard: a transport that resolves, vets and pins each request's address before a socket opens."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence

import httpx

from processors.errors import Permanent, Retryable
from processors.fetch.addresses import IPAddress, OddAddressSpelling, address_class, parse_ip_literal
from processors.fetch.errors import redact_url
from processors.origins import split_origin

Resolver = Callable[[str, int], Sequence[str]]
"""``(host, port) -> IP address strings``; injected in tests, `system_resolver` in production."""


def system_resolver(host: str, port: int) -> Sequence[str]:
    """Every address ``getaddrinfo`` gives for ``host``, in its order, without duplicates."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class GuardTransport(httpx.BaseTransport):
    """Wraps the transport that opens sockets and lets through only requests to vetted addresses.

    An origin in ``allow`` (``host:port`` entries, exact name or IP literal and port: see
    `processors.origins.fetch_allow_for`) passes unchanged, over http or https, to whatever address it
    has: tests, on-prem CVAT. Only that port: other ports of the same host are judged like any URL.
    Every other request must be https and have no userinfo; its host is resolved once with
    ``resolver``, refused with `Permanent` if any address is not public (`address_class`) unless that
    address with the URL's port is itself allow-listed, and
    then sent to the checked address: the URL's host becomes the IP, the Host header and the TLS
    server name (``sni_hostname``, also used for certificate verification) stay the original name.
    So a DNS answer that changes between check and connect (rebinding) cannot redirect the socket.

    Pinned requests carry ``Connection: close``: the connection pool is keyed by IP, and a TLS
    connection verified for one name must never be reused for another name on the same address.
    """

    def __init__(
        self,
        inner: httpx.BaseTransport | None = None,
        *,
        allow: Iterable[str] = (),
        resolver: Resolver | None = None,
    ) -> None:
        self._inner = inner if inner is not None else httpx.HTTPTransport()
        self._resolver: Resolver = resolver or system_resolver
        origins = [split_origin(entry) for entry in allow if entry.strip()]
        self._allow_ips = {(ip, port) for ip, port in ((_ip_or_none(h), p) for h, p in origins) if ip}
        self._allow_names = {(h, p) for h, p in origins if _ip_or_none(h) is None}

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        host = url.raw_host.decode("ascii").lower()
        if url.userinfo:
            raise _refuse(url, "credentials in the URL are not allowed")
        if url.scheme not in ("http", "https"):
            raise _refuse(url, f"scheme {url.scheme!r} is not http(s)")
        if not host.strip("."):
            raise _refuse(url, "no host")
        try:
            literal = parse_ip_literal(host)
        except OddAddressSpelling:
            raise _refuse(url, f"{host} is not a canonical IP address") from None
        port = url.port or (443 if url.scheme == "https" else 80)
        if (host.rstrip("."), port) in self._allow_names or (
            literal is not None and (literal, port) in self._allow_ips
        ):
            return self._inner.handle_request(request)
        if url.scheme != "https":
            raise _refuse(url, f"http is only allowed for LABELHOOK_FETCH_ALLOW_HOSTS, not {host}:{port}")
        addresses = [literal] if literal is not None else self._resolve(url, host)
        for ip in addresses:
            problem = address_class(ip)
            if problem is not None and (ip, port) not in self._allow_ips:
                verdict = (
                    f"is a {problem} address"
                    if literal is not None
                    else f"resolves to a {problem} address ({ip})"
                )
                raise _refuse(url, f"{host} {verdict}")
        return self._send_pinned(request, host, addresses)

    def _resolve(self, url: httpx.URL, host: str) -> list[IPAddress]:
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            answers = self._resolver(host, port)
        except (OSError, UnicodeError) as exc:  # socket.gaierror is an OSError; DNS trouble is transient
            raise Retryable(f"GET {redact_url(url)}: cannot resolve {host} ({exc})") from exc
        addresses = [ip for ip in map(_ip_or_none, answers) if ip is not None]
        if not addresses or len(addresses) != len(answers):
            raise Retryable(f"GET {redact_url(url)}: {host} resolved to no usable address {list(answers)}")
        return addresses

    def _send_pinned(self, request: httpx.Request, host: str, addresses: list[IPAddress]) -> httpx.Response:
        for ip in addresses[:-1]:
            try:
                return self._inner.handle_request(_pin(request, host, ip))
            except httpx.ConnectError:
                continue  # as getaddrinfo-driven connects do: try the next checked address, nothing else
        return self._inner.handle_request(_pin(request, host, addresses[-1]))

    def close(self) -> None:
        self._inner.close()


def _pin(request: httpx.Request, host: str, ip: IPAddress) -> httpx.Request:
    headers = request.headers.copy()  # keeps Host: the original name
    headers["Connection"] = "close"
    return httpx.Request(
        request.method,
        request.url.copy_with(host=str(ip)),
        headers=headers,
        stream=request.stream,
        extensions={**request.extensions, "sni_hostname": host},
    )


def _ip_or_none(value: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def _refuse(url: httpx.URL, why: str) -> Permanent:
    return Permanent(f"refused to fetch {redact_url(url)}: {why}")
