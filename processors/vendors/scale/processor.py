"""Scale: a completed task's response → result.json, the index image in media/, masks, COCO; poll; submit.

Processing (callback or poll): the task is re-read with ``GET /v1/task/{id}`` (`ScaleOptions.fetch_task`,
the default with an API key) — a callback also fires on audits and recalls, so the task as it is *now*
is what counts; a task that is no longer ``completed`` is refused with its status. Without the API key
the verified callback's own ``response`` is used. A segmentation response (one with ``labelMapping``)
has its combined index image streamed to ``media/`` and decoded by index (`scale.result`); other task
types are stored (``result.json``) without masks.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import IO, TYPE_CHECKING, Any, cast

from processors.errors import Permanent
from processors.fetch import HTTPStatusPermanent
from processors.vendors.base import PollResult, Processor, Submitted
from processors.vendors.scale.api import ScaleClient
from processors.vendors.scale.options import DEFAULT_API_URL, ScaleOptions
from processors.vendors.scale.status import job_state
from processors.vendors.scale.submit import created_task, task_request

if TYPE_CHECKING:
    from processors.config import Settings, SourceConfig
    from processors.delivery import Delivery
    from processors.fetch import Fetcher
    from processors.jobs import JobRecord
    from processors.source_images import SourceImage
    from processors.store import JobWriter

_CONTENT_TYPES = {".png": "image/png", ".json": "application/json"}


def task_of(body: Any) -> Mapping[str, Any]:
    """The task object of a callback body (``{task, response, task_id}``) or of a task itself (poll)."""
    if isinstance(body, Mapping) and isinstance(body.get("task"), Mapping):
        task: Mapping[str, Any] = body["task"]
        if "response" not in task and "response" in body:
            return {**task, "response": body["response"]}
        return task
    if isinstance(body, Mapping):
        return body
    raise Permanent("Scale delivery body is not a JSON object")


class ScaleProcessor(Processor):
    """Writes ``callback.json``/``task.json``, ``result.json``, ``media/<indexImage>.png``, masks and COCO."""

    def __init__(self, source: SourceConfig, settings: Settings, *, fetcher: Fetcher | None = None) -> None:
        super().__init__(source, settings, fetcher=fetcher)
        self.options = ScaleOptions.of(source)

    @property
    def api(self) -> ScaleClient:
        key = self.source.api_key.reveal() if self.source.api_key else None
        return ScaleClient(self.fetcher, self.source.api_url or DEFAULT_API_URL, key)

    # -- processing -------------------------------------------------------------------------------

    def process(self, delivery: Delivery, out: JobWriter) -> dict[str, Any]:
        api = self.api
        out.write(
            "callback.json" if delivery.kind == "callback" else "task.json", delivery.body, "application/json"
        )
        try:
            body = json.loads(delivery.body)
        except ValueError:
            raise Permanent("Scale delivery body is not JSON") from None
        task = task_of(body)
        if self.options.fetches_task(self.source):
            raw, fetched = api.task(delivery.job_id)
            out.write("task.json", raw, "application/json")
            task = task_of(fetched)
        status = str(task.get("status") or "completed")
        if job_state(status) != "completed":
            raise Permanent(
                f"Scale task {delivery.job_id} is {status!r} now (recalled, canceled or failed): "
                "nothing to process"
            )
        response = task.get("response")
        if not isinstance(response, Mapping):
            raise Permanent(f"Scale task {delivery.job_id} has no response object")
        out.write_json("result.json", response)
        extra: dict[str, Any] = {"scale": {"task_type": task.get("type"), "status": status}}
        if "labelMapping" in response:
            notes, summary = self._segmentation(api, task, response, out)
            extra["scale"].update(notes)
            extra["segmentation"] = summary
        return extra

    def _segmentation(
        self, api: ScaleClient, task: Mapping[str, Any], response: Mapping[str, Any], out: JobWriter
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        from processors.masks.decode import measure_instances
        from processors.masks.indexed import read_index_image
        from processors.masks.segmentation import write_frame_masks
        from processors.vendors.scale.result import EXTENDED, index_image_url, parse_label_mapping

        mapping = parse_label_mapping(response["labelMapping"])
        kind, url = index_image_url(response, self.options.index_image_key)
        name = f"media/{kind}.png"
        try:
            with api.open_result(url) as stream:
                out.write_stream(name, cast("IO[bytes]", stream), "image/png")
        except HTTPStatusPermanent as exc:
            hint = (
                "a secure result URL needs the live API key (LABELHOOK_<SOURCE>_API_KEY)"
                if api.is_secure_url(url)
                else "the public result URL was refused"
            )
            raise Permanent(f"Scale {kind} {api.describe(url)}: {exc.reason}; {hint}") from exc
        indexes = read_index_image(
            out.store.get(out.key(name)),
            packed_rgb=kind == EXTENDED,
            max_pixels=self.settings.max_pixels,
            what=f"Scale {kind}",
        )
        instances, unknown = mapping.instances(indexes)
        del indexes
        masks = measure_instances(instances, mapping.labelmap)
        summary = write_frame_masks(
            mapping.labelmap,
            [(0, masks)],
            lambda key, data: out.write(key, data, _content_type(key)),
            images={0: self._source_image(task, out)},
        )
        return {"index_image": kind, "media": name, "unknown_indexes": unknown}, summary.as_json()

    def _source_image(self, task: Mapping[str, Any], out: JobWriter) -> SourceImage:
        """The task's ``params.attachment`` (the customer's image URL), fetched without the API key."""
        from processors.source_images import not_fetched, store_image

        if not self.source.fetch_images:
            return not_fetched(0, "FETCH_IMAGES=0")
        params = task.get("params")
        url = params.get("attachment") if isinstance(params, Mapping) else None
        if not isinstance(url, str) or not url.strip().lower().startswith(("http://", "https://")):
            return not_fetched(0, "the task's params name no attachment URL")
        url = url.strip()
        return store_image(0, lambda: self.fetcher.open_stream(url), out, hint=url)

    # -- poll and submit --------------------------------------------------------------------------

    def poll(self, job: JobRecord) -> PollResult:
        raw, task = self.api.task(job.job_id)
        if not isinstance(task, Mapping):
            raise Permanent(f"Scale task {job.job_id}: the API answered no task object")
        status = str(task.get("status") or "")
        if not status:
            raise Permanent(f"Scale task {job.job_id}: the API answered no status")
        state = job_state(status)
        reason = f"Scale status {status}" if state == "failed" else None
        return PollResult(state=state, vendor_state=status, reason=reason, body=raw)

    def submit(self, payload: Any, callback_url: str | None) -> list[Submitted]:
        """Create one task per entry with ``POST /v1/task/{type}`` (default ``segmentannotation``).

        INPUT.json is a task object or a list of them, in Scale's create-task form (``attachment``,
        ``labels``, ``instruction``, …; optional ``type``); ``callback_url`` is filled in.
        """
        requests = task_request(payload, callback_url)
        submitted: list[Submitted] = []
        for kind, body in requests:
            task_id, status, meta = created_task(self.api.create_task(kind, body))
            project = self.options.project or str(meta.get("project") or self.source.name)
            submitted.append(Submitted(job_id=task_id, project=project, vendor_state=status, meta=meta))
        return submitted


def _content_type(key: str) -> str:
    return next((t for ext, t in _CONTENT_TYPES.items() if key.endswith(ext)), "application/octet-stream")
