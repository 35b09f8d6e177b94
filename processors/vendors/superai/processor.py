"""super.AI: fetch a finished job's response and the files it references; create and poll jobs.

Reference rule (also in docs/vendors/superai.md): every string in the response JSON that is a
``data://…`` path, or a super.AI ``/v1/data/url?path=…`` link (absolute or relative), is a file. Each
is resolved to a signed URL with ``GET /v1/data/url`` and streamed to ``media/<basename>``; a signed
URL refused with 400/403 (expired) is resolved again once. Plain http(s) URLs are not fetched: they
are usually the job's inputs, echoed back, and may point anywhere. A dict holding a mask reference
and a colour legend is a segmentation output and is decoded into ``masks/``, ``labelmap.json`` and
``annotations.json``.
"""

from __future__ import annotations

import json
import posixpath
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, cast

from processors.errors import Permanent
from processors.fetch import HTTPStatusPermanent, redact_url
from processors.vendors.base import PollResult, Processor, Submitted
from processors.vendors.superai.api import DEFAULT_API_URL, SuperAIClient
from processors.vendors.superai.options import SuperAIOptions
from processors.vendors.superai.states import job_state

if TYPE_CHECKING:
    from processors.delivery import Delivery
    from processors.jobs import JobRecord
    from processors.store import JobWriter

#: super.AI accepts at most 4 MB of job JSON; checked on the encoded request body before sending.
MAX_INPUT_BYTES = 4_000_000
_MASK_KEYS = ("mask", "maskUrl", "mask_url", "maskPath", "mask_path", "segmentationMask")
_LEGEND_KEYS = ("legend", "classes", "colors", "colours", "labelMapping", "label_mapping")
_FRAME_KEYS = ("frame", "frameIndex", "frame_index")
_EXPIRED_STATUSES = frozenset({400, 403})


@dataclass(frozen=True)
class _Ref:
    """One file reference: the data path to resolve, and the media name it is stored under."""

    data_path: str
    name: str


