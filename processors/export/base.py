"""`DatasetWriter`: the interface of one export format, and what every format shares.

A writer adds jobs one at a time (writing that job's files into the dataset at once, so memory
stays at one frame) and, at the end, writes the dataset's index files from what the state records.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from processors.export.job import Frame, JobReader
from processors.export.state import ExportCategory, ExportState, JobEntry
from processors.store import Store, dump_json

_IMAGE_TYPES = {
    ".jpg": "image/jpeg",
    ".png": "image/png",
    ".bmp": "image/bmp",
    ".tif": "image/tiff",
    ".webp": "image/webp",
}


class DatasetWriter(ABC):
    """Writes one format into ``out``; ``state`` carries categories and ids between runs."""

    format: ClassVar[str]

    def __init__(self, out: Store, state: ExportState) -> None:
        self.out = out
        self.state = state

    @abstractmethod
    def add_job(self, reader: JobReader) -> JobEntry:
        """Write this job's per-item files (images, masks, fragments) and say what it became."""

    @abstractmethod
    def finish(self) -> None:
        """Write the index files (annotation JSON, image lists, labelmaps) for every job in the state."""

    # -- shared helpers -----------------------------------------------------------------------

    def category_map(self, reader: JobReader) -> dict[int, ExportCategory]:
        """Job category id → dataset category, unified by class name."""
        return {
            cid: self.state.category(category.name, category.color, thing=category.thing)
            for cid, category in sorted(reader.categories.items())
        }

    def copy_image(self, reader: JobReader, frame: Frame, key: str) -> bool:
        """Copy the frame's source image to ``key``; False when the job has none."""
        data = reader.image(frame)
        if data is None:
            return False
        self.out.put(key, data, _IMAGE_TYPES.get(frame.image_ext, "application/octet-stream"))
        return True

    def write_labelmap_json(self) -> None:
        """``labelmap.json``: the dataset's categories (same shape as a job's, id 0 = background)."""
        entries = [{"id": 0, "name": "unlabeled", "color": "#000000", "isthing": False}]
        entries += [c.as_json() for c in self.state.categories]
        self.out.put("labelmap.json", dump_json(entries), "application/json")
