"""Pure rasterisation of vector shapes into boolean pixel masks (numpy only, no I/O).

The pixel rule, used for every area shape: pixel ``(col, row)`` covers ``[col, col+1) × [row, row+1)``
and belongs to a shape when its **centre** ``(col + 0.5, row + 0.5)`` does.

* Polygons (and rectangles, which are drawn as their four corners) use the even-odd crossing test of
  PNPOLY: an edge from ``(xi, yi)`` to ``(xj, yj)`` counts for a centre ``(x, y)`` when
  ``(yi > y) != (yj > y)`` and ``x < (xj - xi) * (y - yi) / (yj - yi) + xi``. Centres on a left or
  top edge are therefore inside, on a right or bottom edge outside: the axis-aligned rectangle
  ``xtl, ytl, xbr, ybr`` fills exactly the centres with ``xtl <= x < xbr`` and ``ytl <= y < ybr``,
  so two rectangles sharing an edge never share a pixel. The scanline version below evaluates the
  same expression in the same order, so it agrees with a per-pixel PNPOLY bit for bit.
* Ellipses: centres with ``(u / rx)² + (v / ry)² <= 1`` (closed), where ``(u, v)`` is the centre
  offset rotated into the ellipse's frame.
* Rotation (degrees, rectangles and ellipses) turns about the shape's centre with CVAT's formula
  ``x' = cx + cos·(x - cx) - sin·(y - cy)``, ``y' = cy + sin·(x - cx) + cos·(y - cy)`` — clockwise on
  screen, because image y points down.
* CVAT mask RLE (`decode_cvat_rle`) is already pixel-exact and only placed and clipped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

BoolMask = npt.NDArray[np.bool_]


class RasterError(ValueError):
    """A shape's geometry cannot be drawn (wrong number of coordinates, bad RLE)."""


def rotate_points(points: Sequence[tuple[float, float]], degrees: float) -> list[tuple[float, float]]:
    """Turn ``points`` about their centroid-of-box by ``degrees`` (CVAT's rotation, clockwise on screen)."""
    if not degrees % 360:
        return list(points)
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    cx, cy = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2
    angle = math.radians(degrees)
    cos, sin = math.cos(angle), math.sin(angle)
    return [(cx + cos * (x - cx) - sin * (y - cy), cy + sin * (x - cx) + cos * (y - cy)) for x, y in points]


def rectangle_corners(
    xtl: float, ytl: float, xbr: float, ybr: float, rotation: float = 0.0
) -> list[tuple[float, float]]:
    """The four corners of a CVAT rectangle, rotated about its centre."""
    corners = [(xtl, ytl), (xbr, ytl), (xbr, ybr), (xtl, ybr)]
    return rotate_points(corners, rotation)


def fill_polygon(points: Sequence[tuple[float, float]], width: int, height: int) -> BoolMask:
    """Pixels whose centres are inside ``points`` by the even-odd PNPOLY rule (see the module docstring)."""
    mask = np.zeros((height, width), dtype=bool)
    n = len(points)
    if n < 3 or width <= 0 or height <= 0:
        return mask
    xi = np.array([p[0] for p in points], dtype=np.float64)
    yi = np.array([p[1] for p in points], dtype=np.float64)
    if not (np.isfinite(xi).all() and np.isfinite(yi).all()):
        raise RasterError("polygon has a non-finite coordinate")
    xj, yj = np.roll(xi, 1), np.roll(yi, 1)
    low, high = np.minimum(yi, yj), np.maximum(yi, yj)
    # Rows whose centre r + 0.5 satisfies low <= r + 0.5 < high, i.e. (yi > y) != (yj > y).
    first = np.clip(np.ceil(low - 0.5), 0, height).astype(np.int64)
    stop = np.clip(np.ceil(high - 0.5), 0, height).astype(np.int64)
    spans = np.maximum(stop - first, 0)
    total = int(spans.sum())
    if total == 0:
        return mask
    edge = np.repeat(np.arange(n), spans)
    offsets = np.arange(total) - np.repeat(np.cumsum(spans) - spans, spans)
    rows = first[edge] + offsets
    y = rows + 0.5
    ex, ey, fx, fy = xi[edge], yi[edge], xj[edge], yj[edge]
    crossing = (fx - ex) * (y - ey) / (fy - ey) + ex
    # Centres col + 0.5 < crossing: exactly ceil(crossing - 0.5) columns (exact in float64).
    cols = np.clip(np.ceil(crossing - 0.5), 0, width).astype(np.int64)
    # Only the rows the polygon spans are materialised (columns keep absolute coordinates, so the
    # arithmetic above stays exactly PNPOLY's).
    top, bottom = int(rows.min()), int(rows.max()) + 1
    counts = np.zeros((bottom - top, width + 1), dtype=np.int32)
    np.add.at(counts, (rows - top, cols), 1)
    # Crossings to the right of column c: those with cols > c.
    right = np.cumsum(counts[:, ::-1], axis=1)[:, ::-1][:, 1:]
    mask[top:bottom] = (right & 1).astype(bool)
    return mask


