"""COCO instances, as CVAT and Datumaro lay it out: ``annotations/instances_default.json`` +
``images/default/<item>.<ext>``; RLE segmentations taken over from each job unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from processors.export.base import DatasetWriter
from processors.export.job import JobReader
from processors.export.spool import write_json_index
from processors.export.state import JobEntry
from processors.masks.coco_fields import coco_attributes, coco_info
from processors.store import Store, dump_json

SUBSET = "default"
INDEX = f"annotations/instances_{SUBSET}.json"
IMAGES = f"images/{SUBSET}"


def fragment_key(format_name: str, prefix: str) -> str:
    return f".labelhook/{format_name}/{prefix}.json"


class CocoWriter(DatasetWriter):
    """``--format coco``."""

    format = "coco"

    def add_job(self, reader: JobReader) -> JobEntry:
        categories = self.category_map(reader)
        image_ids = self.state.image_ids(len(reader.frames))
        total = sum(len(frame.annotations) for frame in reader.frames)
        next_id = self.state.annotation_ids(total)
        images: list[dict[str, Any]] = []
        annotations: list[dict[str, Any]] = []
        for frame, image_id in zip(reader.frames, image_ids, strict=True):
            file_name = f"{frame.item}{frame.image_ext}"
            self.copy_image(reader, frame, f"{IMAGES}/{file_name}")
            images.append(coco_image(image_id, file_name, frame.width, frame.height))
            for annotation in frame.annotations:
                category = categories.get(int(annotation["category_id"]))
                if category is None:
                    continue
                annotations.append(
                    {
                        "id": next_id,
                        "image_id": image_id,
                        "category_id": category.id,
                        "iscrowd": 1 if annotation.get("iscrowd") else 0,
                        "segmentation": annotation["segmentation"],
                        "area": annotation["area"],
                        "bbox": annotation["bbox"],
                        "attributes": coco_attributes(annotation.get("attributes")),
                    }
                )
                next_id += 1
        fragment = {"images": images, "annotations": annotations}
        self.out.put(fragment_key(self.format, reader.job.prefix), dump_json(fragment), "application/json")
        return JobEntry(reader.job.fingerprint, [f.item for f in reader.frames], image_ids, len(annotations))

    def finish(self) -> None:
        head = {
            "info": coco_info("labelhook export: every finished job"),
            "licenses": [],
            "categories": [
                {"id": c.id, "name": c.name, "supercategory": "", "color": c.color}
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


def keep_images_dir(out: Store) -> None:
    """Datumaro refuses a COCO dataset without ``images/``, even when no job had a source image
    (FETCH_IMAGES=0): an empty marker keeps the folder in a local copy of an S3 dataset too."""
    out.put(f"{IMAGES}/.keep", b"", "text/plain")


def coco_image(image_id: int, file_name: str, width: int, height: int) -> dict[str, Any]:
    return {"id": image_id, "file_name": file_name, "width": width, "height": height}


def fragments(out: Store, format_name: str, jobs: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Each exported job's fragment, in job order (one in memory at a time)."""
    for prefix in sorted(jobs):
        fragment: dict[str, Any] = json.loads(out.get(fragment_key(format_name, prefix)))
        yield fragment
