"""`ScaleClient`: the Scale REST calls labelhook makes (tasks, result files), errors mapped at the edge.

Scale authenticates with HTTP Basic, the API key as user name and an empty password. The key goes
only to the configured API origin: a "secure" result URL (``{api}/v1/task/{id}/response_url/{uuid}``)
gets it, a public result URL (``https://scaleapi-results.s3…/{uuid}``) or any other origin never
does, and the `Fetcher` drops it on a redirect that leaves the origin.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from processors.errors import Permanent
from processors.fetch import HTTPStatusPermanent, redact_url

if TYPE_CHECKING:
    from processors.fetch import Fetcher, Stream

#: Cap for JSON answers (a task); result images have the fetch cap.
MAX_JSON_BYTES = 64 * 1024 * 1024


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the scheme's default port filled in; invalid URLs match nothing."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return ("", url, None)
    return parsed.scheme, parsed.host.lower(), parsed.port or {"http": 80, "https": 443}.get(parsed.scheme)


class ScaleClient:
    """Blocking client for ``{api_url}/v1``; every method raises only `Retryable` / `Permanent`."""

    def __init__(self, fetcher: Fetcher, api_url: str, api_key: str | None) -> None:
        self._fetcher = fetcher
        self._base = api_url.rstrip("/")
        self._origin = origin(api_url)
        self._api_key = api_key

    def _auth(self) -> dict[str, str]:
        if not self._api_key:
            raise Permanent("Scale API key is not configured (LABELHOOK_<SOURCE>_API_KEY, the live key)")
        token = base64.b64encode(f"{self._api_key}:".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def task(self, task_id: str) -> tuple[bytes, Any]:
        """``GET /v1/task/{id}``: the task bytes as served, and parsed."""
        what = f"Scale task {task_id}"
        url = f"{self._base}/v1/task/{quote(task_id, safe='')}"
        try:
            with self._fetcher.open_stream(
                url, headers={**self._auth(), "Accept": "application/json"}, max_bytes=MAX_JSON_BYTES
            ) as stream:
                raw = b"".join(stream)
        except HTTPStatusPermanent as exc:
            raise HTTPStatusPermanent(f"{what}: {exc.reason}", status=exc.status, url=exc.url) from exc
        try:
            return raw, json.loads(raw)
        except ValueError:
            raise Permanent(f"{what}: the API answered malformed JSON ({len(raw)} bytes)") from None

    def is_secure_url(self, url: str) -> bool:
        """A result URL on the API origin: a secure result URL, fetched with the key."""
        return origin(url) == self._origin

    @contextlib.contextmanager
    def open_result(self, url: str) -> Iterator[Stream]:
        """Open a result file: with Basic auth on the API origin only, anonymously anywhere else."""
        headers = self._auth() if self.is_secure_url(url) else {}
        with self._fetcher.open_stream(url, headers=headers) as stream:
            yield stream

    def create_task(self, kind: str, body: bytes) -> Any:
        """``POST /v1/task/{kind}`` with an already encoded JSON body; the created task."""
        url = f"{self._base}/v1/task/{quote(kind, safe='')}"
        headers = {**self._auth(), "Content-Type": "application/json"}
        return self._fetcher.post_json(url, content=body, headers=headers, max_bytes=MAX_JSON_BYTES)

    def describe(self, url: str) -> str:
        """A URL for a reason line: no query string (pre-signed parameters stay out of logs)."""
        return redact_url(url)
