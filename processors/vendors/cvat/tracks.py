"""CVAT track interpolation: keyframes → the shape a track shows on a given frame (pure).

Rules, following CVAT's own `annotation.py` where it is simple and documented here where it is not:

* A track is visible on frame ``f`` when its last keyframe at or before ``f`` exists and is not
  ``outside``. An ``outside`` keyframe ends a segment; a later visible keyframe starts a new one.
* After its last keyframe a visible track stays where it is until the end of the job, as in CVAT.
* Between two keyframes the geometry is linear in ``t = (f - f0) / (f1 - f0)``, also when the next
  keyframe is ``outside`` (CVAT does the same). Rotation takes the shorter way round the circle.
* Polygons and polylines are interpolated point by point when both keyframes have the same number of
  points; otherwise (CVAT re-samples contours there) the earlier keyframe is held until the next one.
  Masks are never interpolated: the earlier keyframe is held.
* ``z_order`` and ``type`` come from the earlier keyframe.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Keyframe:
    frame: int
    type: str
    points: tuple[float, ...]
    rotation: float
    z_order: int
    outside: bool


@dataclass(frozen=True)
class FrameShape:
    """A track's geometry on one frame."""

    type: str
    points: tuple[float, ...]
    rotation: float
    z_order: int


_HELD_TYPES = frozenset({"mask", "skeleton"})
_POINTWISE_TYPES = frozenset({"polygon", "polyline", "points"})


def shape_at(keyframes: Sequence[Keyframe], frame: int) -> FrameShape | None:
    """The track's shape on ``frame`` (``keyframes`` sorted by frame, unique), or None when not visible."""
    frames = [k.frame for k in keyframes]
    index = bisect.bisect_right(frames, frame) - 1
    if index < 0:
        return None
    before = keyframes[index]
    if before.outside:
        return None
    if before.frame == frame or index + 1 == len(keyframes):
        return _as_shape(before)
    after = keyframes[index + 1]
    t = (frame - before.frame) / (after.frame - before.frame)
    return _interpolate(before, after, t)


def _as_shape(key: Keyframe) -> FrameShape:
    return FrameShape(key.type, key.points, key.rotation, key.z_order)


def _interpolate(before: Keyframe, after: Keyframe, t: float) -> FrameShape:
    if (
        before.type != after.type
        or before.type in _HELD_TYPES
        or len(before.points) != len(after.points)
        or (before.type not in _POINTWISE_TYPES and len(before.points) % 2)
    ):
        return _as_shape(before)
    points = tuple(a + (b - a) * t for a, b in zip(before.points, after.points, strict=True))
    rotation = (before.rotation + angle_difference(after.rotation, before.rotation) * t + 360) % 360
    return FrameShape(before.type, points, rotation, before.z_order)


def angle_difference(to: float, start: float) -> float:
    """The signed shortest turn from ``start`` to ``to`` in degrees, in (-180, 180]."""
    diff = (to - start) % 360
    return diff - 360 if diff > 180 else diff