def fill_ellipse(
    cx: float, cy: float, rx: float, ry: float, rotation: float, width: int, height: int
) -> BoolMask:
    """Pixels whose centres are inside the (closed) ellipse, rotated ``rotation`` degrees about its centre."""
    mask = np.zeros((height, width), dtype=bool)
    rx, ry = abs(rx), abs(ry)
    if rx == 0 or ry == 0 or width <= 0 or height <= 0:
        return mask
    reach = max(rx, ry)
    c0, c1 = max(0, math.floor(cx - reach - 1)), min(width, math.ceil(cx + reach + 1))
    r0, r1 = max(0, math.floor(cy - reach - 1)), min(height, math.ceil(cy + reach + 1))
    if c0 >= c1 or r0 >= r1:
        return mask
    dx = (np.arange(c0, c1, dtype=np.float64) + 0.5 - cx)[None, :]
    dy = (np.arange(r0, r1, dtype=np.float64) + 0.5 - cy)[:, None]
    angle = math.radians(rotation)
    cos, sin = math.cos(angle), math.sin(angle)
    # Undo the rotation: the inverse of CVAT's clockwise-on-screen turn.
    u = cos * dx + sin * dy
    v = -sin * dx + cos * dy
    mask[r0:r1, c0:c1] = (u / rx) ** 2 + (v / ry) ** 2 <= 1.0
    return mask


def decode_cvat_rle(points: Sequence[float], width: int, height: int) -> BoolMask:
    """A CVAT ``mask`` shape: ``[runs…, left, top, right, bottom]`` → a frame-sized boolean mask.

    Runs cover the box (right and bottom inclusive) row by row, alternating background/foreground and
    starting with background. Pixels outside the frame are dropped. Raises `RasterError` when the runs
    do not add up to the box.
    """
    mask = np.zeros((height, width), dtype=bool)
    if len(points) < 4:
        raise RasterError("mask points need at least the four box values")
    values = [_integral(v) for v in points]
    runs, (left, top, right, bottom) = values[:-4], values[-4:]
    box_w, box_h = right - left + 1, bottom - top + 1
    if not runs or (box_w <= 0 or box_h <= 0):
        if sum(runs) == 0:
            return mask  # CVAT's empty mask: [0, 0, 0, 0] (or no runs at all)
        raise RasterError("mask box is empty but its runs are not")
    if any(r < 0 for r in runs):
        raise RasterError("mask RLE has a negative run")
    if sum(runs) != box_w * box_h:
        raise RasterError(f"mask RLE covers {sum(runs)} pixels, its {box_w}x{box_h} box has {box_w * box_h}")
    flags = np.arange(len(runs)) % 2 == 1
    box = np.repeat(flags, runs).reshape(box_h, box_w)
    y0, y1 = max(top, 0), min(bottom + 1, height)
    x0, x1 = max(left, 0), min(right + 1, width)
    if y0 < y1 and x0 < x1:
        mask[y0:y1, x0:x1] = box[y0 - top : y1 - top, x0 - left : x1 - left]
    return mask


def _integral(value: float) -> int:
    number = float(value)
    if not math.isfinite(number) or number != int(number):
        raise RasterError(f"mask RLE value {value!r} is not an integer")
    return int(number)
