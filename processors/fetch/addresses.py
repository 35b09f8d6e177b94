"""Which IP addresses a vendor-chosen URL may reach: public unicast only, embedded IPv4 forms unwrapped."""

from __future__ import annotations

import ipaddress
import re

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Checked first, so the reason names the most specific class (metadata before link-local / private).
_V4_CLASSES: tuple[tuple[ipaddress.IPv4Network, str], ...] = tuple(
    (ipaddress.IPv4Network(net), name)
    for net, name in (
        ("169.254.169.254/32", "cloud metadata"),
        ("192.0.0.0/24", "IETF protocol assignment"),  # incl. 192.0.0.8 (dummy), DS-Lite, NAT64 discovery
        ("192.0.2.0/24", "documentation"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("198.18.0.0/15", "benchmarking"),
        ("0.0.0.0/32", "unspecified"),
        ("0.0.0.0/8", "reserved"),
        ("127.0.0.0/8", "loopback"),
        ("10.0.0.0/8", "private"),
        ("172.16.0.0/12", "private"),
        ("192.168.0.0/16", "private"),
        ("100.64.0.0/10", "shared address space"),
        ("169.254.0.0/16", "link-local"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
    )
)
_V6_CLASSES: tuple[tuple[ipaddress.IPv6Network, str], ...] = tuple(
    (ipaddress.IPv6Network(net), name)
    for net, name in (
        ("fd00:ec2::254/128", "cloud metadata"),
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("fc00::/7", "private"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),
        ("ff00::/8", "multicast"),
        ("64:ff9b:1::/48", "local-use NAT64"),
        ("2001::/32", "Teredo"),
        ("2001::/23", "IETF protocol assignment"),
        ("100::/64", "discard-only"),
        ("2001:db8::/32", "documentation"),
        ("3fff::/20", "documentation"),
        ("5f00::/16", "segment routing"),
    )
)
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_IPV4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")  # RFC 2765 (SIIT); `ipv4_mapped` misses it


def address_class(ip: IPAddress) -> str | None:
    """The reason ``ip`` must not be fetched from ("loopback", "IPv4-mapped private", …), or None if public.

    The IANA special-purpose registries are spelled out above (``is_global`` differs between Python
    patch releases: 3.11's calls ``192.0.0.8`` global), and ``is_global`` is still the last word. Python
    calls ``::10.0.0.1``, ``::ffff:0:7f00:1``, ``2002:a00:1::`` and ``64:ff9b::a00:1`` global, so every
    IPv6 form that carries an IPv4 address (mapped, translated, 6to4, NAT64) is unwrapped and the
    IPv4 address judged instead.
    """
    if isinstance(ip, ipaddress.IPv4Address):
        for net4, name in _V4_CLASSES:
            if ip in net4:
                return name
        return None if ip.is_global else "non-public"
    ip = ip if ip.scope_id is None else ipaddress.IPv6Address(ip.packed)
    for net6, name in _V6_CLASSES:
        if ip in net6:
            return name
    if ip in _IPV4_COMPATIBLE:  # never handed out today; refused whatever it wraps
        return "IPv4-compatible (deprecated)"
    embedded = _embedded_ipv4(ip)
    if embedded is not None:
        label, inner = embedded
        inner_class = address_class(inner)
        return None if inner_class is None else f"{label} {inner_class}"
    return None if ip.is_global else "non-public"


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address] | None:
    if ip.ipv4_mapped is not None:
        return "IPv4-mapped", ip.ipv4_mapped
    if ip in _IPV4_TRANSLATED:
        return "IPv4-translated", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return "6to4", ip.sixtofour
    if ip in _NAT64:
        return "NAT64", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$", re.IGNORECASE)
_DOTTED_QUAD = re.compile(
    r"^(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}$"
)


class OddAddressSpelling(ValueError):
    """A host that inet_aton would read as an IPv4 address but is not a canonical dotted quad."""


def parse_ip_literal(host: str) -> IPAddress | None:
    """The address an URL host names literally, None for a DNS name; refuse odd IPv4 spellings.

    ``2130706433``, ``0x7f.1``, ``017700000001`` and ``127.1`` all mean 127.0.0.1 to ``getaddrinfo``.
    As in the WHATWG URL standard, a host whose last label is numeric is an IPv4 address; only the
    canonical dotted quad is accepted, everything else raises `OddAddressSpelling`.
    """
    name = host[:-1] if host.endswith(".") else host
    if ":" in name:
        try:
            return ipaddress.IPv6Address(name.replace("%25", "%"))
        except ValueError:
            raise OddAddressSpelling(host) from None
    if not _NUMERIC_LABEL.match(name.rsplit(".", 1)[-1]):
        return None
    if not _DOTTED_QUAD.match(name):
        raise OddAddressSpelling(host)
    return ipaddress.IPv4Address(name)
