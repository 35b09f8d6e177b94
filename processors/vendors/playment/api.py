"""`PlaymentAPI`: the few Playment endpoints labelhook calls — job get, attachments, job create.

Reads go through the SSRF-guarded `Fetcher`; attachments (`GET /v1/attachments?url=`) answer a
redirect to a short-lived signed URL on another host, which the fetcher follows *without* the
`x-api-key` header (dropped when the origin changes). The create call is the one POST: it uses a
client from `make_client`, so it passes the same guard. Vendor errors become `Retryable` (429 with
its Retry-After, 5xx, network) or `Permanent` (401/403 key rejected, 404 unknown job, bad JSON).
"""

from __future__ import annotations

import contextlib
import json
import urllib.parse
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import httpx

from processors.errors import Permanent, Retryable
from processors.fetch import Fetcher, HTTPStatusPermanent, Stream, parse_retry_after, redact_url

if TYPE_CHECKING:
    from processors.config import Secret

DEFAULT_API_URL = "https://api.playment.io"
KEY_HEADER = "x-api-key"


class PlaymentAPI:
    """One project-independent client; ``client_factory`` builds the guarded client for POSTs lazily."""

    def __init__(
        self,
        fetcher: Fetcher,
        *,
        api_url: str,
        api_key: Secret,
        client_factory: Callable[[], httpx.Client],
    ) -> None:
        self.fetcher = fetcher
        self.api_url = api_url.rstrip("/")
        self._api_key = api_key
        self._client_factory = client_factory
        self._client: httpx.Client | None = None

    def _headers(self) -> dict[str, str]:
        return {KEY_HEADER: self._api_key.reveal()}

    def job_url(self, project: str, job_id: str) -> str:
        quote = urllib.parse.quote
        return f"{self.api_url}/v1/projects/{quote(project, safe='')}/jobs/{quote(job_id, safe='')}"

    def get_job(self, project: str, job_id: str) -> tuple[dict[str, Any], bytes]:
        """The job's ``data`` object and the raw response body (``{"data": {...}, "success": true}``)."""
        what = f"job {job_id} of project {project}"
        with _explained(what), self._open(self.job_url(project, job_id)) as stream:
            raw = b"".join(stream)
        document = _parse(raw, what)
        data = document.get("data") if isinstance(document, dict) else None
        if not isinstance(data, dict):
            raise Permanent(f"Playment answered {what} without a data object")
        return data, raw

    @contextlib.contextmanager
    def open_attachment(self, url: str) -> Iterator[Stream]:
        """Stream the attachment behind a result/mask ``url`` (via the signed-URL redirect)."""
        endpoint = f"{self.api_url}/v1/attachments?url={urllib.parse.quote(url, safe='')}"
        what = f"attachment {_describe(url)}"
        with _explained(what), self._open(endpoint) as stream:
            yield stream

    def attachment_bytes(self, url: str) -> bytes:
        with self.open_attachment(url) as stream:
            return b"".join(stream)

    def _open(self, url: str) -> contextlib.AbstractContextManager[Stream]:
        return self.fetcher.open_stream(url, headers=self._headers(), credential_headers=(KEY_HEADER,))

    def create_job(self, project: str, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /v1/projects/:project_id/jobs``; the ``data`` object of Playment's answer."""
        url = f"{self.api_url}/v1/projects/{urllib.parse.quote(project, safe='')}/jobs"
        where = redact_url(url)
        if self._client is None:
            self._client = self._client_factory()
        try:
            response = self._client.post(url, json=body, headers=self._headers())
        except httpx.TimeoutException as exc:
            raise Retryable(f"POST {where} timed out ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            # The guard's refusals and connection errors: name the kind, never the query string.
            raise Retryable(f"POST {where} failed: {type(exc).__name__}") from exc
        status = response.status_code
        if status == 429 or status >= 500:
            raise Retryable(
                f"POST {where} answered {status}",
                retry_after=parse_retry_after(response.headers.get("retry-after")),
            )
        if status in (401, 403):
            raise Permanent(f"Playment rejected the API key ({status}) creating a job in project {project}")
        if not 200 <= status < 300:
            raise Permanent(f"POST {where} answered {status}: {_vendor_message(response.content)}")
        document = _parse(response.content, f"the created job in project {project}")
        data = document.get("data") if isinstance(document, dict) else None
        if not isinstance(data, dict) or not isinstance(data.get("job_id"), str | int):
            raise Permanent(f"Playment's answer to POST {where} has no data.job_id")
        return data

    def close(self) -> None:
        """Close the POST client, if one was built (the fetcher is its processor's to close)."""
        client, self._client = self._client, None
        if client is not None:
            client.close()


@contextlib.contextmanager
def _explained(what: str) -> Iterator[None]:
    """Reword the fetcher's 401/403/404 so a dead letter says what was refused, not just a URL."""
    try:
        yield
    except HTTPStatusPermanent as exc:
        if exc.status in (401, 403):
            raise Permanent(f"Playment rejected the API key ({exc.status}) fetching {what}") from exc
        if exc.status == 404:
            raise Permanent(f"Playment does not know {what} (404)") from exc
        raise


def _describe(url: str) -> str:
    """A result URL fit for a reason: no query string (signatures), never an exception."""
    try:
        return redact_url(url)
    except (httpx.InvalidURL, ValueError, TypeError):
        return repr(url.split("?", 1)[0][:200])


def _parse(raw: bytes, what: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        raise Permanent(f"Playment answered {what} with invalid JSON") from None


def _vendor_message(raw: bytes) -> str:
    """The vendor's own error text, shortened; the body is Playment's, never ours, so no secrets."""
    try:
        document = json.loads(raw)
    except ValueError:
        return raw[:200].decode("utf-8", "replace")
    if isinstance(document, dict):
        for key in ("error", "message", "detail", "errors"):
            if document.get(key):
                return str(document[key])[:200]
    return str(document)[:200]