class SuperAIProcessor(Processor):
    """Writes ``callback.json`` (or ``job.json`` for polls), ``result.json``, ``media/…`` and masks."""

    callback_token_in_url = True
    callback_trailing_slash = True  # their callback docs: "must … end with a trailing slash"

    @property
    def api(self) -> SuperAIClient:
        key = self.source.api_key.reveal() if self.source.api_key else None
        return SuperAIClient(self.fetcher, self.source.api_url or DEFAULT_API_URL, key)

    # -- processing -------------------------------------------------------------------------------

    def process(self, delivery: Delivery, out: JobWriter) -> dict[str, Any]:
        api = self.api
        out.write(
            "job.json" if delivery.kind == "poll" else "callback.json", delivery.body, "application/json"
        )
        raw, response = api.job_response(delivery.job_id)
        out.write("result.json", raw, "application/json")
        refs = collect_refs(response, self._api_origin())
        for ref in refs.values():
            self._copy(api, ref, out)
        extra: dict[str, Any] = {
            "media": [{"ref": path, "path": f"media/{ref.name}"} for path, ref in refs.items()],
        }
        segmentation = find_segmentation(response)
        if segmentation is not None:
            extra["segmentation"] = self._decode(segmentation, refs, out, delivery.job_id, response)
        return extra

    def _api_origin(self) -> str:
        parts = urllib.parse.urlsplit(self.source.api_url or DEFAULT_API_URL)
        return f"{parts.scheme}://{parts.netloc}".lower()

    def _copy(self, api: SuperAIClient, ref: _Ref, out: JobWriter) -> None:
        """Stream one referenced file into ``media/``; re-resolve once if the signed URL has expired."""
        for attempt in (1, 2):
            url = api.signed_url(ref.data_path)
            try:
                with self.fetcher.open_stream(url) as stream:
                    content_type = (stream.content_type or "application/octet-stream").split(";")[0]
                    out.write_stream(f"media/{ref.name}", cast("IO[bytes]", stream), content_type)
                return
            except HTTPStatusPermanent as exc:
                if exc.status not in _EXPIRED_STATUSES:
                    raise Permanent(f"super.AI data {ref.data_path}: {exc.reason}") from exc
                if attempt == 2:
                    raise Permanent(
                        f"super.AI data {ref.data_path}: signed URL refused twice "
                        f"({exc.status} from {redact_url(url)})"
                    ) from exc

    def _source_images(
        self, api: SuperAIClient, job_id: str, response: Any, frames: list[int], out: JobWriter
    ) -> dict[int, Any]:
        """The job input's image, as frame 0 of a one-frame job (super.AI inputs name one image)."""
        from processors.source_images import find_image_url, not_fetched, store_image

        if not self.source.fetch_images:
            return {frame: not_fetched(frame, "FETCH_IMAGES=0") for frame in frames}
        if frames != [0]:
            return {
                frame: not_fetched(frame, "a super.AI input names one image, not one per frame")
                for frame in frames
            }
        # The response usually echoes the input; otherwise the job object carries it.
        url = find_image_url(_job_input(response))
        if url is None:
            url = find_image_url(_job_input(api.job(job_id)[1]))
        if url is None:
            return {0: not_fetched(0, "the super.AI job's input names no image URL")}
        # A super.AI upload (data://) gets a signed URL; the customer's own URL is fetched as it is.
        # Either way through the guard, and never with our API key.
        target = api.signed_url(url) if url.lower().startswith("data://") else url
        return {0: store_image(0, lambda: self.fetcher.open_stream(target), out, hint=url)}

    def _decode(
        self,
        segmentation: list[dict[str, Any]],
        refs: Mapping[str, _Ref],
        out: JobWriter,
        job_id: str,
        response: Any,
    ) -> Any:
        from processors.masks.memory import MemoryBudget
        from processors.masks.segmentation import process_segmentation

        legend: dict[str, Any] = {}
        instances: list[Any] = []
        frames: list[tuple[int, str]] = []
        for position, item in enumerate(segmentation):
            legend.update(_legend(item))
            if isinstance(item.get("instances"), list):
                instances.extend(item["instances"])
            frame = next((item[k] for k in _FRAME_KEYS if k in item), position)
            try:
                frame_index = int(frame)
            except (TypeError, ValueError):
                raise Permanent(
                    f"segmentation output has a frame index {frame!r} that is not a number"
                ) from None
            data_path = _data_path(str(_mask_value(item)), self._api_origin())
            if data_path is None or data_path not in refs:
                raise Permanent("segmentation output's mask is not a data:// reference")
            frames.append((frame_index, refs[data_path].name))
        result = {"legend": legend, "instances": instances or None}

        def read_frames() -> Iterator[tuple[int, bytes]]:
            # One frame in memory at a time: read back what was just streamed into media/.
            for frame_index, name in frames:
                yield frame_index, out.store.get(out.key(f"media/{name}"))

        images = self._source_images(self.api, job_id, response, [index for index, _ in frames], out)
        summary = process_segmentation(
            result,
            read_frames(),
            lambda key, data: out.write(
                key, data, "image/png" if key.endswith(".png") else "application/json"
            ),
            max_pixels=self.settings.max_pixels,
            threads=self.settings.mask_threads,
            budget=MemoryBudget.shared(self.settings.mask_memory_bytes),
            images=images,
        )
        return summary.as_json()

    # -- submit and poll --------------------------------------------------------------------------

    def submit(self, payload: Any, callback_url: str | None) -> list[Submitted]:
        """Create jobs with ``POST /v1/apps/{app_id}/jobs``; INPUT.json is a list of inputs or an object
        with ``inputs`` (or ``inputsFileUrl``) and optional ``metadata``, ``tags`` and other fields."""
        options = SuperAIOptions.of(self.source)
        app_id = options.app_id or options.project_id
        if not app_id:
            raise Permanent(f"set LABELHOOK_{self._env_name()}_APP_ID (the super.AI project UUID) to submit")
        body = submit_body(payload, callback_url)
        encoded = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        if len(encoded) > MAX_INPUT_BYTES:
            raise Permanent(
                f"job JSON is {len(encoded)} bytes; super.AI accepts at most 4 MB ({MAX_INPUT_BYTES} bytes): "
                "split the inputs or upload them and pass inputsFileUrl"
            )
        answer = self.api.create_jobs(app_id, encoded)
        return [
            Submitted(job_id=job_id, project=self.project_name(), vendor_state=state, meta=meta)
            for job_id, state, meta in created_jobs(answer)
        ]

    def poll(self, job: JobRecord) -> PollResult:
        raw, answer = self.api.job(job.job_id)
        if not isinstance(answer, dict):
            raise Permanent(f"super.AI job {job.job_id}: the API answered no job object")
        vendor_state = str(answer.get("state") or answer.get("status") or "")
        if not vendor_state:
            raise Permanent(f"super.AI job {job.job_id}: the API answered no state")
        state = job_state(vendor_state)
        reason = f"super.AI state {vendor_state}" if state == "failed" else None
        return PollResult(state=state, vendor_state=vendor_state, reason=reason, body=raw)

    def batch_jobs(self, delivery: Delivery) -> list[str]:
        """``GET /v1/apps/{app}/batches/{batch}`` (the SDK's ``fetch_batch_job``) → the batch's job ids.

        The app is the callback's ``appId`` (or the configured APP_ID); the job ids are read from the
        answer as from a create-jobs answer (``jobIds``, ``jobs``, ``data`` …).
        """
        batch_id = str(delivery.meta.get("batch_id") or delivery.job_id)
        app_id = self._app_of(delivery)
        _, answer = self.api.batch(app_id, batch_id)
        return batch_job_ids(answer, batch_id)

    def _app_of(self, delivery: Delivery) -> str:
        try:
            body = json.loads(delivery.body)
        except ValueError:
            body = None
        app_id = body.get("appId") if isinstance(body, dict) else None
        options = SuperAIOptions.of(self.source)
        app_id = app_id or options.app_id or options.project_id
        if not isinstance(app_id, str) or not app_id:
            raise Permanent("super.AI batch callback has no appId and no APP_ID is configured")
        return app_id

    def project_name(self) -> str:
        return SuperAIOptions.of(self.source).app or self.source.name

    def _env_name(self) -> str:
        return self.source.name.upper().replace("-", "_")


