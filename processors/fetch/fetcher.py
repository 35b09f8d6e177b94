"""`Fetcher`: GETs and vendor-API POSTs through the guarded client: redirects, caps, deadline, errors."""

from __future__ import annotations

import contextlib
import hashlib
import http.cookiejar
import json
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

import httpx

from processors.errors import Permanent, Retryable
from processors.fetch.decoding import ACCEPT_ENCODING, BoundedDecoder
from processors.fetch.errors import (
    HTTPStatusPermanent,
    error_for_status,
    redact_url,
    translate_httpx_error,
)
from processors.fetch.guard import GuardTransport, Resolver
from processors.origins import fetch_allow_for

if TYPE_CHECKING:
    # Only types here: importing config at run time would close config → vendors → fetch → config.
    from processors.config import Settings, SourceConfig

DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=60.0, write=60.0, pool=10.0)
DEFAULT_DEADLINE = 600.0  # seconds for a whole fetch: every redirect hop and the full body
MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Never sent to a hop whose origin differs from the first URL's; callers add their own names per call.
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "x-api-key", "api-key", "cookie"})


def make_client(
    settings: Settings,
    *,
    source: SourceConfig | None = None,
    transport: httpx.BaseTransport | None = None,
    resolver: Resolver | None = None,
    timeout: httpx.Timeout = DEFAULT_TIMEOUT,
) -> httpx.Client:
    """A sync client whose every request passes the SSRF guard; ``transport`` is the guard's inner one.

    No redirects (the `Fetcher` follows them, re-checking each hop), no cookie jar (nothing carries
    over between jobs), and ``trust_env=False``: an ``HTTPS_PROXY`` in the environment would otherwise
    mount a proxy transport beside the guard, and ``.netrc`` would add credentials. ``source`` scopes
    the guard's allow-list to that source (`processors.origins.fetch_allow_for`).
    """
    guard = GuardTransport(transport, allow=fetch_allow_for(settings, source), resolver=resolver)
    no_cookies = http.cookiejar.CookieJar(policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    return httpx.Client(
        transport=guard,
        follow_redirects=False,
        trust_env=False,
        timeout=timeout,
        cookies=no_cookies,
        # Only what `BoundedDecoder` decodes in bounded steps (httpx would also offer br/zstd).
        headers={"User-Agent": "labelhook", "Accept-Encoding": ACCEPT_ENCODING},
    )


@dataclass(frozen=True)
class Download:
    """A finished download: final URL (query string removed), size in bytes, hex sha256, Content-Type."""

    url: str
    size: int
    sha256: str
    content_type: str | None


class Stream:
    """An open 2xx response body; iterate it once for its chunks, capped at ``max_bytes`` and the deadline.

    ``size`` and ``sha256`` cover the bytes yielded so far, so after a full iteration they describe
    the whole body (for a manifest or an S3 checksum) without it ever being held in memory.
    """

    def __init__(
        self,
        response: httpx.Response,
        url: httpx.URL,
        *,
        max_bytes: int,
        deadline: float,
        seconds: float,
        clock: Callable[[], float],
    ) -> None:
        self.url = redact_url(url)
        self.status = response.status_code
        self.headers = response.headers
        self.content_type = response.headers.get("content-type")
        self.size = 0
        self._response = response
        self._source = url
        self._max_bytes = max_bytes
        self._deadline = deadline
        self._seconds = seconds
        self._clock = clock
        self._hash = hashlib.sha256()
        self._chunks: Iterator[bytes] | None = None
        self._buffer = b""

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    @property
    def content_length(self) -> int | None:
        """The declared Content-Length, if any (already checked against the cap; never trusted)."""
        return _declared_length(self._response)

    def __iter__(self) -> Iterator[bytes]:
        # Raw bytes, decoded here in bounded steps: the cap applies to decoded output as it grows.
        if self._response.is_stream_consumed:
            # Only a response built in memory (MockTransport) arrives read, and decoded, already.
            decoder, raws = BoundedDecoder(None, self.url), iter([self._response.content])
        else:
            decoder = BoundedDecoder(self.headers.get("content-encoding"), f"GET {self.url}")
            raws = self._response.iter_raw()
        try:
            for raw in raws:
                for chunk in decoder.feed(raw):
                    self.size += len(chunk)
                    if self.size > self._max_bytes:
                        raise _too_big(self._source, self._max_bytes)
                    if self._clock() > self._deadline:
                        raise _deadline_passed(self._source, self._seconds)
                    self._hash.update(chunk)
                    yield chunk
            decoder.finish()
        except httpx.HTTPError as exc:
            raise translate_httpx_error(exc, self._source) from exc

    def read(self, size: int = -1) -> bytes:
        """File-like read, so a stream can go straight into `JobWriter.write_stream` or boto3.

        Returns at most ``size`` bytes (b"" at the end) and holds at most one chunk beyond them. An
        unbounded read is refused: it would hold the whole body in memory, which streaming exists to avoid.
        """
        if size is None or size < 0:
            raise ValueError("unbounded read of a fetched stream")
        if self._chunks is None:
            self._chunks = iter(self)
        parts, have = [self._buffer], len(self._buffer)
        while have < size:
            chunk = next(self._chunks, b"")
            if not chunk:
                break
            parts.append(chunk)
            have += len(chunk)
        data = b"".join(parts)  # one copy per read, not one per chunk
        self._buffer = data[size:]
        return data[:size]

    def readable(self) -> bool:
        return True


class Fetcher:
    """GETs vendor-chosen URLs: the only way processors should touch the network.

    ``client`` must come from `make_client` (that is where the SSRF guard lives). Redirects are
    followed here, up to ``max_redirects``, each hop through the guard again; once a hop leaves the
    first URL's origin (scheme, host, port) the credential headers are dropped for the rest of the
    chain. Each fetch has a total ``deadline`` (seconds) on top of the client's per-phase timeouts.

    Raises `Retryable` (network errors, timeouts, 429, 5xx; `HTTPStatusRetryable` carries ``status``
    and ``retry_after``) or `Permanent` (guard refusals, 4xx as `HTTPStatusPermanent` with ``status``,
    oversized or invalid bodies, too many redirects). Thread-safe: no state beyond the client.
    """

    def __init__(
        self,
        client: httpx.Client,
        *,
        max_bytes: int,
        max_redirects: int = MAX_REDIRECTS,
        deadline: float = DEFAULT_DEADLINE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._max_bytes = max_bytes
        self._max_redirects = max_redirects
        self._deadline = deadline
        self._clock = clock

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        source: SourceConfig | None = None,
        transport: httpx.BaseTransport | None = None,
        resolver: Resolver | None = None,
    ) -> Fetcher:
        """The production wiring: `make_client(settings, source=…)` and ``LABELHOOK_FETCH_MAX_BYTES``."""
        client = make_client(settings, source=source, transport=transport, resolver=resolver)
        return cls(client, max_bytes=settings.fetch_max_bytes)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get_json(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        max_bytes: int | None = None,
        credential_headers: Collection[str] = (),
    ) -> Any:
        """GET ``url`` and parse its body as JSON (whatever the Content-Type says)."""
        merged = {"Accept": "application/json", **(headers or {})}
        with self.open_stream(
            url, headers=merged, max_bytes=max_bytes, credential_headers=credential_headers
        ) as stream:
            body = b"".join(stream)
            try:
                return json.loads(body)
            except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError, absurd nesting
                raise Permanent(f"GET {stream.url} answered invalid JSON") from None

    def post_json(
        self,
        url: str,
        *,
        json_body: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        max_bytes: int | None = None,
    ) -> Any:
        """POST to ``url`` (a vendor API: create a job, start an export) and parse the JSON answer.

        Same guard, timeouts, byte cap and error mapping as the GETs. Redirects are not followed: a
        POST re-sent to wherever a server points would carry its body and credentials there. An empty
        2xx body gives None.
        """
        cap = self._max_bytes if max_bytes is None else max_bytes
        deadline = self._clock() + self._deadline
        try:
            target = httpx.URL(url)
        except httpx.InvalidURL:
            raise Permanent(f"cannot POST to {url.split('?', 1)[0]!r}: invalid URL") from None
        request = self._client.build_request(
            "POST",
            target,
            json=json_body,
            content=content,
            headers={"Accept": "application/json", **(headers or {})},
            timeout=self._timeout(target, deadline),
        )
        try:
            response = self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise translate_httpx_error(exc, target, "POST") from exc
        try:
            if not 200 <= response.status_code < 300:
                raise error_for_status(response, target, "POST")
            declared = _declared_length(response)
            if declared is not None and declared > cap:
                raise _too_big(target, cap, declared=declared)
            body = b"".join(
                Stream(
                    response,
                    target,
                    max_bytes=cap,
                    deadline=deadline,
                    seconds=self._deadline,
                    clock=self._clock,
                )
            )
        finally:
            response.close()
        if not body.strip():
            return None
        try:
            return json.loads(body)
        except (ValueError, RecursionError):
            raise Permanent(f"POST {redact_url(target)} answered invalid JSON") from None

    def download(
        self,
        url: str,
        sink: IO[bytes],
        *,
        headers: Mapping[str, str] | None = None,
        max_bytes: int | None = None,
        credential_headers: Collection[str] = (),
    ) -> Download:
        """Stream ``url`` into ``sink`` chunk by chunk. On an error part of the body may be in ``sink``."""
        with self.open_stream(
            url, headers=headers, max_bytes=max_bytes, credential_headers=credential_headers
        ) as stream:
            for chunk in stream:
                sink.write(chunk)
            return Download(
                url=stream.url, size=stream.size, sha256=stream.sha256, content_type=stream.content_type
            )

    @contextlib.contextmanager
    def open_stream(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        max_bytes: int | None = None,
        credential_headers: Collection[str] = (),
    ) -> Iterator[Stream]:
        """Open ``url`` (after redirects) and yield its `Stream`; the response is closed on exit.

        Asks for ``Accept-Encoding: identity`` unless ``headers`` says otherwise, so size and sha256
        are those of the bytes on the wire and the cap is not defeated by a compression bomb.
        """
        cap = self._max_bytes if max_bytes is None else max_bytes
        deadline = self._clock() + self._deadline
        merged = httpx.Headers({"Accept-Encoding": "identity"})
        merged.update(headers or {})
        secret = CREDENTIAL_HEADERS | {name.lower() for name in credential_headers}
        response, final = self._follow(url, merged, secret, deadline)
        try:
            declared = _declared_length(response)
            if declared is not None and declared > cap:
                raise _too_big(final, cap, declared=declared)
            yield Stream(
                response, final, max_bytes=cap, deadline=deadline, seconds=self._deadline, clock=self._clock
            )
        finally:
            response.close()

    def _follow(
        self, url: str, headers: httpx.Headers, secret: frozenset[str], deadline: float
    ) -> tuple[httpx.Response, httpx.URL]:
        try:
            current = httpx.URL(url)
        except httpx.InvalidURL:
            raise Permanent(f"cannot fetch {url.split('?', 1)[0]!r}: invalid URL") from None
        origin = _origin(current)
        for _ in range(self._max_redirects + 1):
            request = self._client.build_request(
                "GET", current, headers=headers, timeout=self._timeout(current, deadline)
            )
            try:
                response = self._client.send(request, stream=True)
            except httpx.HTTPError as exc:
                raise translate_httpx_error(exc, current) from exc
            status = response.status_code
            if 200 <= status < 300:
                return response, current
            response.close()
            if status not in REDIRECT_STATUSES:
                raise error_for_status(response, current)
            current = self._next_hop(response, current)
            if _origin(current) != origin:
                headers = httpx.Headers({k: v for k, v in headers.items() if k.lower() not in secret})
        raise Permanent(f"GET {redact_url(url)}: more than {self._max_redirects} redirects")

    @staticmethod
    def _next_hop(response: httpx.Response, current: httpx.URL) -> httpx.URL:
        location = response.headers.get("location")
        if not location:
            raise HTTPStatusPermanent(
                f"GET {redact_url(current)} answered {response.status_code} without a Location",
                status=response.status_code,
                url=redact_url(current),
            )
        try:
            return current.join(location)
        except httpx.InvalidURL:
            raise Permanent(f"GET {redact_url(current)} redirected to an invalid URL") from None

    def _timeout(self, url: httpx.URL, deadline: float) -> httpx.Timeout:
        left = deadline - self._clock()
        if left <= 0:
            raise _deadline_passed(url, self._deadline)
        base = self._client.timeout
        return httpx.Timeout(
            connect=_min(base.connect, left),
            read=_min(base.read, left),
            write=_min(base.write, left),
            pool=_min(base.pool, left),
        )


def _min(configured: float | None, left: float) -> float:
    return left if configured is None else min(configured, left)


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default = {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.raw_host.decode("ascii").lower(), url.port or default


def _declared_length(response: httpx.Response) -> int | None:
    raw = response.headers.get("content-length")
    return int(raw) if raw is not None and raw.strip().isdigit() else None


def _too_big(url: httpx.URL, cap: int, *, declared: int | None = None) -> Permanent:
    size = f"declares {declared} bytes, which" if declared is not None else "body"
    return Permanent(f"GET {redact_url(url)}: {size} exceeds LABELHOOK_FETCH_MAX_BYTES ({cap} bytes)")


def _deadline_passed(url: httpx.URL, seconds: float) -> Retryable:
    return Retryable(f"GET {redact_url(url)}: not done within the fetch deadline of {seconds:g} s")
