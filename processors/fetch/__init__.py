"""Outbound HTTP for vendor processors: the SSRF boundary, with limits and errors mapped to ours.

make_client(settings)      httpx.Client behind `GuardTransport` (guard.py, addresses.py)
Fetcher(client, …)         get_json / download / open_stream, redirects, caps (fetcher.py)
HTTPStatus{Retryable,Permanent}, redact_url                          (errors.py)
"""

from processors.fetch.addresses import address_class, parse_ip_literal
from processors.fetch.errors import HTTPStatusPermanent, HTTPStatusRetryable, parse_retry_after, redact_url
from processors.fetch.fetcher import (
    CREDENTIAL_HEADERS,
    DEFAULT_DEADLINE,
    DEFAULT_TIMEOUT,
    MAX_REDIRECTS,
    Download,
    Fetcher,
    Stream,
    make_client,
)
from processors.fetch.guard import GuardTransport, Resolver, system_resolver

__all__ = [
    "CREDENTIAL_HEADERS",
    "DEFAULT_DEADLINE",
    "DEFAULT_TIMEOUT",
    "MAX_REDIRECTS",
    "Download",
    "Fetcher",
    "GuardTransport",
    "HTTPStatusPermanent",
    "HTTPStatusRetryable",
    "Resolver",
    "Stream",
    "address_class",
    "make_client",
    "parse_ip_literal",
    "parse_retry_after",
    "redact_url",
    "system_resolver",
]