def _job_input(job: Any) -> Any:
    """The input of a super.AI job object: ``input``, ``data.input`` or the first of ``inputs``."""
    if not isinstance(job, dict):
        return None
    data = job.get("data")
    for candidate in (
        job.get("input"),
        data.get("input") if isinstance(data, dict) else None,
        job.get("inputs"),
    ):
        if candidate is not None:
            return candidate
    return None


def submit_body(payload: Any, callback_url: str | None) -> dict[str, Any]:
    """The create-jobs request body; `Permanent` naming the field when INPUT.json has the wrong shape."""
    if isinstance(payload, list):
        body: dict[str, Any] = {"inputs": payload}
    elif isinstance(payload, dict):
        body = {k: v for k, v in payload.items() if k not in ("callbackUrl", "callback_url")}
    else:
        raise Permanent("INPUT.json must be a list of inputs or an object with 'inputs'")
    if "inputs" in body:
        if not isinstance(body["inputs"], list) or not body["inputs"]:
            raise Permanent("INPUT.json 'inputs' must be a non-empty list of objects")
        if not all(isinstance(item, dict) for item in body["inputs"]):
            raise Permanent("INPUT.json 'inputs' must contain only objects")
    elif not isinstance(body.get("inputsFileUrl"), str):
        raise Permanent("INPUT.json needs 'inputs' (a list) or 'inputsFileUrl'")
    if "tags" in body and not (
        isinstance(body["tags"], list) and all(isinstance(t, str) for t in body["tags"])
    ):
        raise Permanent("INPUT.json 'tags' must be a list of strings")
    if callback_url:
        body["callbackUrl"] = callback_url
    return body


def batch_job_ids(answer: Any, batch_id: str) -> list[str]:
    """The job ids a batch answer lists (``jobIds``/``ids`` of ids, or ``jobs``/``data``/``content`` of
    job objects), in order, once each; `Permanent` when it lists none in a known field."""
    if isinstance(answer, dict):
        for key in ("jobIds", "job_ids", "ids", "jobs", "data", "content"):
            if isinstance(answer.get(key), list):
                return list(dict.fromkeys(job_id for job_id, _, _ in created_jobs(answer[key])))
    elif isinstance(answer, list):
        return list(dict.fromkeys(job_id for job_id, _, _ in created_jobs(answer)))
    raise Permanent(f"super.AI batch {batch_id}: the API answer lists no jobs (jobIds, jobs, data)")


