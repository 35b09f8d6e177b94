"""Label Studio: a webhook hint → the task's current annotation from the API → the standard output set.

For each task named by the delivery: ``GET /api/tasks/{id}/annotations/`` and ``GET
/api/projects/{id}/`` (its ``label_config`` gives stable class ids and colours), then the annotation
Label Studio's own converter exports — the most recently created one that was not skipped — is
rasterised (`processors.vendors.labelstudio.regions`) into ``masks/<frame>/…``, ``labelmap.json`` and
``annotations.json``; ``result.json`` holds the annotations as fetched. Each image of the task (the
results' ``to_name``, in name order) is one frame. A bulk event naming several tasks writes one output
set per task, each with its own manifest, and an index (``tasks.json``) under its own prefix.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from processors.delivery import path_segment
from processors.errors import Permanent
from processors.masks.decode import FrameMasks, measure_instances
from processors.masks.labelmap import Labelmap, Segment
from processors.masks.segmentation import write_frame_masks
from processors.source_images import not_fetched
from processors.vendors.base import Processor
from processors.vendors.labelstudio.api import LabelStudioClient
from processors.vendors.labelstudio.images import TaskImages
from processors.vendors.labelstudio.labels import build_classes, config_labels, image_fields
from processors.vendors.labelstudio.options import LabelStudioOptions
from processors.vendors.labelstudio.regions import ParsedResult, parse_result, render

if TYPE_CHECKING:
    from processors.delivery import Delivery
    from processors.store import JobWriter

_CONTENT_TYPES = {".png": "image/png", ".json": "application/json"}


class LabelStudioProcessor(Processor):
    """Processes annotation events of one Label Studio server."""

    callback_token_in_url = True

    def client(self) -> LabelStudioClient:
        if not (self.source.api_url and self.source.api_key):
            raise Permanent("Label Studio API_URL and API_KEY must be configured")
        options = LabelStudioOptions.of(self.source)
        return LabelStudioClient(
            self.fetcher, self.source.api_url, self.source.api_key.reveal(), auth=options.auth.strip().lower()
        )

    def process(self, delivery: Delivery, out: JobWriter) -> dict[str, Any]:
        out.write("callback.json", delivery.body, "application/json")
        tasks = delivery.meta.get("tasks")
        if not isinstance(tasks, list):
            return self.process_task(delivery.job_id, delivery.project, out)
        return self._fan_out(delivery, [str(t) for t in tasks], out)

    def process_task(self, task_id: str, project_hint: str, out: JobWriter) -> dict[str, Any]:
        """Write one task's output set through ``out``; return its manifest fields."""
        client = self.client()
        options = LabelStudioOptions.of(self.source)
        annotations = client.task_annotations(task_id)
        out.write_json("result.json", annotations)
        chosen = exported_annotation(annotations)
        if chosen is None:
            raise Permanent(
                f"Label Studio task {task_id} has no annotation that was not skipped "
                f"({len(annotations)} in all): nothing to build"
            )
        project_id = str(chosen.get("project") or project_hint)
        project = client.project(project_id)
        label_config = _str(project.get("label_config"))
        task_images = TaskImages(client, task_id, label_config)
        try:
            parsed = parse_result(chosen.get("result"), task_images.size)
        except Permanent as exc:
            raise Permanent(f"Label Studio task {task_id}: {exc.reason}") from exc
        configured, problems = config_labels(label_config)
        labelmap = build_labelmap(configured, parsed)
        if not parsed.sizes:
            # Nothing drawn (an empty annotation, or only choices/key points): every image of the config
            # is a frame with no labels, sized from its file; a project with no image (text, audio)
            # has no masks to write and its output set is the annotation itself.
            for image in image_fields(label_config):
                parsed.sizes[image] = task_images.size(image, None)
            if not parsed.sizes:
                return {
                    "labelstudio": {
                        **self._about(task_id, project_id, chosen, annotations, parsed),
                        "frames": {},
                        "note": "no image in the project: no masks",
                    }
                }
        frames = sorted(parsed.sizes)
        for image in frames:
            width, height = parsed.sizes[image]
            if width * height > self.settings.max_pixels:
                raise Permanent(
                    f"image {image!r} is {width}x{height} pixels, "
                    f"over the limit of {self.settings.max_pixels}"
                )
        numbered = list(enumerate(parsed.regions, start=1))

        def rendered() -> Iterator[tuple[int, FrameMasks]]:
            for index, image in enumerate(frames):
                width, height = parsed.sizes[image]
                on_image = [(n, r) for n, r in numbered if r.image == image]
                instances = render(on_image, width, height, min_alpha=options.brush_min_alpha)
                yield index, measure_instances(instances, labelmap)

        if self.source.fetch_images:
            images = {index: task_images.store(index, image, out) for index, image in enumerate(frames)}
        else:
            images = {index: not_fetched(index, "FETCH_IMAGES=0") for index in range(len(frames))}
        summary = write_frame_masks(
            labelmap, rendered(), lambda key, data: out.write(key, data, _type(key)), images=images
        )
        return {
            "labelstudio": {
                **self._about(task_id, project_id, chosen, annotations, parsed),
                "frames": {str(i): image for i, image in enumerate(frames)},
                "label_config_problems": problems,
                "sizes_read_from_images": task_images.sized,
            },
            "segmentation": summary.as_json(),
        }

    @staticmethod
    def _about(
        task_id: str, project_id: str, chosen: dict[str, Any], annotations: list[Any], parsed: ParsedResult
    ) -> dict[str, Any]:
        return {
            "task": task_id,
            "project": project_id,
            "annotation": chosen.get("id"),
            "updated_at": chosen.get("updated_at"),
            "completed_by": chosen.get("completed_by"),
            "annotations_on_task": len(annotations),
            "regions": len(parsed.regions),
            "skipped": parsed.skipped,
            "unlabelled_regions": parsed.unlabelled,
        }

    def _fan_out(self, delivery: Delivery, tasks: list[str], out: JobWriter) -> dict[str, Any]:
        """A bulk event: one output set per task under its own prefix, each finished with a manifest."""
        from processors.jobs import JobBook
        from processors.store import JobWriter
        from processors.version import VERSION

        book = JobBook(out.store)
        written = []
        for task_id in tasks:
            prefix = "/".join(path_segment(p) for p in (delivery.vendor, delivery.project, task_id))
            writer = JobWriter(out.store, prefix)
            writer.write("callback.json", delivery.body, "application/json")
            extra = self.process_task(task_id, delivery.project, writer)
            writer.finish(
                {
                    "vendor": delivery.vendor,
                    "source": delivery.source,
                    "project": delivery.project,
                    "job": task_id,
                    "state": delivery.state,
                    "delivery_id": delivery.id,
                    "dedupe_key": delivery.dedupe_key,
                    "timings": {"received_at": delivery.received_at},
                    "labelhook_version": VERSION,
                    **extra,
                }
            )
            output = out.store.describe().rstrip("/") + "/" + prefix
            book.note(
                source=delivery.source,
                vendor=delivery.vendor,
                job_id=task_id,
                project=delivery.project,
                state="completed",
                vendor_state=delivery.state,
                delivery_id=delivery.id,
                output=output,
                at=delivery.received_at,
            )
            written.append({"task": task_id, "output": prefix})
        out.write_json("tasks.json", written)
        return {"labelstudio": {"bulk": True, "tasks": written}}


