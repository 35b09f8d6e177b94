"""The conformance payloads (see README.md for where each file comes from) and an independent rasteriser.

`raw` returns a payload's bytes exactly as stored, so a callback is posted byte for byte as the vendor
would send it. `paint` is the reference the CVAT cases check masks against: even-odd (PNPOLY) on pixel
centres, vectorised with numpy, shapes painted bottom-up by ``z_order`` (ties in list order) — written
here from CVAT's shape definitions, not taken from labelhook's rasteriser.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

HERE = Path(__file__).parent / "payloads"


def raw(name: str) -> bytes:
    """``<vendor>/<file>`` under payloads/, byte for byte."""
    return (HERE / name).read_bytes()


def load(name: str) -> Any:
    return json.loads(raw(name))


def inside(points: Sequence[float], width: int, height: int) -> npt.NDArray[np.bool_]:
    """Pixels whose centre is inside the polygon ``points`` (x0, y0, x1, y1, …), even-odd rule."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    x, y = xs + 0.5, ys + 0.5
    pts = list(zip(points[0::2], points[1::2], strict=True))
    result = np.zeros((height, width), dtype=bool)
    j = len(pts) - 1
    for i in range(len(pts)):
        (xi, yi), (xj, yj) = pts[i], pts[j]
        if yi != yj:
            crosses = (yi > y) != (yj > y)
            result ^= crosses & (x < (xj - xi) * (y - yi) / (yj - yi) + xi)
        j = i
    return result


def area(shape: dict[str, Any], width: int, height: int) -> npt.NDArray[np.bool_] | None:
    """The pixels of one CVAT area shape (unrotated rectangle or polygon); None for non-area types."""
    points = [float(v) for v in shape["points"]]
    if shape["type"] == "rectangle":
        assert not shape.get("rotation"), "the conformance payloads hold unrotated rectangles"
        x0, y0, x1, y1 = points
        return inside([x0, y0, x1, y0, x1, y1, x0, y1], width, height)
    if shape["type"] == "polygon":
        return inside(points, width, height)
    return None


def paint(shapes: Sequence[dict[str, Any]], width: int, height: int) -> dict[int, npt.NDArray[np.bool_]]:
    """Visible region of each area shape on one frame, by shape id, later/higher shapes on top."""
    owner = np.full((height, width), -1, dtype=np.int64)
    ordered = sorted(enumerate(shapes), key=lambda item: (item[1].get("z_order", 0), item[0]))
    ids = []
    for _, shape in ordered:
        region = area(shape, width, height)
        if region is not None:
            owner[region] = shape["id"]
            ids.append(shape["id"])
    return {shape_id: owner == shape_id for shape_id in ids}
