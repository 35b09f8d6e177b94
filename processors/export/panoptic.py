"""COCO panoptic, as panopticapi, CVAT and Datumaro lay it out: ``annotations/panoptic_default.json``,
``annotations/panoptic_default/<item>.png`` and ``images/default/<item>.<ext>``.

A segment is one labelhook instance (one legend colour, or one drawn shape): its panoptic id is the
job's instance number, written in the PNG with panopticapi's encoding ``id = R + 256·G + 256²·B``.
A category is a "thing" when the vendor drew instances of it (``isthing``), else "stuff".
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from processors.export.base import DatasetWriter
from processors.export.coco import IMAGES, SUBSET, coco_image, fragment_key, fragments, keep_images_dir
from processors.export.job import Frame, JobReader
from processors.export.labelpng import encode_rgb, grey16_to_panoptic_rgb
from processors.export.spool import write_json_index
from processors.export.state import JobEntry
from processors.masks.coco_fields import coco_info
from processors.store import dump_json

INDEX = f"annotations/panoptic_{SUBSET}.json"
MASKS = f"annotations/panoptic_{SUBSET}"
#: labelhook's segment ids are instance numbers, at most 16 bits (instances.png is 16-bit grey).
MAX_SEGMENT_ID = 0xFFFF


def id_to_rgb(ids: npt.NDArray[np.uint16]) -> npt.NDArray[np.uint8]:
    """panopticapi ``id2rgb``: R = id % 256, G = id // 256 % 256, B = id // 256² (0 for our uint16 ids)."""
    rgb = np.zeros((*ids.shape, 3), dtype=np.uint8)
    rgb[..., 0] = ids & 0xFF
    rgb[..., 1] = ids >> 8
    return rgb


class PanopticWriter(DatasetWriter):
    """``--format coco-panoptic``."""

    format = "coco-panoptic"

    def add_job(self, reader: JobReader) -> JobEntry:
        categories = self.category_map(reader)
        image_ids = self.state.image_ids(len(reader.frames))
        images: list[dict[str, Any]] = []
        annotations: list[dict[str, Any]] = []
        segments = 0
        for frame, image_id in zip(reader.frames, image_ids, strict=True):
            file_name = f"{frame.item}{frame.image_ext}"
            self.copy_image(reader, frame, f"{IMAGES}/{file_name}")
            images.append(coco_image(image_id, file_name, frame.width, frame.height))
            info: list[dict[str, Any]] = []
            for annotation in frame.annotations:
                category = categories.get(int(annotation["category_id"]))
                number = int(annotation.get("instance_number") or 0)
                if category is None or not 0 < number <= MAX_SEGMENT_ID:
                    continue
                info.append(
                    {
                        "id": number,
                        "category_id": category.id,
                        "iscrowd": 1 if annotation.get("iscrowd") else 0,
                        "area": annotation["area"],
                        "bbox": annotation["bbox"],
                    }
                )
            self.out.put(f"{MASKS}/{frame.item}.png", self._segment_png(reader, frame, info), "image/png")
            annotations.append(
                {"image_id": image_id, "file_name": f"{frame.item}.png", "segments_info": info}
            )
            segments += len(info)
        fragment = {"images": images, "annotations": annotations}
        self.out.put(fragment_key(self.format, reader.job.prefix), dump_json(fragment), "application/json")
        return JobEntry(reader.job.fingerprint, [f.item for f in reader.frames], image_ids, segments)

    def _segment_png(self, reader: JobReader, frame: Frame, info: list[dict[str, Any]]) -> bytes:
        """The frame's panoptic PNG. Every segment with pixels has an annotation (the job's
        annotations.json is written from the same map), so ids carry over unchanged."""
        raw = reader.instances_png(frame)
        fast = grey16_to_panoptic_rgb(raw)
        if fast is not None:
            return fast
        instances = reader.instances(frame)
        # Anything without an annotation becomes void (id 0), as panopticapi expects.
        keep = np.zeros(int(instances.max(initial=0)) + 1, dtype=np.uint16)
        for segment in info:
            if segment["id"] < len(keep):
                keep[segment["id"]] = segment["id"]
        return encode_rgb(id_to_rgb(keep[instances]))

    def finish(self) -> None:
        head = {
            "info": coco_info("labelhook export: every finished job"),
            "licenses": [],
            "categories": [
                {
                    "id": c.id,
                    "name": c.name,
                    "supercategory": "",
                    "isthing": 1 if c.thing else 0,
                    "color": [int(c.color[i : i + 2], 16) for i in (1, 3, 5)],
                }
                for c in self.state.categories
            ],
        }
        write_json_index(
            self.out,
            INDEX,
            head,
            ("images", "annotations"),
            fragments(self.out, self.format, self.state.jobs),
        )
        self.write_labelmap_json()
        keep_images_dir(self.out)
