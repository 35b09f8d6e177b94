"""`SuperAIClient`: the few super.AI REST calls labelhook makes, with errors mapped to Retryable/Permanent.

GETs go through the SSRF-guarded `Fetcher`; the one POST (create jobs) goes through a client from
`make_client`, so it passes the same guard. The API key travels in the ``API-KEY`` header and only to
the API origin: signed data URLs are fetched without it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from processors.errors import Permanent
from processors.fetch import HTTPStatusPermanent

if TYPE_CHECKING:
    from processors.fetch import Fetcher

DEFAULT_API_URL = "https://api.super.ai"
API_KEY_HEADER = "API-KEY"
#: Signed data URLs live about ten minutes; ask for exactly that, we fetch at once.
SIGNED_URL_TTL_SECONDS = 600
#: Cap for JSON answers of the API (job, response, signed URL); files have their own cap.
MAX_JSON_BYTES = 64 * 1024 * 1024


class SuperAIClient:
    """Blocking client for ``{api_url}/v1``; every method raises only `Retryable` / `Permanent`."""

    def __init__(self, fetcher: Fetcher, api_url: str, api_key: str | None) -> None:
        self._fetcher = fetcher
        self._base = api_url.rstrip("/")
        self._api_key = api_key

    def _headers(self) -> dict[str, str]:
        if not self._api_key:
            raise Permanent("super.AI API key is not configured (LABELHOOK_<SOURCE>_API_KEY)")
        return {API_KEY_HEADER: self._api_key}

    def get_raw(self, path: str, *, what: str) -> bytes:
        """GET ``{api}/v1/<path>`` and return the body bytes exactly as served."""
        url = f"{self._base}/v1/{path}"
        try:
            with self._fetcher.open_stream(
                url,
                headers={**self._headers(), "Accept": "application/json"},
                max_bytes=MAX_JSON_BYTES,
                credential_headers=(API_KEY_HEADER,),
            ) as stream:
                return b"".join(stream)
        except HTTPStatusPermanent as exc:
            raise HTTPStatusPermanent(f"{what}: {exc.reason}", status=exc.status, url=exc.url) from exc

    def get_json(self, path: str, *, what: str) -> tuple[bytes, Any]:
        """GET and parse; malformed JSON is `Permanent` (the vendor will serve the same bytes again)."""
        raw = self.get_raw(path, what=what)
        try:
            return raw, json.loads(raw)
        except ValueError:
            raise Permanent(f"{what}: the API answered malformed JSON ({len(raw)} bytes)") from None

    def job(self, job_id: str) -> tuple[bytes, Any]:
        return self.get_json(f"jobs/{quote(job_id, safe='')}", what=f"super.AI job {job_id}")

    def batch(self, app_id: str, batch_id: str) -> tuple[bytes, Any]:
        """``GET /v1/apps/{app}/batches/{batch}``: a submitted batch and its jobs."""
        path = f"apps/{quote(app_id, safe='')}/batches/{quote(batch_id, safe='')}"
        return self.get_json(path, what=f"super.AI batch {batch_id}")

    def job_response(self, job_id: str) -> tuple[bytes, Any]:
        return self.get_json(
            f"jobs/{quote(job_id, safe='')}/response", what=f"super.AI job {job_id} response"
        )

    def signed_url(self, data_path: str) -> str:
        """Resolve a ``data://…`` path to a short-lived signed URL (``GET /v1/data/url``)."""
        query = f"path={quote(data_path, safe='')}&secondsTtl={SIGNED_URL_TTL_SECONDS}"
        _, answer = self.get_json(f"data/url?{query}", what=f"super.AI data {data_path}")
        url = None
        if isinstance(answer, dict):
            url = answer.get("signedUrl") or answer.get("signed_url") or answer.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise Permanent(f"super.AI data {data_path}: the API answered no signedUrl")
        return url

    def create_jobs(self, app_id: str, body: bytes) -> Any:
        """``POST /v1/apps/{app_id}/jobs`` with an already encoded (and size-checked) JSON body."""
        url = f"{self._base}/v1/apps/{quote(app_id, safe='')}/jobs"
        headers = {**self._headers(), "Content-Type": "application/json"}
        return self._fetcher.post_json(url, content=body, headers=headers, max_bytes=MAX_JSON_BYTES)