def exported_annotation(annotations: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The annotation Label Studio's converter exports: the latest created one not skipped.

    (label-studio-sdk ``converter.py``: "get last not skipped completion", sorted by ``created_at``.)
    Ties break on the higher id, so the choice is deterministic.
    """
    usable = [a for a in annotations if not (a.get("was_cancelled") or a.get("skipped"))]
    if not usable:
        return None
    return max(usable, key=lambda a: (str(a.get("created_at") or ""), _id_order(a.get("id"))))


def build_labelmap(configured: list[tuple[str, str | None]], parsed: ParsedResult) -> Labelmap:
    """Classes from the project config (plus labels only the annotation uses); one segment per region."""
    classes, invalid = build_classes(configured, (r.label for r in parsed.regions))
    by_name = {entry.name: entry for entry in classes[1:]}
    segments = tuple(
        Segment(
            number=number,
            color=by_name[region.label].color,
            name=region.label,
            label_id=by_name[region.label].id,
            instance_id=region.key,
            attributes=region.attributes,
        )
        for number, region in enumerate(parsed.regions, start=1)
    )
    return Labelmap(tuple(classes), segments, tuple(invalid))


def _id_order(value: Any) -> tuple[int, str]:
    if isinstance(value, int) and not isinstance(value, bool):
        return (value, "")
    return (-1, str(value))


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _type(key: str) -> str:
    return next((t for ext, t in _CONTENT_TYPES.items() if key.endswith(ext)), "application/octet-stream")
