"""A Label Studio annotation's ``result`` list → regions with a label and a pixel shape, per image.

Results that share an ``id`` are one region: older editors send the geometry (``brush``, ``polygon``,
``rectangle``, ``magicwand``) and its ``labels`` as two results, newer ones one ``*labels`` result.
Area kinds: brush / magic-wand RLE (`processors.vendors.labelstudio.brush`; a pixel is foreground
when its alpha is at least ``min_alpha``, 1 by default: any paint, as in the SDK's COCO exporter), polygons,
rectangles and ellipses. Everything else (key points, choices, text spans, relations) has no area and
is counted in ``skipped``. Geometry is in percent of ``original_width`` / ``original_height``; a
rectangle's ``rotation`` (degrees, clockwise on screen) turns about its top-left corner ``(x, y)``,
exactly as the SDK's YOLO-OBB exporter computes the corners; an ellipse's about its centre.
Paint order is the order of the result list: a later region covers an earlier one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from processors.errors import Permanent
from processors.masks.raster import RasterError, fill_ellipse, fill_polygon
from processors.vendors.labelstudio.brush import BrushError, decode_alpha, rle_bytes

#: Result type → the geometry it carries (``*labels`` and plain kinds alike).
GEOMETRY = {
    "brushlabels": "brush",
    "brush": "brush",
    "magicwand": "brush",
    "polygonlabels": "polygon",
    "polygon": "polygon",
    "rectanglelabels": "rectangle",
    "rectangle": "rectangle",
    "ellipselabels": "ellipse",
    "ellipse": "ellipse",
}
_LABEL_KEYS = ("brushlabels", "polygonlabels", "rectanglelabels", "ellipselabels", "labels")
MAX_REGIONS = 0xFFFF  # instance numbers live in a uint16 map, 0 = none


@dataclass(frozen=True)
class Region:
    """One labelled area of one image."""

    key: str  # the result id
    image: str  # the result's ``to_name``: which image of the task it is drawn on
    label: str
    kind: str  # brush | polygon | rectangle | ellipse
    value: Mapping[str, Any]
    width: int
    height: int
    attributes: dict[str, Any]


@dataclass
class ParsedResult:
    """Regions in paint order, the size of each image, and what had no area."""

    regions: list[Region] = field(default_factory=list)
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    unlabelled: int = 0


#: Looks up the size of an image no result names: ``(to_name, source)`` → ``(width, height)``.
SizeLookup = Callable[[str, "str | None"], tuple[int, int]]


def parse_result(result: Any, image_size: SizeLookup | None = None) -> ParsedResult:
    """Group an annotation's results into regions; `Permanent` naming the first malformed one.

    Old editors wrote results without ``original_width`` / ``original_height``; for an image that no
    result sizes, ``image_size`` is asked (the processor reads the image's header), else `Permanent`.
    """
    if not isinstance(result, list):
        raise Permanent("Label Studio annotation 'result' is not a list")
    groups: dict[str, list[Mapping[str, Any]]] = {}
    order: list[str] = []
    parsed = ParsedResult()
    for position, item in enumerate(result):
        if not isinstance(item, Mapping):
            raise Permanent(f"Label Studio result #{position} is not an object")
        kind = str(item.get("type") or "").lower()
        if kind not in GEOMETRY and kind != "labels":
            parsed.skipped[kind or "unknown"] = parsed.skipped.get(kind or "unknown", 0) + 1
            continue
        key = f"{item.get('id', f'#{position}')}@{item.get('to_name', '')}"
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(item)
        _note_size(parsed, item)
    for key in order:
        region = _region(groups[key], parsed, image_size)
        if region is not None:
            parsed.regions.append(region)
    if len(parsed.regions) > MAX_REGIONS:
        raise Permanent(f"Label Studio annotation has more than {MAX_REGIONS} regions; not supported")
    parsed.skipped = dict(sorted(parsed.skipped.items()))
    return parsed


def draw(region: Region, *, min_alpha: int = 1) -> npt.NDArray[np.bool_]:
    """The region's pixels on its ``height × width`` image; `Permanent` naming the region if malformed."""
    width, height, value = region.width, region.height, region.value
    try:
        if region.kind == "brush":
            if str(value.get("format", "rle")).lower() != "rle":
                raise BrushError(f"brush format {value.get('format')!r} is not 'rle'")
            return decode_alpha(rle_bytes(value.get("rle")), width, height) >= min_alpha
        if region.kind == "polygon":
            return fill_polygon(_points(value.get("points"), width, height), width, height)
        if region.kind == "rectangle":
            return fill_polygon(rectangle_corners(value, width, height), width, height)
        if region.kind == "ellipse":
            cx, cy = _number(value, "x") * width / 100, _number(value, "y") * height / 100
            rx, ry = _number(value, "radiusX") * width / 100, _number(value, "radiusY") * height / 100
            return fill_ellipse(cx, cy, rx, ry, _number(value, "rotation", 0.0), width, height)
    except (BrushError, RasterError) as exc:
        raise Permanent(f"Label Studio region {region.key} ({region.label}): {exc}") from exc
    raise Permanent(f"Label Studio region {region.key}: no geometry of kind {region.kind!r}")


def rectangle_corners(value: Mapping[str, Any], width: int, height: int) -> list[tuple[float, float]]:
    """Pixel corners of a (rotated) rectangle: the SDK's ``convert_annotation_to_yolo_obb`` formula."""
    x, y = _number(value, "x") * width / 100, _number(value, "y") * height / 100
    w, h = _number(value, "width") * width / 100, _number(value, "height") * height / 100
    angle = math.radians(_number(value, "rotation", 0.0))
    cos, sin = math.cos(angle), math.sin(angle)
    return [
        (x, y),
        (x + w * cos, y + w * sin),
        (x + w * cos - h * sin, y + w * sin + h * cos),
        (x - h * sin, y + h * cos),
    ]


def render(
    regions: Sequence[tuple[int, Region]], width: int, height: int, *, min_alpha: int = 1
) -> npt.NDArray[np.uint16]:
    """Paint ``(instance number, region)`` pairs in order into a uint16 instance map (later on top)."""
    instances = np.zeros((height, width), dtype=np.uint16)
    for number, region in regions:
        instances[draw(region, min_alpha=min_alpha)] = number
    return instances


def _region(
    items: list[Mapping[str, Any]], parsed: ParsedResult, image_size: SizeLookup | None
) -> Region | None:
    shaped = next((i for i in items if str(i.get("type")).lower() in GEOMETRY), None)
    first = items[0]
    if shaped is None:  # a bare `labels` result (text span, or geometry in a kind we skip)
        parsed.skipped["labels"] = parsed.skipped.get("labels", 0) + len(items)
        return None
    kind = GEOMETRY[str(shaped.get("type")).lower()]
    value = shaped.get("value")
    where = f"Label Studio result {first.get('id', '?')}"
    if not isinstance(value, Mapping):
        raise Permanent(f"{where} has no 'value' object")
    labels: list[str] = []
    for item in items:
        item_value = item.get("value")
        if not isinstance(item_value, Mapping):
            continue
        for key in _LABEL_KEYS:
            found = item_value.get(key)
            if isinstance(found, list):
                labels.extend(str(label) for label in found if isinstance(label, str | int | float))
    labels = list(dict.fromkeys(labels))
    if not labels:
        parsed.unlabelled += 1
        return None
    image = str(shaped.get("to_name") or "")
    size = parsed.sizes.get(image)
    if size is None:
        if image_size is None:
            raise Permanent(f"{where}: no result for image {image!r} names original_width/original_height")
        source = shaped.get("source")
        size = parsed.sizes[image] = image_size(image, source if isinstance(source, str) else None)
    attributes: dict[str, Any] = {"labels": labels, "type": str(shaped.get("type"))}
    for extra in ("score", "origin", "meta", "readonly"):
        if shaped.get(extra) is not None:
            attributes[extra] = shaped[extra]
    if value.get("text") is not None:
        attributes["text"] = value["text"]
    return Region(
        key=str(first.get("id", "?")),
        image=image,
        label=labels[0],
        kind=kind,
        value=value,
        width=size[0],
        height=size[1],
        attributes=attributes,
    )


def _note_size(parsed: ParsedResult, item: Mapping[str, Any]) -> None:
    """Record the image size a result names; results for one image must agree on it."""
    width, height = item.get("original_width"), item.get("original_height")
    if width is None and height is None:
        return
    image = str(item.get("to_name") or "")
    try:
        size = (_positive(width), _positive(height))
    except ValueError:
        raise Permanent(
            f"Label Studio result {item.get('id', '?')}: original_width/original_height "
            f"{width!r}x{height!r} are not positive integers"
        ) from None
    known = parsed.sizes.setdefault(image, size)
    if known != size:
        raise Permanent(
            f"Label Studio results for image {image!r} disagree on its size ({known[0]}x{known[1]} "
            f"and {size[0]}x{size[1]})"
        )


def _positive(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value) or value <= 0:
        raise ValueError
    return int(value)


def _number(value: Mapping[str, Any], key: str, default: float | None = None) -> float:
    raw = value.get(key, default)
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        raise RasterError(f"{key} is not a finite number: {raw!r}")
    return float(raw)


def _points(raw: Any, width: int, height: int) -> list[tuple[float, float]]:
    if not isinstance(raw, list):
        raise RasterError("polygon 'points' is not a list")
    points: list[tuple[float, float]] = []
    for point in raw:
        if not (isinstance(point, list) and len(point) == 2):
            raise RasterError("polygon point is not an [x, y] pair")
        x, y = _number({"x": point[0]}, "x"), _number({"y": point[1]}, "y")
        points.append((x * width / 100, y * height / 100))
    return points
