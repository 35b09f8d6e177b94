"""TechForge Innovate media jobs (seed 001): create jobs, poll them, stream their result files.

TechForge has no webhooks. `labelhook submit` validates and creates jobs (`POST` create-job, API key),
the poller asks jobs-get for each open job, and a finished job becomes a delivery whose body is the
job record as fetched. Processing writes that record as `result.json` and streams every result file
(video, audio, image, PDF) into `media/` without holding it in memory.
"""

from __future__ import annotations

import json
import mimetypes
import posixpath
import re
import urllib.parse
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any, cast

import httpx

from processors.errors import Permanent, Retryable
from processors.fetch import HTTPStatusPermanent, make_client, parse_retry_after, redact_url
from processors.vendors.base import PollResult, Processor, Submitted
from processors.vendors.techforge import api
from processors.vendors.techforge.inputs import validate_jobs
from processors.vendors.techforge.options import TechForgeOptions

if TYPE_CHECKING:
    from processors.config import Settings, SourceConfig
    from processors.delivery import Delivery
    from processors.fetch import Fetcher
    from processors.jobs import JobRecord
    from processors.store import JobWriter

RECORD_MAX_BYTES = 16 * 1024 * 1024  # a job record is JSON; anything bigger is not one
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class TechForgeProcessor(Processor):
    """Submit, poll and process TechForge jobs. ``client`` (guarded, from `make_client`) sends the POSTs."""

    def __init__(
        self,
        source: SourceConfig,
        settings: Settings,
        *,
        fetcher: Fetcher | None = None,
        client: httpx.Client | None = None,
    ) -> None:
        super().__init__(source, settings, fetcher=fetcher)
        self._client = client
        self.base_url = (source.api_url or "").rstrip("/")
        self.options = TechForgeOptions.of(source)
        self.create_path = self.options.create_path
        self.status_path = self.options.status_path

    # --- auth -----------------------------------------------------------------------------------------

    def _auth_headers(self) -> dict[str, str]:
        key = self.source.api_key.reveal() if self.source.api_key else ""
        header = self.options.auth_header.strip().lower()
        if header == "authorization":
            return {"Authorization": f"Bearer {key}"}
        if header:
            return {header: key}
        # Seed 001 says "API key" without naming the header: send the two common spellings.
        return {"x-api-key": key, "Authorization": f"Bearer {key}"}

    def _credential_names(self) -> set[str]:
        return {name.lower() for name in self._auth_headers()}

    def _same_origin(self, url: str) -> bool:
        """Only URLs on the API's own origin get the API key; a CDN or signed-URL host never does."""
        a, b = urllib.parse.urlsplit(url), urllib.parse.urlsplit(self.base_url)
        return (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port)

    # --- submit ---------------------------------------------------------------------------------------

    def submit(self, payload: Any, callback_url: str | None) -> list[Submitted]:
        _, jobs = self.prepare_submit(payload, callback_url)
        return list(jobs)

    def prepare_submit(self, payload: Any, callback_url: str | None) -> tuple[int, Iterator[Submitted]]:
        """Validate every job now (nothing is sent if one is bad); create them one by one on iteration.

        TechForge takes no callback URL (it has no webhooks), so ``callback_url`` is ignored.
        """
        bodies = validate_jobs(payload)
        return len(bodies), (self._create(body) for body in bodies)

    def _create(self, body: dict[str, Any]) -> Submitted:
        url = self.base_url + self.create_path
        client = self._client or make_client(self.settings, source=self.source)
        try:
            try:
                response = client.post(
                    url, json=body, headers={"Accept": "application/json", **self._auth_headers()}
                )
            except httpx.HTTPError as exc:
                raise Retryable(f"POST {redact_url(url)} failed: {type(exc).__name__}") from exc
        finally:
            if self._client is None:
                client.close()
        where = f"POST {redact_url(url)}"
        if response.status_code == 429 or response.status_code >= 500:
            raise Retryable(
                f"{where} answered {response.status_code}",
                retry_after=parse_retry_after(response.headers.get("retry-after")),
            )
        if response.status_code >= 300:
            detail = _error_detail(response)
            hint = {
                400: "the template_id/project_id could not be resolved",
                401: "the API key is missing or invalid",
                403: "the API key may not use this project",
            }.get(response.status_code, "the vendor refused the job")
            raise HTTPStatusPermanent(
                f"{where} answered {response.status_code}: {hint}" + (f" ({detail})" if detail else ""),
                status=response.status_code,
                url=redact_url(url),
            )
        try:
            job = api.job_object(response.json())
        except ValueError:
            raise Permanent(f"{where} answered invalid JSON") from None
        uuid = api.job_id(job)
        if uuid is None:
            raise Permanent(f"{where} answered a job without a uuid")
        project = str(
            job.get("source_id") or body.get("template_id") or body.get("project_id") or self.source.name
        )
        status = str(job.get("status") or job.get("state") or "QUEUED")
        return Submitted(
            job_id=uuid,
            project=project,
            vendor_state=status,
            meta={"job_type": job.get("job_type") or body.get("job_type")},
        )

    # --- poll -----------------------------------------------------------------------------------------

    def _status_url(self, uuid: str) -> str:
        return self.base_url + self.status_path.replace("{uuid}", urllib.parse.quote(uuid, safe=""))

    def _fetch_record(self, uuid: str) -> bytes:
        """The job record exactly as jobs-get answered it (Retryable on 429/5xx/network)."""
        with self.fetcher.open_stream(
            self._status_url(uuid),
            headers={"Accept": "application/json", **self._auth_headers()},
            max_bytes=RECORD_MAX_BYTES,
            credential_headers=self._credential_names(),
        ) as stream:
            return b"".join(stream)

    def poll(self, job: JobRecord) -> PollResult:
        try:
            raw = self._fetch_record(job.job_id)
        except HTTPStatusPermanent as exc:
            if exc.status in (404, 410):
                # The vendor no longer knows the job (deleted, or another account's): it will never finish.
                return PollResult(state="failed", vendor_state=str(exc.status), reason=exc.reason)
            raise
        record = api.job_object(_parse(raw, "jobs-get"))
        status = api.vendor_status(record)
        state = api.labelhook_state(status)
        reason = api.failure_reason(record, status) if state == api.FAILED else None
        return PollResult(state=state, vendor_state=status, reason=reason, body=raw)

    # --- process --------------------------------------------------------------------------------------

    def process(self, delivery: Delivery, out: JobWriter) -> dict[str, Any]:
        document = _parse(delivery.body, "the polled job record")
        record = api.job_object(document)
        out.write("result.json", delivery.body, "application/json")
        media = []
        names: set[str] = set()
        fresh: Any = None  # a re-fetched record, once a signed URL has expired
        for path, url in api.result_urls(record):
            try:
                entry = self._copy(url, out, names)
            except HTTPStatusPermanent as exc:
                if exc.status not in (401, 403, 410) or self._same_origin(url):
                    raise
                # Signed result URLs are short-lived: if this one expired in the queue, ask for new ones.
                if fresh is None:
                    fresh = api.job_object(_parse(self._fetch_record(delivery.job_id), "jobs-get"))
                again = api.lookup(fresh, path)
                if not isinstance(again, str) or again == url:
                    raise
                entry = self._copy(again, out, names)
            media.append({"from": path, **entry})
        return {
            "job_type": record.get("job_type"),
            "vendor_state": api.vendor_status(record),
            "media": media,
        }

    def _copy(self, url: str, out: JobWriter, names: set[str]) -> dict[str, Any]:
        headers = self._auth_headers() if self._same_origin(url) else {}
        with self.fetcher.open_stream(
            url, headers=headers, credential_headers=self._credential_names()
        ) as stream:
            content_type = (stream.content_type or "").split(";", 1)[0].strip() or None
            name = _media_name(url, content_type, names)
            content_type = content_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
            reader = cast("IO[bytes]", stream)  # duck-typed: read(size) is all stores use
            out.write_stream(f"media/{name}", reader, content_type)
            return {"path": f"media/{name}", "url": redact_url(url), "size": stream.size}


def _media_name(url: str, content_type: str | None, taken: set[str]) -> str:
    """A safe, stable file name from the URL's last path segment, unique within the job."""
    base = posixpath.basename(urllib.parse.urlsplit(url).path)
    base = _SAFE_NAME.sub("_", urllib.parse.unquote(base)).strip("._") or "file"
    if not posixpath.splitext(base)[1] and content_type:
        base += mimetypes.guess_extension(content_type) or ""
    name, counter = base, 1
    while name in taken:
        stem, ext = posixpath.splitext(base)
        counter += 1
        name = f"{stem}-{counter}{ext}"
    taken.add(name)
    return name


def _parse(raw: bytes, what: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        raise Permanent(f"TechForge answered invalid JSON for {what}") from None


def _error_detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    if isinstance(body, dict):
        for key in ("message", "error", "detail"):
            if isinstance(body.get(key), str):
                return " ".join(body[key].split())[:200]
    return ""
