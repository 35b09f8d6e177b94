"""CVAT "Segmentation mask 1.1" (Pascal VOC segmentation, as CVAT and Datumaro read it):
``labelmap.txt``, ``ImageSets/Segmentation/default.txt``, ``SegmentationClass/<item>.png``,
``SegmentationObject/<item>.png`` and ``JPEGImages/<item>.<ext>``.

Class masks are palette PNGs whose index is the line of ``labelmap.txt`` (0 = background) and whose
palette is the labelmap's colours, so readers of either the index or the colour agree. Object masks
number a frame's instances 1…n with the standard VOC palette, as Datumaro's VOC colormap expects.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from processors.export.base import DatasetWriter
from processors.export.catalog import JobSkipped
from processors.export.coco import SUBSET
from processors.export.job import Frame, JobReader
from processors.export.labelpng import grey16_as_palette, remapped_palette, with_palette
from processors.export.state import BACKGROUND, JobEntry
from processors.masks.png import encode_palette

LABELMAP = "labelmap.txt"
IMAGE_SET = f"ImageSets/Segmentation/{SUBSET}.txt"
CLASS_DIR = "SegmentationClass"
OBJECT_DIR = "SegmentationObject"
IMAGE_DIR = "JPEGImages"
#: One palette index per class or instance: VOC masks are 8-bit.
MAX_INDEX = 255


def voc_colormap(size: int = 256) -> list[tuple[int, int, int]]:
    """The Pascal VOC palette (bit-interleaved), as VOC devkit, CVAT and Datumaro generate it."""
    colours = []
    for index in range(size):
        r = g = b = 0
        value = index
        for shift in range(7, -1, -1):
            r |= (value & 1) << shift
            g |= ((value >> 1) & 1) << shift
            b |= ((value >> 2) & 1) << shift
            value >>= 3
        colours.append((r, g, b))
    return colours


_INSTANCE_PALETTE = voc_colormap()


def voc_label_name(name: str) -> str:
    """A class name as one ``labelmap.txt`` field: ``:`` separates fields and a line ends a record."""
    cleaned = "".join("_" if c in ":\r\n" else c for c in name).strip() or "_"
    return f"{cleaned}_" if cleaned == BACKGROUND else cleaned


class VocWriter(DatasetWriter):
    """``--format voc``."""

    format = "voc"

    def add_job(self, reader: JobReader) -> JobEntry:
        categories = self.category_map(reader)
        if len(self.state.categories) > MAX_INDEX:
            raise JobSkipped(
                f"the dataset would have more than {MAX_INDEX} classes, VOC masks hold {MAX_INDEX}"
            )
        # Job label id → VOC class index (= dataset category id; 0 stays background).
        lut = np.zeros(max(categories, default=0) + 1, dtype=np.uint8)
        for job_id, category in categories.items():
            lut[job_id] = category.id
        identity = bool((lut == np.arange(len(lut))).all())
        annotations = 0
        for frame in reader.frames:
            numbers = sorted(
                {int(a["instance_number"]) for a in frame.annotations if a.get("instance_number")}
            )
            if len(numbers) > MAX_INDEX:
                raise JobSkipped(
                    f"frame {frame.index} has {len(numbers)} instances, VOC masks hold {MAX_INDEX}"
                )
            self.out.put(
                f"{CLASS_DIR}/{frame.item}.png", self._class_png(reader, frame, lut, identity), "image/png"
            )
            self.out.put(f"{OBJECT_DIR}/{frame.item}.png", _object_png(reader, frame, numbers), "image/png")
            self.copy_image(reader, frame, f"{IMAGE_DIR}/{frame.item}{frame.image_ext}")
            annotations += len(numbers)
        return JobEntry(reader.job.fingerprint, [f.item for f in reader.frames], [], annotations)

    def _class_png(
        self, reader: JobReader, frame: Frame, lut: npt.NDArray[np.uint8], identity: bool
    ) -> bytes:
        """The class mask: the job's own PNG with the dataset's colours when its label ids already are
        the dataset's (no pixel touched), else its ids mapped through ``lut`` (as bytes when the PNG
        is laid out as labelhook writes it, else decoded) and encoded again."""
        palette = self.palette()
        png = reader.semantic_png(frame)
        fast = with_palette(png, palette) if identity else remapped_palette(png, lut.tolist(), palette)
        if fast is not None:
            return fast
        semantic = reader.semantic(frame)
        if int(semantic.max(initial=0)) >= len(lut):
            raise JobSkipped(f"frame {frame.index}: semantic.png has a label id the job does not list")
        return encode_palette(lut[semantic], palette)

    def palette(self) -> list[tuple[int, int, int]]:
        return [(0, 0, 0)] + [_rgb(c.color) for c in self.state.categories]

    def finish(self) -> None:
        lines = ["# label:color_rgb:parts:actions", f"{BACKGROUND}:0,0,0::"]
        for category in self.state.categories:
            r, g, b = _rgb(category.color)
            lines.append(f"{voc_label_name(category.name)}:{r},{g},{b}::")
        self.out.put(LABELMAP, ("\n".join(lines) + "\n").encode("utf-8"), "text/plain")
        items = sorted(item for entry in self.state.jobs.values() for item in entry.items)
        self.out.put(IMAGE_SET, "".join(f"{item}\n" for item in items).encode("utf-8"), "text/plain")
        self.write_labelmap_json()


def _object_png(reader: JobReader, frame: Frame, numbers: list[int]) -> bytes:
    """The object mask. Instance numbers below 256 stay as they are (VOC readers take each value as
    one object), re-wrapped without decoding when the PNG allows; larger ones are renumbered 1…n."""
    if not numbers or numbers[-1] <= MAX_INDEX:
        rewrapped = grey16_as_palette(reader.instances_png(frame), _INSTANCE_PALETTE)
        if rewrapped is not None:
            return rewrapped
        numbers = list(range(1, MAX_INDEX + 1))  # identity for every value a VOC mask can hold
    return encode_palette(_renumber(reader.instances(frame), numbers), _INSTANCE_PALETTE)


def _renumber(instances: npt.NDArray[np.uint16], numbers: list[int]) -> npt.NDArray[np.uint8]:
    """Job instance numbers → 1…n in this frame (0 = none); numbers not listed become 0."""
    table = np.zeros(int(instances.max(initial=0)) + 1, dtype=np.uint8)
    for index, number in enumerate(numbers, start=1):
        if number < len(table):
            table[number] = index
    result: npt.NDArray[np.uint8] = table[instances]
    return result


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)
