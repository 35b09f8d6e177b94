"""COCO panoptic, as panopticapi, CVAT and Datumaro lay it out: ``annotations/panoptic_default.json``,
``annotations/panoptic_default/<item>.png`` and ``images/default/<item>.<ext>``.

A segment is one labelhook instance (one legend colour, or one drawn shape): its panoptic id is the
job's instance number, written in the PNG with panopticapi's encoding ``id = R + 256·G + 256²·B``.
A category is a "thing" when the vendor drew instances of it (``isthing``), else "stuff".
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import numpy.typing as npt

from processors.export.base import DatasetWriter
from processors.export.coco import IMAGES, SUBSET, coco_image, fragment_key, fragments, keep_images_dir
from processors.export.job import JobReader
from processors.export.spool import write_json_index
from processors.export.state import JobEntry
from processors.masks.coco_fields import coco_info
from processors.store import dump_json

INDEX = f"annotations/panoptic_{SUBSET}.json"
MASKS = f"annotations/panoptic_{SUBSET}"


def id_to_rgb(ids: npt.NDArray[np.uint16]) -> npt.NDArray[np.uint8]:
    """panopticapi ``id2rgb``: R = id % 256, G = id // 256 % 256, B = id // 256² (0 for our uint16 ids)."""
    rgb = np.zeros((*ids.shape, 3), dtype=np.uint8)
    rgb[..., 0] = ids & 0xFF
    rgb[..., 1] = ids >> 8
    return rgb


def encode_rgb_png(rgb: npt.NDArray[np.uint8]) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    # Level 1: segment maps are long runs, and a 1080p frame stays in tens of milliseconds.
    Image.fromarray(rgb, "RGB").save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


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
            instances = reader.instances(frame)
            info: list[dict[str, Any]] = []
            keep = np.zeros(int(instances.max(initial=0)) + 1, dtype=np.uint16)
            for annotation in frame.annotations:
                category = categories.get(int(annotation["category_id"]))
                number = int(annotation.get("instance_number") or 0)
                if category is None or not 0 < number < len(keep):
                    continue
                keep[number] = number
                info.append(
                    {
                        "id": number,
                        "category_id": category.id,
                        "iscrowd": 1 if annotation.get("iscrowd") else 0,
                        "area": annotation["area"],
                        "bbox": annotation["bbox"],
                    }
                )
            # Pixels of a segment with no annotation (none expected) become void (id 0), as panopticapi wants.
            self.out.put(f"{MASKS}/{frame.item}.png", encode_rgb_png(id_to_rgb(keep[instances])), "image/png")
            annotations.append(
                {"image_id": image_id, "file_name": f"{frame.item}.png", "segments_info": info}
            )
            segments += len(info)
        fragment = {"images": images, "annotations": annotations}
        self.out.put(fragment_key(self.format, reader.job.prefix), dump_json(fragment), "application/json")
        return JobEntry(reader.job.fingerprint, [f.item for f in reader.frames], image_ids, segments)

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
