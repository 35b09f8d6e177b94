"""`CvatClient`: the CVAT REST calls labelhook makes, with every failure mapped to Retryable/Permanent.

GETs go through the SSRF-guarded `Fetcher`; the one POST (start a dataset export) goes through a
client from `make_client`, so it passes the same guard. The API key travels as ``Authorization:
Token …`` (or verbatim when it already names a scheme, e.g. ``Basic …``) and only to the API origin:
a download that redirects elsewhere (a signed cloud-storage URL) loses it on the way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import httpx

from processors.errors import Permanent, Retryable
from processors.fetch import HTTPStatusPermanent, HTTPStatusRetryable

if TYPE_CHECKING:
    from processors.fetch import Fetcher, Stream

#: Cap for JSON answers of the API (annotations of a long video job can be large).
MAX_JSON_BYTES = 256 * 1024 * 1024
#: Labels per page asked for, and the most pages followed (a runaway `next` chain is an error).
LABEL_PAGE_SIZE = 500
MAX_LABEL_PAGES = 200


class CvatClient:
    """Blocking client for ``{api_url}/api``; every method raises only `Retryable` / `Permanent`."""

    def __init__(self, fetcher: Fetcher, api_url: str, api_key: str) -> None:
        self._fetcher = fetcher
        self._base = api_url.rstrip("/")
        scheme = api_key.split(" ", 1)[0].lower()
        self._auth = api_key if scheme in ("token", "basic", "bearer") else f"Token {api_key}"

    def url(self, path: str, **query: Any) -> str:
        suffix = f"?{urlencode(query)}" if query else ""
        return f"{self._base}/api/{path}{suffix}"

    def get_json(self, path: str, *, what: str, **query: Any) -> Any:
        """GET ``{api}/api/<path>`` as JSON; the reason names ``what`` was being fetched."""
        try:
            return self._fetcher.get_json(
                self.url(path, **query),
                headers={"Authorization": self._auth},
                max_bytes=MAX_JSON_BYTES,
            )
        except HTTPStatusPermanent as exc:
            raise HTTPStatusPermanent(f"CVAT {what}: {exc.reason}", status=exc.status, url=exc.url) from exc
        except HTTPStatusRetryable as exc:
            raise HTTPStatusRetryable(
                f"CVAT {what}: {exc.reason}", status=exc.status, url=exc.url, retry_after=exc.retry_after
            ) from exc

    def job(self, job_id: str) -> dict[str, Any]:
        return _object(self.get_json(f"jobs/{quote(job_id, safe='')}", what=f"job {job_id}"), "job")

    def annotations(self, job_id: str) -> Any:
        return self.get_json(f"jobs/{quote(job_id, safe='')}/annotations/", what=f"job {job_id} annotations")

    def meta(self, job_id: str) -> dict[str, Any]:
        answer = self.get_json(f"jobs/{quote(job_id, safe='')}/data/meta", what=f"job {job_id} data meta")
        return _object(answer, "data meta")

    def labels(self, job_id: str) -> list[dict[str, Any]]:
        """Every label of the job, following the paginated ``{count, next, results}`` by page number.

        Page numbers rather than ``next``: behind a reverse proxy CVAT often builds ``next`` with an
        internal host name, and a vendor-chosen URL should not steer where the API key goes.
        """
        labels: list[dict[str, Any]] = []
        for page in range(1, MAX_LABEL_PAGES + 1):
            answer = self.get_json(
                "labels", what=f"job {job_id} labels", job_id=job_id, page=page, page_size=LABEL_PAGE_SIZE
            )
            if isinstance(answer, list):  # an unpaginated server
                return [_object(item, "label") for item in answer]
            body = _object(answer, "labels page")
            results = body.get("results")
            if not isinstance(results, list):
                raise Permanent("CVAT labels page has no results list")
            labels.extend(_object(item, "label") for item in results)
            count = body.get("count")
            if not body.get("next") or not results or (isinstance(count, int) and len(labels) >= count):
                return labels
        raise Permanent(f"CVAT labels of job {job_id}: more than {MAX_LABEL_PAGES} pages")

    def start_export(self, job_id: str, export_format: str) -> str:
        """``POST /api/jobs/{id}/dataset/export?format=…`` → the request id to poll."""
        url = self.url(f"jobs/{quote(job_id, safe='')}/dataset/export", format=export_format)
        answer = self._post_json(url, what=f"job {job_id} export")
        rq_id = answer.get("rq_id") if isinstance(answer, dict) else None
        if not isinstance(rq_id, str) or not rq_id:
            raise Permanent(f"CVAT job {job_id} export: the answer has no rq_id")
        return rq_id

    def request_status(self, rq_id: str) -> dict[str, Any]:
        """``GET /api/requests/{rq_id}``: ``status`` queued/started/finished/failed, ``result_url``…"""
        return _object(self.get_json(f"requests/{quote(rq_id, safe='')}", what="export request"), "request")

    def same_origin(self, url: str) -> bool:
        """Whether ``url`` is on the configured API origin (scheme, host and port), the only place
        the API key may go."""
        return _origin(httpx.URL(url)) == _origin(httpx.URL(self._base))

    @contextlib.contextmanager
    def open_download(self, url: str) -> Iterator[Stream]:
        """Stream an export's ``result_url``: with the key only on the API origin.

        CVAT answers a ``result_url`` built from its own idea of its host; behind a proxy, or from a
        hostile server, that may be any origin, and the key must not follow it there. A same-origin
        download that redirects elsewhere (a signed cloud-storage URL) loses the key on the way.
        """
        headers = {"Authorization": self._auth} if self.same_origin(url) else {}
        try:
            with self._fetcher.open_stream(url, headers=headers) as stream:
                yield stream
        except HTTPStatusPermanent as exc:
            raise HTTPStatusPermanent(
                f"CVAT export download: {exc.reason}", status=exc.status, url=exc.url
            ) from exc

    @contextlib.contextmanager
    def open_frame(self, job_id: str, number: int) -> Iterator[Stream]:
        """Stream frame ``number`` of the job as CVAT stored it: ``GET /api/jobs/{id}/data?type=frame
        &number=N&quality=original`` (the uploaded image itself, not the compressed preview)."""
        url = self.url(f"jobs/{quote(job_id, safe='')}/data", type="frame", number=number, quality="original")
        try:
            with self._fetcher.open_stream(url, headers={"Authorization": self._auth}) as stream:
                yield stream
        except HTTPStatusPermanent as exc:
            raise HTTPStatusPermanent(
                f"CVAT frame {number}: {exc.reason}", status=exc.status, url=exc.url
            ) from exc

    def _post_json(self, url: str, *, what: str) -> Any:
        try:
            return self._fetcher.post_json(url, headers={"Authorization": self._auth})
        except HTTPStatusRetryable as exc:
            raise HTTPStatusRetryable(
                f"CVAT {what}: {exc.reason}", status=exc.status, url=exc.url, retry_after=exc.retry_after
            ) from exc
        except HTTPStatusPermanent as exc:
            raise HTTPStatusPermanent(f"CVAT {what}: {exc.reason}", status=exc.status, url=exc.url) from exc
        except Retryable as exc:
            raise Retryable(f"CVAT {what}: {exc.reason}", retry_after=exc.retry_after) from exc
        except Permanent as exc:
            raise Permanent(f"CVAT {what}: {exc.reason}") from exc


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default = {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host.lower(), url.port if url.port is not None else default


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Permanent(f"CVAT {what} is not a JSON object")
    return value
