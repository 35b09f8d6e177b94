"""CVAT annotations (`{version, tags, shapes, tracks}`) → numbered instances and per-frame instance maps.

Area shapes (rectangle, polygon, ellipse, mask) become instances; tracks are one instance each, drawn
on every frame where `processors.vendors.cvat.tracks.shape_at` says they are visible. Polylines, points,
cuboids, skeletons and tags have no area and are counted in ``skipped``, not drawn. ``outside`` shapes are
skipped. Paint order: ascending ``z_order`` (higher on top); for equal ``z_order`` shapes before
tracks, then ascending CVAT id, then position in the document. Rasterisation rules: `processors.masks.raster`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from processors.errors import Permanent
from processors.masks.raster import (
    RasterError,
    decode_cvat_rle,
    fill_ellipse,
    fill_polygon,
    rectangle_corners,
)
from processors.vendors.cvat.tracks import FrameShape, Keyframe, shape_at

AREA_TYPES = frozenset({"rectangle", "polygon", "ellipse", "mask"})
# Instance numbers live in a uint16 map with 0 = none.
MAX_INSTANCES = 0xFFFF


@dataclass(frozen=True)
class Instance:
    """One drawn CVAT object: a shape, or a track across frames."""

    number: int  # 1-based value in instances.png
    key: str  # "shape-<id>" / "track-<id>"
    label_id: int  # CVAT label id
    attributes: list[Any]
    order: tuple[int, int, int]  # (0 shape / 1 track, CVAT id, position): the tie-break after z_order


@dataclass
class JobShapes:
    """Everything needed to draw any frame of a job."""

    instances: list[Instance] = field(default_factory=list)
    shapes: dict[int, list[tuple[Instance, FrameShape]]] = field(default_factory=dict)
    tracks: list[tuple[Instance, list[Keyframe]]] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)

    def on_frame(self, frame: int) -> list[tuple[Instance, FrameShape]]:
        """The visible shapes of ``frame`` in paint order (bottom first)."""
        items = list(self.shapes.get(frame, ()))
        for instance, keyframes in self.tracks:
            shape = shape_at(keyframes, frame)
            if shape is not None and shape.type in AREA_TYPES:
                items.append((instance, shape))
        return sorted(items, key=lambda item: (item[1].z_order, item[0].order))


def parse_annotations(document: Any) -> JobShapes:
    """Read a CVAT annotations document; `Permanent` naming the first malformed shape or track."""
    if not isinstance(document, Mapping):
        raise Permanent("CVAT annotations are not a JSON object")
    shapes, tracks, tags = (document.get(k) or [] for k in ("shapes", "tracks", "tags"))
    if not all(isinstance(v, list) for v in (shapes, tracks, tags)):
        raise Permanent("CVAT annotations: shapes, tracks and tags must be lists")
    job = JobShapes()
    if tags:
        job.skipped["tag"] = len(tags)
    for position, raw in enumerate(shapes):
        where = f"CVAT shape #{position}"
        record = _mapping(raw, where)
        kind = str(record.get("type", ""))
        if kind not in AREA_TYPES:
            job.skipped[kind or "unknown"] = job.skipped.get(kind or "unknown", 0) + 1
            continue
        if _flag(record.get("outside")):
            job.skipped["outside"] = job.skipped.get("outside", 0) + 1
            continue
        frame = _int(record.get("frame"), f"{where} frame")
        instance = _new_instance(job, record, "shape", (0, _id(record, position), position), where)
        shape = FrameShape(
            kind,
            _points(record.get("points"), where),
            _float(record.get("rotation", 0), f"{where} rotation"),
            _int(record.get("z_order", 0), f"{where} z_order"),
        )
        job.shapes.setdefault(frame, []).append((instance, shape))
    for position, raw in enumerate(tracks):
        where = f"CVAT track #{position}"
        record = _mapping(raw, where)
        keyframes = _keyframes(record, where)
        if not any(k.type in AREA_TYPES for k in keyframes):
            kind = keyframes[0].type if keyframes else str(record.get("type", "")) or "unknown"
            job.skipped[f"track:{kind}"] = job.skipped.get(f"track:{kind}", 0) + 1
            continue
        instance = _new_instance(job, record, "track", (1, _id(record, position), position), where)
        job.tracks.append((instance, keyframes))
    job.skipped = dict(sorted(job.skipped.items()))
    return job


def render(items: Iterable[tuple[Instance, FrameShape]], width: int, height: int) -> npt.NDArray[np.uint16]:
    """Paint ``items`` (already in paint order) into a uint16 instance map; later items cover earlier."""
    instances = np.zeros((height, width), dtype=np.uint16)
    for instance, shape in items:
        try:
            mask = draw(shape, width, height)
        except RasterError as exc:
            raise Permanent(f"CVAT {instance.key}: {exc}") from exc
        instances[mask] = instance.number
    return instances


def draw(shape: FrameShape, width: int, height: int) -> npt.NDArray[np.bool_]:
    """The pixels of one area shape (`processors.masks.raster` rules)."""
    p = shape.points
    if shape.type == "mask":
        return decode_cvat_rle(p, width, height)
    if shape.type == "rectangle":
        if len(p) != 4:
            raise RasterError(f"rectangle needs 4 values, got {len(p)}")
        return fill_polygon(rectangle_corners(p[0], p[1], p[2], p[3], shape.rotation), width, height)
    if shape.type == "ellipse":
        if len(p) != 4:
            raise RasterError(f"ellipse needs 4 values (cx, cy, right, top), got {len(p)}")
        # CVAT stores the centre and the (right, top) point of the ellipse's box.
        return fill_ellipse(p[0], p[1], p[2] - p[0], p[1] - p[3], shape.rotation, width, height)
    if shape.type == "polygon":
        if len(p) % 2:
            raise RasterError("polygon has an odd number of coordinates")
        return fill_polygon(list(zip(p[0::2], p[1::2], strict=True)), width, height)
    raise RasterError(f"shape type {shape.type!r} has no area")


def _new_instance(
    job: JobShapes, record: Mapping[str, Any], kind: str, order: tuple[int, int, int], where: str
) -> Instance:
    if len(job.instances) >= MAX_INSTANCES:
        raise Permanent(f"CVAT job has more than {MAX_INSTANCES} area annotations; not supported")
    attributes = record.get("attributes") or []
    instance = Instance(
        number=len(job.instances) + 1,
        key=f"{kind}-{order[1]}" if record.get("id") is not None else f"{kind}-#{order[2]}",
        label_id=_int(record.get("label_id"), f"{where} label_id"),
        attributes=attributes if isinstance(attributes, list) else [],
        order=order,
    )
    job.instances.append(instance)
    return instance


def _keyframes(record: Mapping[str, Any], where: str) -> list[Keyframe]:
    raw = record.get("shapes")
    if not isinstance(raw, list):
        raise Permanent(f"{where} has no shapes list")
    by_frame: dict[int, Keyframe] = {}
    for index, item in enumerate(raw):
        at = f"{where} keyframe #{index}"
        shape = _mapping(item, at)
        frame = _int(shape.get("frame"), f"{at} frame")
        by_frame[frame] = Keyframe(
            frame=frame,
            type=str(shape.get("type") or record.get("type") or ""),
            points=_points(shape.get("points"), at),
            rotation=_float(shape.get("rotation", 0), f"{at} rotation"),
            z_order=_int(shape.get("z_order", 0), f"{at} z_order"),
            outside=_flag(shape.get("outside")),
        )
    return [by_frame[f] for f in sorted(by_frame)]


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise Permanent(f"{where} is not an object")
    return value


def _id(record: Mapping[str, Any], position: int) -> int:
    value = record.get("id")
    if value is None:
        return position
    return _int(value, "CVAT id")


def _points(value: Any, where: str) -> tuple[float, ...]:
    if not isinstance(value, Sequence) or isinstance(value, str | bytes):
        raise Permanent(f"{where} points is not a list")
    return tuple(_float(v, f"{where} points") for v in value)


def _float(value: Any, where: str) -> float:
    try:
        number = float(value if value is not None else 0)
    except (TypeError, ValueError):
        raise Permanent(f"{where} is not a number: {value!r}") from None
    if not math.isfinite(number):
        raise Permanent(f"{where} is not finite")
    return number


def _int(value: Any, where: str) -> int:
    number = _float(value, where)
    if number != int(number):
        raise Permanent(f"{where} is not an integer: {value!r}")
    return int(number)


def _flag(value: Any) -> bool:
    """CVAT booleans, liberally: true/false, 1/0, "true"/"false"."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)
