"""Labelbox export v2 rows → one label's frames, objects and labelmap; mask PNGs → instance maps (pure).

A row is ``{data_row, media_attributes, projects: {<project id>: {labels: [...]}}}``; a label's
``annotations`` holds ``objects`` (a list, for images) or ``frames`` (``{"<n>": {objects: {<feature
id>: …}}}``, for videos). What is drawn, per frame, in this order (later on top):

1. ``composite_mask: {url, color_rgb}`` — one PNG holds every mask instance of the label (per frame
   for videos); an instance is the pixels whose RGB equals its ``color_rgb`` (unique within the
   composite). Black and transparent pixels are background; other colours are counted as unknown.
2. ``mask: {url}`` — the legacy one-instance mask (no colour): its non-black opaque pixels.
3. ``bounding_box: {top, left, height, width}`` and ``polygon: [{x, y}…]`` in pixels, rasterised
   with `processors.masks.raster` (pixel centres), in export order.

Other kinds (polylines, points, classifications, text) are counted in ``skipped``. Classes are the
objects' ``feature_schema_id`` (named by ``name``), segments their ``feature_id`` — the same number
in every frame of a video.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from processors.errors import Permanent
from processors.masks.labelmap import MAX_SEGMENTS, LabelClass, Labelmap, Segment
from processors.masks.raster import fill_polygon

MASK_KINDS = ("composite_mask", "mask")


@dataclass(frozen=True)
class LabelObject:
    """One drawable object of one frame."""

    number: int  # its segment number
    kind: str  # "composite_mask" | "mask" | "bounding_box" | "polygon"
    url: str | None = None
    color: int | None = None  # 0xBBGGRR, as an RGBA uint32 view reads R as the low byte
    points: tuple[tuple[float, float], ...] = ()


@dataclass
class LabelFrames:
    """A label's drawable objects by frame, the job's labelmap, and what was left out."""

    labelmap: Labelmap
    frames: dict[int, list[LabelObject]]
    size: tuple[int, int] | None  # (width, height) from media_attributes
    skipped: dict[str, int] = field(default_factory=dict)
    video: bool = False  # annotations by frame (a video data row)


def find_label(row: Mapping[str, Any], project_id: str, label_id: str) -> Mapping[str, Any]:
    """The label ``label_id`` of ``project_id`` in an export row; `Permanent` when it is not there."""
    projects = row.get("projects")
    project = projects.get(project_id) if isinstance(projects, Mapping) else None
    labels = project.get("labels") if isinstance(project, Mapping) else None
    if not isinstance(labels, list):
        raise Permanent(f"Labelbox export row has no labels for project {project_id}")
    for label in labels:
        if isinstance(label, Mapping) and label.get("id") == label_id:
            return label
    raise Permanent(f"Labelbox label {label_id} is not in the export (deleted or moved since the webhook?)")


def media_size(row: Mapping[str, Any]) -> tuple[int, int] | None:
    attributes = row.get("media_attributes")
    if not isinstance(attributes, Mapping):
        return None
    width, height = attributes.get("width"), attributes.get("height")
    if isinstance(width, int | float) and isinstance(height, int | float) and width >= 1 and height >= 1:
        return int(width), int(height)
    return None


def label_frames(row: Mapping[str, Any], label: Mapping[str, Any]) -> LabelFrames:
    """Parse a label's annotations into frames of objects and the job's labelmap."""
    annotations = label.get("annotations")
    if not isinstance(annotations, Mapping):
        raise Permanent("Labelbox label has no annotations object")
    per_frame: list[tuple[int, list[Any]]] = []
    video = isinstance(annotations.get("frames"), Mapping)
    if video:
        for key, frame in annotations["frames"].items():
            try:
                number = int(key)
            except ValueError:
                raise Permanent(f"Labelbox video frame key {key!r} is not a frame number") from None
            objects = frame.get("objects") if isinstance(frame, Mapping) else None
            values = list(objects.values()) if isinstance(objects, Mapping) else objects or []
            per_frame.append((number, values))
        per_frame.sort(key=lambda item: item[0])
    else:
        objects = annotations.get("objects") or []
        if not isinstance(objects, list):
            raise Permanent("Labelbox label annotations.objects is not a list")
        per_frame.append((0, objects))
    builder = _Builder()
    frames: dict[int, list[LabelObject]] = {}
    for number, objects in per_frame:
        drawn = [obj for position, raw in enumerate(objects) if (obj := builder.add(raw, number, position))]
        # Masks first, then vector shapes; each group keeps export order (later on top).
        drawn.sort(key=lambda o: _PAINT_ORDER[o.kind])
        if drawn:
            frames[number] = drawn
    return LabelFrames(builder.labelmap(), frames, media_size(row), builder.skipped, video)


_PAINT_ORDER = {"composite_mask": 0, "mask": 1, "bounding_box": 2, "polygon": 2}


class _Builder:
    def __init__(self) -> None:
        self.classes: list[LabelClass] = [LabelClass(0, "unlabeled", "#000000", None)]
        self.class_of: dict[str, LabelClass] = {}
        self.segments: list[Segment] = []
        self.segment_of: dict[str, int] = {}
        self.skipped: dict[str, int] = {}

    def add(self, raw: Any, frame: int, position: int) -> LabelObject | None:
        if not isinstance(raw, Mapping):
            raise Permanent(f"Labelbox object #{position} of frame {frame} is not an object")
        kind, geometry = _geometry(raw)
        if kind is None:
            name = str(raw.get("annotation_kind") or "unknown")
            self.skipped[name] = self.skipped.get(name, 0) + 1
            return None
        rgb = _rgb(raw, kind)
        number = self._segment(raw, frame, position, rgb)
        what = f"Labelbox object {raw.get('feature_id') or position} ({kind})"
        if kind in MASK_KINDS:
            url = geometry.get("url") if isinstance(geometry, Mapping) else None
            if not isinstance(url, str) or not url.strip():
                raise Permanent(f"{what} has no mask url")
            color = None if rgb is None else rgb[0] | (rgb[1] << 8) | (rgb[2] << 16)
            if kind == "composite_mask" and color is None:
                raise Permanent(f"{what} has no color_rgb")
            return LabelObject(number, kind, url=url.strip(), color=color)
        return LabelObject(number, kind, points=_points(kind, geometry, what))

    def _segment(
        self, raw: Mapping[str, Any], frame: int, position: int, rgb: tuple[int, int, int] | None
    ) -> int:
        feature = _text(raw.get("feature_id")) or f"frame {frame} object {position}"
        if feature in self.segment_of:
            return self.segment_of[feature]
        name = _text(raw.get("name")) or _text(raw.get("value")) or "object"
        schema = _text(raw.get("feature_schema_id")) or name
        colour = "#{:02x}{:02x}{:02x}".format(*rgb) if rgb is not None else None
        entry = self.class_of.get(schema)
        if entry is None:
            entry = LabelClass(len(self.classes), name, colour or _derived_colour(len(self.classes)), schema)
            self.classes.append(entry)
            self.class_of[schema] = entry
        number = len(self.segments) + 1
        if number > MAX_SEGMENTS:
            raise Permanent(f"Labelbox label has more than {MAX_SEGMENTS} objects")
        classifications = raw.get("classifications")
        self.segments.append(
            Segment(
                number=number,
                color=colour or entry.color,
                name=name,
                label_id=entry.id,
                instance_id=None if feature.startswith("frame ") else feature,
                attributes={"classifications": classifications} if classifications else {},
            )
        )
        self.segment_of[feature] = number
        return number

    def labelmap(self) -> Labelmap:
        return Labelmap(tuple(self.classes), tuple(self.segments), ())


def _geometry(raw: Mapping[str, Any]) -> tuple[str | None, Any]:
    for kind in ("composite_mask", "mask", "bounding_box", "polygon"):
        if raw.get(kind) is not None:
            return kind, raw[kind]
    return None, None


def _rgb(raw: Mapping[str, Any], kind: str) -> tuple[int, int, int] | None:
    geometry = raw.get(kind)
    value = geometry.get("color_rgb") if isinstance(geometry, Mapping) else None
    if value is None:
        return None
    if (
        not isinstance(value, list | tuple)
        or len(value) != 3
        or not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in value)
    ):
        raise Permanent(f"Labelbox object {raw.get('feature_id')}: color_rgb {value!r} is not three bytes")
    return int(value[0]), int(value[1]), int(value[2])


def _points(kind: str, geometry: Any, what: str) -> tuple[tuple[float, float], ...]:
    points: tuple[tuple[float, float], ...]
    try:
        if kind == "bounding_box":
            top, left = float(geometry["top"]), float(geometry["left"])
            bottom, right = top + float(geometry["height"]), left + float(geometry["width"])
            points = ((left, top), (right, top), (right, bottom), (left, bottom))
        else:
            points = tuple((float(p["x"]), float(p["y"])) for p in geometry)
    except (KeyError, TypeError, ValueError):
        raise Permanent(f"{what} has malformed coordinates") from None
    if points and not np.isfinite(np.array(points)).all():
        raise Permanent(f"{what} has non-finite coordinates")
    return points


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _derived_colour(n: int) -> str:
    """A deterministic display colour for a class none of whose objects carries a colour."""
    return f"#{(n * 2654435761) & 0xFFFFFF:06x}"


def paint_composite(
    instances: npt.NDArray[np.uint16], rgba: npt.NDArray[np.uint8], objects: list[LabelObject]
) -> dict[str, int]:
    """Paint each object's ``color_rgb`` pixels of a composite mask; pixels per unknown colour.

    Transparent and black pixels are background; any other colour no object claims is counted
    (``{"#rrggbb": pixels}``) and left as it was.
    """
    _check_shape(instances, rgba)
    packed = np.ascontiguousarray(rgba).view("<u4")[..., 0]
    opaque = packed >= 0x01000000
    colour = packed & np.uint32(0xFFFFFF)
    # A 2^24-entry table (32 MiB, pages mapped lazily by np.zeros): one lookup per pixel.
    lut = np.zeros(1 << 24, dtype=np.uint16)
    for obj in objects:
        if obj.color is not None:
            lut[obj.color] = obj.number
    found_numbers = lut[colour]
    found_numbers *= opaque
    hit = found_numbers != 0
    np.copyto(instances, found_numbers, where=hit)
    unknown = opaque & ~hit & (colour != 0)
    if not unknown.any():
        return {}
    found, counts = np.unique(colour[unknown], return_counts=True)
    return {
        f"#{v & 0xFF:02x}{(v >> 8) & 0xFF:02x}{v >> 16:02x}": int(n)
        for v, n in zip(found.tolist(), counts.tolist(), strict=True)
    }


def paint_single(instances: npt.NDArray[np.uint16], rgba: npt.NDArray[np.uint8], number: int) -> None:
    """Paint a legacy one-instance mask: its opaque, non-black pixels."""
    _check_shape(instances, rgba)
    foreground = (rgba[..., 3] > 0) & (rgba[..., :3].max(axis=2) > 0)
    instances[foreground] = number


def paint_shape(instances: npt.NDArray[np.uint16], obj: LabelObject) -> None:
    """Rasterise a box or polygon (pixel centres inside, even-odd) onto the instance map."""
    height, width = instances.shape
    instances[fill_polygon(list(obj.points), width, height)] = obj.number


def _check_shape(instances: npt.NDArray[np.uint16], rgba: npt.NDArray[np.uint8]) -> None:
    if rgba.shape[:2] != instances.shape:
        h, w = rgba.shape[:2]
        raise Permanent(
            f"Labelbox mask is {w}x{h}, but the frame is {instances.shape[1]}x{instances.shape[0]}"
        )
