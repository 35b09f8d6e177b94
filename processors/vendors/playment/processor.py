"""Playment / TELUS: fetch a finished job's result and masks, poll job states, create jobs.

Processing a completion (callback or poll): `GET /v1/projects/:pid/jobs/:jid` → ``data.status`` and
``data.result`` (an attachment URL); the result object comes through the attachments redirect and is
stored as ``result.json`` byte for byte; each mask is streamed into ``media/<frame>/vendor_mask.png`` and then
decoded, one frame at a time, by `process_segmentation` (``masks/<frame>/…``, ``labelmap.json``,
``annotations.json``). The image each frame was drawn on goes to ``images/<frame>.<ext>``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import IO, TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from processors.errors import Permanent, Retryable
from processors.jobs import JobBook
from processors.masks.memory import MemoryBudget
from processors.masks.segmentation import process_segmentation
from processors.source_images import SourceImage, not_fetched, store_image
from processors.vendors.base import PollResult, Processor, Submitted
from processors.vendors.playment.api import DEFAULT_API_URL, PlaymentAPI
from processors.vendors.playment.options import PlaymentOptions
from processors.vendors.playment.result import MaskFrame, input_image_urls, plan_result

if TYPE_CHECKING:
    import httpx

    from processors.config import Settings, SourceConfig
    from processors.delivery import Delivery
    from processors.fetch import Fetcher
    from processors.jobs import JobRecord
    from processors.store import JobWriter

COMPLETED = frozenset({"completed", "complete", "done"})
FAILED = frozenset({"failed", "failure", "error", "rejected", "cancelled", "canceled"})


class PlaymentProcessor(Processor):
    """Completions → result.json, media/, masks/, labelmap.json, annotations.json; plus poll and submit."""

    def __init__(
        self,
        source: SourceConfig,
        settings: Settings,
        *,
        fetcher: Fetcher | None = None,
        client: httpx.Client | None = None,
    ) -> None:
        super().__init__(source, settings, fetcher=fetcher)
        self._post_client = client
        self._api: PlaymentAPI | None = None
        # Off by default: Playment sends its static key header; opt in where it cannot be configured.
        self.options = PlaymentOptions.of(source)
        self.callback_token_in_url = self.options.token_in_url

    @property
    def api(self) -> PlaymentAPI:
        if self._api is None:
            if self.source.api_key is None:
                raise Permanent(f"source {self.source.name!r} has no API_KEY")
            self._api = PlaymentAPI(
                self.fetcher,
                api_url=self.source.api_url or DEFAULT_API_URL,
                api_key=self.source.api_key,
                client_factory=self._make_client,
            )
        return self._api

    def close(self) -> None:
        api, self._api = self._api, None
        if api is not None and self._post_client is None:  # an injected client is its owner's to close
            api.close()
        super().close()

    def _make_client(self) -> httpx.Client:
        if self._post_client is not None:
            return self._post_client
        from processors.fetch import make_client

        return make_client(self.settings, source=self.source)

    # -- processing -------------------------------------------------------------------------------

    def process(self, delivery: Delivery, out: JobWriter) -> dict[str, Any]:
        if delivery.kind == "callback":
            out.write("callback.json", delivery.body, "application/json")
        job, raw_job = self.api.get_job(delivery.project, delivery.job_id)
        status = str(job.get("status") or "")
        if status.lower() in FAILED:
            raise Permanent(f"Playment reports job {delivery.job_id} as {status}: {_reason(job)}")
        if status.lower() not in COMPLETED:
            # A callback can overtake the job API's own view; the retry backoff gives it time.
            raise Retryable(
                f"Playment reports job {delivery.job_id} as {status or 'no status'}, not completed"
            )
        out.write("job.json", raw_job, "application/json")
        result_ref = job.get("result")
        if isinstance(result_ref, dict | list):
            result: Any = result_ref  # inline result: store what the job carried
            out.write_json("result.json", result)
        elif isinstance(result_ref, str) and result_ref.strip():
            raw = self.api.attachment_bytes(result_ref.strip())
            try:
                result = json.loads(raw)
            except ValueError:
                raise Permanent(f"Playment result of job {delivery.job_id} is not valid JSON") from None
            out.write("result.json", raw, "application/json")
        else:
            raise Permanent(f"Playment job {delivery.job_id} is completed but has no result")
        plan = plan_result(result)
        extra: dict[str, Any] = {
            "playment": {"project_id": delivery.project, "status": status, "frames": len(plan.frames)}
        }
        if plan.labels is None:
            return extra
        images = self._source_images(delivery, job, plan.frames, out)
        summary = process_segmentation(
            plan.labels,
            self._mask_frames(plan.frames, out),
            lambda key, data: out.write(key, data, _content_type(key)),
            max_pixels=self.settings.max_pixels,
            threads=self.settings.mask_threads,
            budget=MemoryBudget.shared(self.settings.mask_memory_bytes),
            images=images,
        )
        extra["segmentation"] = summary.as_json()
        return extra

    def _source_images(
        self, delivery: Delivery, job: Mapping[str, Any], frames: tuple[MaskFrame, ...], out: JobWriter
    ) -> dict[int, SourceImage]:
        """Each frame's image from the job's input: the job object's ``data`` when Playment echoes it,
        else the image URLs `labelhook submit` recorded in the job book (the documented job API
        answers no input). Fetched from the customer's URL through the guard, without the API key."""
        if not self.source.fetch_images:
            return {f.index: not_fetched(f.index, "FETCH_IMAGES=0") for f in frames}
        urls = input_image_urls(job.get("data"))
        if not urls:
            record = JobBook(out.store).get(self.source.name, delivery.job_id)
            recorded = record.meta.get("image_urls") if record is not None else None
            if isinstance(recorded, dict):
                urls = {
                    int(k): str(v) for k, v in recorded.items() if str(k).isdigit() and isinstance(v, str)
                }
        images: dict[int, SourceImage] = {}
        for frame in frames:
            url = urls.get(frame.index)
            if url is None:
                images[frame.index] = not_fetched(
                    frame.index, "the job's input names no image for this frame"
                )
            else:
                images[frame.index] = self._fetch_image(frame.index, url, out)
        return images

    def _fetch_image(self, frame: int, url: str, out: JobWriter) -> SourceImage:
        return store_image(frame, lambda: self.fetcher.open_stream(url), out, hint=url)

    def _mask_frames(self, frames: tuple[MaskFrame, ...], out: JobWriter) -> Iterator[tuple[int, bytes]]:
        """Stream each mask into ``media/<frame>/vendor_mask.png`` (the vendor's colour mask, not the
        photo) and hand back its bytes: one frame in memory at a time."""
        for frame in frames:
            name = f"media/{frame.index}/vendor_mask.png"
            try:
                with self.api.open_attachment(frame.url) as stream:
                    out.write_stream(name, cast("IO[bytes]", stream), "image/png")
            except Permanent as exc:
                raise Permanent(f"frame {frame.index} mask: {exc.reason}") from exc
            yield frame.index, out.store.get(out.key(name))

    # -- polling ----------------------------------------------------------------------------------

    def poll(self, job: JobRecord) -> PollResult:
        data, raw = self.api.get_job(job.project, job.job_id)
        status = str(data.get("status") or "")
        state = status.lower()
        if state in COMPLETED:
            return PollResult(state="completed", vendor_state=status, body=raw)
        if state in FAILED:
            return PollResult(state="failed", vendor_state=status, reason=_reason(data))
        return PollResult(state="open", vendor_state=status or "unknown")

    # -- submit -----------------------------------------------------------------------------------

    def submit(self, payload: Any, callback_url: str | None) -> list[Submitted]:
        return list(self.prepare_submit(payload, callback_url)[1])

    def prepare_submit(self, payload: Any, callback_url: str | None) -> tuple[int, Iterator[Submitted]]:
        """Validate one job (an object) or several (a list) in seed 000's create-job shape, then
        create them one by one as the iterator is consumed.

        Every job is validated before the first request, so a bad field sends nothing. The project is
        the job's ``project_id`` key (removed before sending) or the source's PROJECT_ID option.
        """
        jobs = payload if isinstance(payload, list) else [payload]
        if not jobs:
            raise Permanent("INPUT.json is an empty list")
        prepared = [self._prepare(job, position, callback_url) for position, job in enumerate(jobs)]
        return len(prepared), (self._create(project, body) for project, body in prepared)

    def _create(self, project: str, body: dict[str, Any]) -> Submitted:
        data = self.api.create_job(project, body)
        return Submitted(
            job_id=str(data["job_id"]),
            project=project,
            # The create call answers no status; a new Playment job is pending until annotated.
            vendor_state="PENDING",
            meta={
                "reference_id": body["reference_id"],
                "work_flow_id": body["work_flow_id"],
                # The job API does not answer the input: keep its image URLs for the processor.
                "image_urls": {str(k): v for k, v in input_image_urls(body.get("data")).items()},
            },
        )

    def _prepare(self, job: Any, position: int, callback_url: str | None) -> tuple[str, dict[str, Any]]:
        where = f"job #{position}" if position else "job"
        if not isinstance(job, Mapping):
            raise Permanent(f"{where}: must be a JSON object")
        body = dict(job)
        project = body.pop("project_id", None) or self.options.project_id
        if not isinstance(project, str) or not project.strip():
            raise Permanent(
                f"{where}: project_id is missing (in the job or as LABELHOOK_<SOURCE>_PROJECT_ID)"
            )
        for name in ("reference_id", "work_flow_id"):
            value = body.get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                body[name] = value = str(value)
            if not isinstance(value, str) or not value.strip():
                raise Permanent(f"{where}: {name} must be a non-empty string")
        batch = body.get("batch_id")
        if batch is not None and not isinstance(batch, str):
            raise Permanent(f"{where}: batch_id must be a string")
        _check_data(body.get("data"), where)
        if callback_url:
            body["callback_url"] = callback_url
        return project.strip(), body


