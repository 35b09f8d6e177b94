"""One finished job read back for export: its frames, their annotations, masks and source images.

Reads ``annotations.json`` (small: RLE strings, no pixels) and hands out each frame's masks and
image only when a format asks for them, so a long video is exported one frame at a time.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from processors.export.catalog import FinishedJob, JobSkipped
from processors.store import Store


@dataclass(frozen=True)
class Category:
    """A job's own category: its id in the job, its name and colour, and whether it has instances."""

    id: int
    name: str
    color: str
    thing: bool


@dataclass(frozen=True)
class Frame:
    """One frame of a job: the item it becomes in the dataset and what is known about it."""

    index: int
    item: str  # dataset item name: ``<vendor>/<project>/<job>/<frame>``, unique by construction
    width: int
    height: int
    image_key: str | None  # store key of the fetched source image, if any
    image_ext: str  # ``.jpg``, ``.png``… as annotations.json names the image ("" if it names none)
    annotations: tuple[Mapping[str, Any], ...]


class JobReader:
    """Frames and masks of one job; raises `JobSkipped` when its outputs are not usable."""

    def __init__(self, store: Store, job: FinishedJob) -> None:
        if not job.has_masks:
            raise JobSkipped("no mask outputs (not a segmentation job)")
        self.store = store
        self.job = job
        coco = _json(store, f"{job.prefix}/annotations.json")
        if not isinstance(coco, dict):
            raise JobSkipped("annotations.json is not a COCO object")
        self.categories = _categories(coco)
        self.frames = _frames(job, coco)

    def semantic(self, frame: Frame) -> npt.NDArray[np.uint16]:
        """The frame's semantic map (job category ids) as uint16."""
        return _png_array(self.store, f"{self.job.prefix}/masks/{frame.index}/semantic.png")

    def instances_png(self, frame: Frame) -> bytes:
        """The frame's ``instances.png`` as stored."""
        return self._mask_png(frame, "instances.png")

    def semantic_png(self, frame: Frame) -> bytes:
        """The frame's ``semantic.png`` as stored."""
        return self._mask_png(frame, "semantic.png")

    def _mask_png(self, frame: Frame, name: str) -> bytes:
        try:
            return self.store.get(f"{self.job.prefix}/masks/{frame.index}/{name}")
        except KeyError:
            raise JobSkipped(f"masks/{frame.index}/{name} is missing") from None

    def instances(self, frame: Frame) -> npt.NDArray[np.uint16]:
        """The frame's instance map (instance numbers, 0 = none) as uint16."""
        return _png_array(self.store, f"{self.job.prefix}/masks/{frame.index}/instances.png")

    def image(self, frame: Frame) -> bytes | None:
        if frame.image_key is None:
            return None
        try:
            return self.store.get(frame.image_key)
        except KeyError:
            return None


def _json(store: Store, key: str) -> Any:
    try:
        return json.loads(store.get(key))
    except KeyError:
        raise JobSkipped(f"{posixpath.basename(key)} is missing") from None
    except ValueError:
        raise JobSkipped(f"{posixpath.basename(key)} is not valid JSON") from None


def _categories(coco: Mapping[str, Any]) -> dict[int, Category]:
    things: set[int] = set()
    for annotation in coco.get("annotations") or ():
        # A vendor instance (its own id, or a drawn CVAT shape) makes the class a "thing".
        if isinstance(annotation, dict) and annotation.get("instance_id") is not None:
            things.add(annotation.get("category_id"))  # type: ignore[arg-type]
    categories: dict[int, Category] = {}
    for entry in coco.get("categories") or ():
        try:
            cid, name = int(entry["id"]), str(entry["name"])
        except (KeyError, TypeError, ValueError):
            raise JobSkipped("annotations.json has a category without id and name") from None
        colour = entry.get("color") if isinstance(entry.get("color"), str) else "#000000"
        categories[cid] = Category(cid, name, colour.lower(), cid in things)
    return categories


def _frames(job: FinishedJob, coco: Mapping[str, Any]) -> tuple[Frame, ...]:
    by_image: dict[Any, list[Mapping[str, Any]]] = {}
    for annotation in coco.get("annotations") or ():
        if isinstance(annotation, dict):
            by_image.setdefault(annotation.get("image_id"), []).append(annotation)
    frames: list[Frame] = []
    for image in coco.get("images") or ():
        try:
            index, width, height = int(image["frame_index"]), int(image["width"]), int(image["height"])
        except (KeyError, TypeError, ValueError):
            raise JobSkipped("annotations.json has an image without frame_index, width and height") from None
        file_name = str(image.get("file_name") or "")
        # Only a file this job's manifest lists is a fetched image (older jobs named the mask here).
        fetched = file_name.startswith("images/") and file_name in job.files
        ext = posixpath.splitext(file_name)[1] if file_name.startswith("images/") else ""
        frames.append(
            Frame(
                index=index,
                item=f"{job.prefix}/{index}",
                width=width,
                height=height,
                image_key=f"{job.prefix}/{file_name}" if fetched else None,
                image_ext=ext,  # "" when the job never had the image: no extension is made up
                annotations=tuple(by_image.get(image.get("id"), ())),
            )
        )
    if not frames:
        raise JobSkipped("annotations.json lists no images")
    return tuple(sorted(frames, key=lambda f: f.index))


def _png_array(store: Store, key: str) -> npt.NDArray[np.uint16]:
    from processors.export.labelpng import LabelPngError, read_label_png

    try:
        data = store.get(key)
    except KeyError:
        raise JobSkipped(f"{key.split('/', 3)[-1]} is missing") from None
    try:
        # Palette index = label id (processors.masks.png writes it so): indices are read, not colours.
        return read_label_png(data)
    except LabelPngError as exc:
        raise JobSkipped(f"{key.split('/', 3)[-1]} is not a readable PNG: {exc}") from None
