"""CVAT: turn a completed job into masks (default) or into its dataset-export archive (``mode=export``).

Annotations mode fetches the job, its annotations, labels and frame sizes, rasterises every area
shape and track (`processors.vendors.cvat.shapes`) and writes the standard segmentation outputs. Export mode
asks CVAT for a dataset export in ``export_format``, polls the request until it is finished (bounded:
Retryable when it takes too long, Permanent when CVAT says it failed) and streams the archive to
``media/``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any, cast

import httpx

from processors.delivery import path_segment
from processors.errors import Permanent, Retryable
from processors.masks.decode import FrameMasks, measure_instances
from processors.masks.labelmap import LabelClass, Labelmap, Segment, normalise_color
from processors.masks.segmentation import write_frame_masks
from processors.source_images import SourceImage, not_fetched, store_image
from processors.vendors.base import Processor
from processors.vendors.cvat.api import CvatClient
from processors.vendors.cvat.options import CvatOptions
from processors.vendors.cvat.shapes import JobShapes, parse_annotations, render

if TYPE_CHECKING:
    from processors.config import Settings, SourceConfig
    from processors.delivery import Delivery
    from processors.fetch import Fetcher
    from processors.store import JobWriter

_CONTENT_TYPES = {".png": "image/png", ".json": "application/json"}


class CvatProcessor(Processor):
    """Processes `update:job` completions of one CVAT server."""

    def __init__(
        self,
        source: SourceConfig,
        settings: Settings,
        *,
        fetcher: Fetcher | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(source, settings, fetcher=fetcher)
        self.options = CvatOptions.of(source)
        self._sleep = sleep
        self._clock = clock

    def client(self) -> CvatClient:
        if not (self.source.api_url and self.source.api_key):
            raise Permanent("CVAT API_URL and API_KEY must be configured")
        return CvatClient(self.fetcher, self.source.api_url, self.source.api_key.reveal())

    def process(self, delivery: Delivery, out: JobWriter) -> dict[str, Any]:
        out.write("callback.json", delivery.body, "application/json")
        if self.options.mode == "export":
            return self._export(delivery.job_id, out)
        return self._annotations(delivery, out)

    # --- annotations mode ---------------------------------------------------------------------

    def _annotations(self, delivery: Delivery, out: JobWriter) -> dict[str, Any]:
        client = self.client()
        job_id = delivery.job_id
        job = client.job(job_id)
        annotations = client.annotations(job_id)
        out.write_json("result.json", annotations)
        labels = client.labels(job_id)
        meta = client.meta(job_id)
        shapes = parse_annotations(annotations)
        labelmap = build_cvat_labelmap(labels, shapes)
        frames = job_frames(job, meta)
        for number, width, height in frames:
            if width * height > self.settings.max_pixels:
                raise Permanent(
                    f"frame {number} is {width}x{height} pixels, over the limit of {self.settings.max_pixels}"
                )

        def rendered() -> Iterator[tuple[int, FrameMasks]]:
            for number, width, height in frames:
                instances = render(shapes.on_frame(number), width, height)
                yield number, measure_instances(instances, labelmap)

        images = {n: self._source_image(client, job_id, n, out) for n, _, _ in frames}
        summary = write_frame_masks(
            labelmap, rendered(), lambda key, data: out.write(key, data, _content_type(key)), images=images
        )
        return {
            "cvat": {
                "mode": "annotations",
                "frames": len(frames),
                "instances": len(shapes.instances),
                "skipped": shapes.skipped,
            },
            "segmentation": summary.as_json(),
        }

    def _source_image(self, client: CvatClient, job_id: str, number: int, out: JobWriter) -> SourceImage:
        if not self.source.fetch_images:
            return not_fetched(number, "FETCH_IMAGES=0")
        return store_image(number, lambda: client.open_frame(job_id, number), out)

    # --- export mode --------------------------------------------------------------------------

    def _export(self, job_id: str, out: JobWriter) -> dict[str, Any]:
        client = self.client()
        options = self.options
        if not options.export_format:
            raise Permanent("CVAT EXPORT_FORMAT must be configured with MODE=export")
        export_format = options.export_format
        interval = options.export_poll_seconds
        timeout = options.export_timeout_seconds
        rq_id = client.start_export(job_id, export_format)
        deadline = self._clock() + timeout
        while True:
            status = client.request_status(rq_id)
            state = str(status.get("status") or "").lower()
            if state == "finished":
                break
            if state == "failed":
                message = str(status.get("message") or "no message").splitlines()[0][:300]
                raise Permanent(f"CVAT export {export_format!r} of job {job_id} failed: {message}")
            if self._clock() + interval > deadline:
                raise Retryable(
                    f"CVAT export {export_format!r} of job {job_id} not finished within {timeout:g} s "
                    f"(status {state or 'unknown'})",
                    retry_after=interval,
                )
            self._sleep(interval)
        result_url = status.get("result_url")
        if not isinstance(result_url, str) or not result_url:
            raise Permanent(f"CVAT export of job {job_id} finished without a result_url")
        # CVAT answers an absolute URL; a relative one is resolved against the API server.
        url = str(httpx.URL(client.url("")).join(result_url))
        name = f"media/job-{path_segment(job_id)}-{path_segment(export_format.lower().replace(' ', '-'))}.zip"
        with client.open_download(url) as stream:
            out.write_stream(name, cast("IO[bytes]", stream), "application/zip")
        return {"cvat": {"mode": "export", "format": export_format, "archive": name}}


def build_cvat_labelmap(labels: Sequence[Mapping[str, Any]], shapes: JobShapes) -> Labelmap:
    """Classes from CVAT labels (id order, their colours), one segment per drawn instance.

    A label id used by a shape but missing from the label list becomes a class ``label <id>``; a
    label colour that is not ``#rrggbb`` is reported in ``invalid_legend_keys`` and replaced by a
    colour derived from the label id (deterministic).
    """
    by_id: dict[int, Mapping[str, Any]] = {}
    for label in labels:
        try:
            by_id.setdefault(int(label["id"]), label)
        except (KeyError, TypeError, ValueError):
            raise Permanent("CVAT label without an integer id") from None
    for instance in shapes.instances:
        by_id.setdefault(instance.label_id, {"id": instance.label_id, "name": f"label {instance.label_id}"})
    classes = [LabelClass(0, "unlabeled", "#000000", None)]
    class_of: dict[int, LabelClass] = {}
    invalid: list[str] = []
    for label_id in sorted(by_id):
        label = by_id[label_id]
        raw_colour = label.get("color")
        colour = normalise_color(raw_colour) if isinstance(raw_colour, str) else None
        if colour is None:
            if raw_colour:
                invalid.append(str(raw_colour))
            colour = f"#{(label_id * 2654435761) & 0xFFFFFF:06x}"
        entry = LabelClass(len(classes), str(label.get("name") or f"label {label_id}"), colour, str(label_id))
        classes.append(entry)
        class_of[label_id] = entry
    segments = tuple(
        Segment(
            number=instance.number,
            color=class_of[instance.label_id].color,
            name=class_of[instance.label_id].name,
            label_id=class_of[instance.label_id].id,
            instance_id=instance.key,
            attributes=instance.attributes,
        )
        for instance in shapes.instances
    )
    return Labelmap(tuple(classes), segments, tuple(invalid))


def job_frames(job: Mapping[str, Any], meta: Mapping[str, Any]) -> list[tuple[int, int, int]]:
    """``(frame number, width, height)`` of every frame of the job, deleted frames left out.

    Read as CVAT's ``JobViewSet.metadata`` builds the answer: frame numbers are the task's (those in
    the annotations); the job's frames are ``included_frames`` when listed (ground-truth and other
    non-contiguous jobs), else ``start_frame..stop_frame`` of the job. ``frames`` holds one size for
    *every* image from the job's ``start_frame`` to its ``stop_frame`` — images outside a
    non-contiguous job are ``placeholder.jpg`` entries — so a frame's size is
    ``frames[frame - start_frame]``; a video lists a single size for all its frames.
    """
    sizes = meta.get("frames")
    if not isinstance(sizes, list) or not sizes:
        raise Permanent("CVAT data meta has no frames list")
    try:
        start = _whole(job.get("start_frame", meta.get("start_frame", 0)))
        stop = _whole(job.get("stop_frame", meta.get("stop_frame", start + len(sizes) - 1)))
        included = meta.get("included_frames")
        if isinstance(included, list) and included:
            numbers = sorted({_whole(n) for n in included})
        else:
            numbers = list(range(start, stop + 1))
        deleted = {_whole(n) for n in meta.get("deleted_frames") or []}
        dims = [(_whole(size["width"]), _whole(size["height"])) for size in sizes]
    except (KeyError, TypeError, ValueError):
        raise Permanent("CVAT job or data meta has malformed frame numbers or sizes") from None
    outside = [n for n in numbers if not start <= n <= stop]
    if outside:
        raise Permanent(f"CVAT job frames {outside[:5]} lie outside its range {start}..{stop}")
    if len(dims) != 1 and len(dims) != stop - start + 1:
        raise Permanent(
            f"CVAT data meta lists {len(dims)} frame sizes for the job's range {start}..{stop} "
            f"({stop - start + 1} frames)"
        )
    frames = [(n, *dims[0 if len(dims) == 1 else n - start]) for n in numbers if n not in deleted]
    if any(w <= 0 or h <= 0 for _, w, h in frames):
        raise Permanent("CVAT data meta has a frame with zero width or height")
    return frames


def _whole(value: Any) -> int:
    """An integer sent as a JSON int or an integral float (``1920.0``); bools and fractions refused."""
    if isinstance(value, bool):
        raise TypeError(value)
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(value)
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise TypeError(value)


def _content_type(key: str) -> str:
    return next((t for ext, t in _CONTENT_TYPES.items() if key.endswith(ext)), "application/octet-stream")
