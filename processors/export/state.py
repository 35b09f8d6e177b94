"""What an exported dataset already holds: its categories, id counters and jobs (for incremental runs).

Kept in the dataset itself (``.labelhook/export-<format>.json``), so re-running `labelhook export`
into the same folder or bucket adds the jobs that arrived since, re-exports the ones reprocessed
since, and leaves everything else, ids included, exactly as it was. Categories are unified by class
name across jobs and vendors; a category keeps its id for the life of the dataset, new ones are
appended, and each gets a colour no other category has (VOC masks map colours back to classes).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from processors.store import Store, dump_json

STATE_VERSION = 1
BACKGROUND = "background"


def state_key(format_name: str) -> str:
    return f".labelhook/export-{format_name}.json"


class StateError(Exception):
    """The output holds a dataset this export cannot continue (another format, a newer version)."""


@dataclass
class ExportCategory:
    id: int
    name: str
    color: str  # #rrggbb, unique within the dataset
    thing: bool = False

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "color": self.color, "isthing": self.thing}


@dataclass
class JobEntry:
    """One exported job: the manifest fingerprint it was exported from and what it became."""

    fingerprint: str
    items: list[str]
    image_ids: list[int]
    annotations: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "items": self.items,
            "image_ids": self.image_ids,
            "annotations": self.annotations,
        }


@dataclass
class ExportState:
    format: str
    categories: list[ExportCategory] = field(default_factory=list)
    jobs: dict[str, JobEntry] = field(default_factory=dict)
    next_image_id: int = 1
    next_annotation_id: int = 1

    # -- categories ---------------------------------------------------------------------------

    def category(self, name: str, color: str, *, thing: bool = False) -> ExportCategory:
        """The dataset category of a class name, created (with a unique colour) on first sight."""
        for category in self.categories:
            if category.name == name:
                category.thing = category.thing or thing
                return category
        used = {c.color for c in self.categories} | {"#000000"}
        colour = color if color not in used else _free_colour(name, used)
        created = ExportCategory(len(self.categories) + 1, name, colour, thing)
        self.categories.append(created)
        return created

    # -- ids ----------------------------------------------------------------------------------

    def image_ids(self, count: int) -> list[int]:
        first = self.next_image_id
        self.next_image_id += count
        return list(range(first, first + count))

    def annotation_ids(self, count: int) -> int:
        """The first of ``count`` fresh annotation ids."""
        first = self.next_annotation_id
        self.next_annotation_id += count
        return first

    # -- persistence --------------------------------------------------------------------------

    def as_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "format": self.format,
            "next_image_id": self.next_image_id,
            "next_annotation_id": self.next_annotation_id,
            "categories": [c.as_json() for c in self.categories],
            "jobs": {prefix: entry.as_json() for prefix, entry in sorted(self.jobs.items())},
        }

    def save(self, out: Store) -> None:
        out.put(state_key(self.format), dump_json(self.as_json()), "application/json")

    @classmethod
    def load(cls, out: Store, format_name: str) -> ExportState:
        try:
            raw = out.get(state_key(format_name))
        except KeyError:
            return cls(format_name)
        try:
            data = json.loads(raw)
            if data.get("version") != STATE_VERSION or data.get("format") != format_name:
                raise StateError(
                    f"{state_key(format_name)} is version {data.get('version')!r} of "
                    f"{data.get('format')!r}; this labelhook writes version {STATE_VERSION}"
                )
            return cls(
                format=format_name,
                categories=[
                    ExportCategory(int(c["id"]), str(c["name"]), str(c["color"]), bool(c.get("isthing")))
                    for c in data["categories"]
                ],
                jobs={
                    str(prefix): JobEntry(
                        str(e["fingerprint"]),
                        [str(i) for i in e["items"]],
                        [int(i) for i in e["image_ids"]],
                        int(e.get("annotations", 0)),
                    )
                    for prefix, e in data["jobs"].items()
                },
                next_image_id=int(data["next_image_id"]),
                next_annotation_id=int(data["next_annotation_id"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StateError(
                f"{state_key(format_name)} is damaged ({exc}); export into a new folder"
            ) from exc


def _free_colour(name: str, used: set[str]) -> str:
    """A colour derived from the name (stable), stepped until no other category has it."""
    seed = int.from_bytes(hashlib.sha256(name.encode()).digest()[:3], "big")
    for step in range(1 << 24):
        colour = f"#{(seed + step * 0x9E3779) & 0xFFFFFF:06x}"
        if colour not in used:
            return colour
    raise StateError("no free colour left for a new category")
