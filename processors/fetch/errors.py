"""HTTP outcomes as `Retryable` / `Permanent`: status codes, Retry-After, httpx exceptions, safe URLs.

    Retryable ── HTTPStatusRetryable    429, 5xx (``.status``, ``.retry_after``)
    Permanent ── HTTPStatusPermanent    other 4xx, unexpected 1xx/3xx (``.status``)

Every URL in a reason goes through `redact_url`: signed URLs carry credentials in the query string.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable

import httpx

from processors.errors import Permanent, Retryable


class HTTPStatusRetryable(Retryable):
    """The server answered 429 or 5xx; ``retry_after`` comes from its Retry-After header, if any."""

    def __init__(self, reason: str, *, status: int, url: str, retry_after: float | None = None) -> None:
        super().__init__(reason, retry_after=retry_after)
        self.status = status
        self.url = url


class HTTPStatusPermanent(Permanent):
    """The server answered a 4xx (or a status we cannot act on); ``status`` lets callers special-case."""

    def __init__(self, reason: str, *, status: int, url: str) -> None:
        super().__init__(reason)
        self.status = status
        self.url = url


def redact_url(url: httpx.URL | str) -> str:
    """``scheme://host[:port]/path``: no userinfo, query or fragment (signatures and tokens live there)."""
    url = httpx.URL(url) if isinstance(url, str) else url
    host = f"[{url.host}]" if ":" in url.host else url.host
    port = f":{url.port}" if url.port is not None else ""
    return f"{url.scheme}://{host}{port}{url.path}"


def parse_retry_after(value: str | None, *, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a Retry-After value (delta-seconds or HTTP-date); None if absent or garbled."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a naive result means "-0000"
        return None
    return max(0.0, when.timestamp() - now())


def error_for_status(response: httpx.Response, url: httpx.URL, method: str = "GET") -> Retryable | Permanent:
    """The error for a non-2xx, non-redirect ``response`` to a ``method`` request of ``url``."""
    status = response.status_code
    where = redact_url(url)
    phrase = f"{status} {response.reason_phrase}".strip()
    if status == 429 or status >= 500:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        return HTTPStatusRetryable(
            f"{method} {where} answered {phrase}", status=status, url=where, retry_after=retry_after
        )
    return HTTPStatusPermanent(f"{method} {where} answered {phrase}", status=status, url=where)


def translate_httpx_error(exc: httpx.HTTPError, url: httpx.URL, method: str = "GET") -> Retryable | Permanent:
    """Map an httpx exception raised while fetching ``url``: network trouble retries, a bad URL does not."""
    where = redact_url(url)
    kind = type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return Retryable(f"{method} {where} timed out ({kind})")
    if isinstance(exc, httpx.UnsupportedProtocol):
        return Permanent(f"{method} {where}: unsupported URL scheme")
    if isinstance(exc, httpx.TransportError | httpx.DecodingError):
        # DecodingError: a truncated or corrupted compressed body, as likely transient as a reset.
        # httpcore's messages ("[Errno 111] Connection refused", "certificate verify failed") name no URL.
        detail = str(exc).splitlines()[0][:200] if str(exc) else ""
        return Retryable(f"{method} {where} failed: {kind}" + (f": {detail}" if detail else ""))
    return Permanent(f"{method} {where} failed: {kind}")