def created_jobs(answer: Any) -> list[tuple[str, str, dict[str, Any]]]:
    """(job id, vendor state, meta) for each job a create-jobs answer names, in its order."""
    if isinstance(answer, dict):
        for key in ("jobs", "data", "content"):
            if isinstance(answer.get(key), list):
                return created_jobs(answer[key])
        for key in ("jobIds", "ids", "uuids"):
            if isinstance(answer.get(key), list):
                return [(str(i), "SCHEDULED", {}) for i in answer[key]]
        items: list[Any] = [answer] if ("id" in answer or "uuid" in answer) else []
    elif isinstance(answer, list):
        items = answer
    else:
        items = []
    jobs: list[tuple[str, str, dict[str, Any]]] = []
    for item in items:
        if isinstance(item, str | int):
            jobs.append((str(item), "SCHEDULED", {}))
        elif isinstance(item, dict) and (item.get("id") is not None or item.get("uuid")):
            job_id = str(item["id"] if item.get("id") is not None else item["uuid"])
            state = str(item.get("state") or item.get("status") or "SCHEDULED")
            meta = {"uuid": str(item["uuid"])} if item.get("uuid") else {}
            jobs.append((job_id, state, meta))
    return jobs


def collect_refs(response: Any, api_origin: str) -> dict[str, _Ref]:
    """Every file reference in ``response`` in document order, keyed by data path, with unique names."""
    refs: dict[str, _Ref] = {}
    used: set[str] = set()
    for value in _strings(response):
        path = _data_path(value, api_origin)
        if path is None or path in refs:
            continue
        refs[path] = _Ref(path, _unique_name(path, used))
    return refs


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _data_path(value: str, api_origin: str) -> str | None:
    """The ``data://`` path a string refers to, or None if it is not a super.AI data reference."""
    text = value.strip()
    if text.startswith("data://"):
        return text
    parts = urllib.parse.urlsplit(text)
    origin = f"{parts.scheme}://{parts.netloc}".lower()
    relative = not parts.scheme and not parts.netloc
    if (relative or origin == api_origin) and parts.path.rstrip("/") == "/v1/data/url":
        path = urllib.parse.parse_qs(parts.query).get("path", [""])[0]
        return path if path.startswith("data://") else None
    return None


def _unique_name(data_path: str, used: set[str]) -> str:
    from processors.delivery import path_segment

    base = path_segment(posixpath.basename(data_path[len("data://") :].rstrip("/")) or "file")
    stem, ext = posixpath.splitext(base)
    name, n = base, 1
    while name in used:
        n += 1
        name = f"{stem}-{n}{ext}"
    used.add(name)
    return name


def find_segmentation(response: Any) -> list[dict[str, Any]] | None:
    """The dicts in ``response`` that hold a mask reference and a colour legend, in document order."""
    found: list[dict[str, Any]] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if _mask_value(value) is not None and any(k in value for k in _LEGEND_KEYS):
                found.append(value)
                return
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(response)
    return found or None


def _mask_value(item: Mapping[str, Any]) -> Any:
    for key in _MASK_KEYS:
        value = item.get(key)
        if isinstance(value, str):
            return value
        if isinstance(value, dict):  # {"url": "data://…"} style
            for inner in ("url", "path", "dataUrl", "data_url"):
                if isinstance(value.get(inner), str):
                    return value[inner]
    return None


def _legend(item: Mapping[str, Any]) -> dict[str, Any]:
    """``{"#rrggbb": name}`` from a legend mapping, or from a list of ``{color, name}`` entries."""
    raw = next(item[k] for k in _LEGEND_KEYS if k in item)
    if isinstance(raw, Mapping):
        return dict(raw)
    if isinstance(raw, list):
        legend: dict[str, Any] = {}
        for entry in raw:
            if not isinstance(entry, Mapping):
                raise Permanent("segmentation legend entries must be objects with a color and a name")
            color = entry.get("color") or entry.get("colour") or entry.get("hex")
            name = entry.get("name") or entry.get("label") or entry.get("className") or entry.get("class")
            if not isinstance(color, str) or name is None:
                raise Permanent("segmentation legend entry without a color string and a name")
            legend[color] = name
        return legend
    raise Permanent("segmentation legend is neither an object nor a list")