def _check_data(data: Any, where: str) -> None:
    """Image: ``data.image_url``; video: ``data.video_data.frames`` (seed 000) or ``data.frames``."""
    if not isinstance(data, Mapping):
        raise Permanent(f"{where}: data must be an object")
    video = data.get("video_data")
    frames = video.get("frames") if isinstance(video, Mapping) else data.get("frames")
    field = "data.video_data.frames" if isinstance(video, Mapping) else "data.frames"
    if frames is None and "image_url" in data:
        if not _is_url(data["image_url"]):
            raise Permanent(f"{where}: data.image_url must be an http(s) URL")
        return
    if frames is None:
        raise Permanent(f"{where}: data needs image_url (image job) or video_data.frames (video job)")
    if not isinstance(frames, list) or not frames:
        raise Permanent(f"{where}: {field} must be a non-empty list")
    seen: set[str] = set()
    for i, frame in enumerate(frames):
        if not isinstance(frame, Mapping):
            raise Permanent(f"{where}: {field}[{i}] must be an object")
        frame_id = frame.get("frame_id")
        if not isinstance(frame_id, str) or not frame_id:
            raise Permanent(f"{where}: {field}[{i}].frame_id must be a non-empty string")
        if frame_id in seen:
            raise Permanent(f"{where}: {field}[{i}].frame_id {frame_id!r} repeats")
        seen.add(frame_id)
        if not _is_url(frame.get("src")):
            raise Permanent(f"{where}: {field}[{i}].src must be an http(s) URL")


def _is_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _reason(job: Mapping[str, Any]) -> str:
    for key in ("reason", "failure_reason", "error", "message", "remarks"):
        value = job.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()[:300]
    return "no reason given"


def _content_type(key: str) -> str:
    return "image/png" if key.endswith(".png") else "application/json"
