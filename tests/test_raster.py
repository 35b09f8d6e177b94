"""Rasterisation rules (pixel centres, PNPOLY, closed ellipses, CVAT mask RLE) and track interpolation.

Every vectorised result is compared with a slow per-pixel reference written here, and boundary pixels
are pinned by hand so a change of convention cannot pass unnoticed.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from processors.errors import Permanent
from processors.masks.raster import (
    RasterError,
    decode_cvat_rle,
    fill_ellipse,
    fill_polygon,
    rectangle_corners,
)
from processors.vendors.cvat.shapes import parse_annotations, render
from processors.vendors.cvat.tracks import Keyframe, angle_difference, shape_at


def pnpoly(x: float, y: float, pts: list[tuple[float, float]]) -> bool:
    inside = False
    j = len(pts) - 1
    for i in range(len(pts)):
        xi, yi = pts[i]
        xj, yj = pts[j]
        if (yi > y) != (yj > y) and x < (xj - xi) * (y - yi) / (yj - yi) + xi:
            inside = not inside
        j = i
    return inside


def reference_polygon(pts: list[tuple[float, float]], w: int, h: int) -> np.ndarray:
    return np.array([[pnpoly(c + 0.5, r + 0.5, pts) for c in range(w)] for r in range(h)], dtype=bool)


def test_axis_aligned_rectangle_fills_exactly_the_half_open_box() -> None:
    mask = fill_polygon(rectangle_corners(4, 2, 8, 5), 12, 8)
    expected = np.zeros((8, 12), dtype=bool)
    expected[2:5, 4:8] = True  # columns 4..7, rows 2..4: col 8 and row 5 are outside
    assert (mask == expected).all()


def test_fractional_rectangle_takes_pixels_whose_centres_it_covers() -> None:
    mask = fill_polygon(rectangle_corners(3.5, 1.2, 6.5, 3.6), 10, 6)
    # Centres 3.5 (on the left edge: inside), 4.5, 5.5; 6.5 is on the right edge: outside.
    assert np.flatnonzero(mask.any(axis=0)).tolist() == [3, 4, 5]
    # Rows with centres 1.5, 2.5, 3.5 < 3.6.
    assert np.flatnonzero(mask.any(axis=1)).tolist() == [1, 2, 3]


def test_adjacent_rectangles_share_no_pixel_and_leave_no_gap() -> None:
    left = fill_polygon(rectangle_corners(0, 0, 5.5, 4), 10, 4)
    right = fill_polygon(rectangle_corners(5.5, 0, 10, 4), 10, 4)
    assert not (left & right).any() and (left | right).all()


@pytest.mark.parametrize("seed", range(12))
def test_polygon_matches_per_pixel_pnpoly(seed: int) -> None:
    rng = random.Random(seed)
    w, h = 23, 19
    # Half-integer and integer vertices put centres exactly on edges and vertices.
    pts = [(rng.randrange(-4, 54) / 2, rng.randrange(-4, 46) / 2) for _ in range(rng.randrange(3, 9))]
    if seed % 3 == 0:
        pts = [(x + rng.random(), y + rng.random()) for x, y in pts]
    assert (fill_polygon(pts, w, h) == reference_polygon(pts, w, h)).all()


def test_rotated_rectangle_uses_cvat_clockwise_rotation() -> None:
    corners = rectangle_corners(2, 4, 12, 6, 90)
    # 10x2 turned by 90° about its centre (7, 5) becomes 2x10: x 6..8, y 0..10.
    xs = sorted(round(x, 9) for x, _ in corners)
    ys = sorted(round(y, 9) for _, y in corners)
    assert (xs[0], xs[-1], ys[0], ys[-1]) == (6, 8, 0, 10)
    # Clockwise on screen: the top-left corner (2, 4) goes to the top-right (8, 0).
    assert (round(corners[0][0], 9), round(corners[0][1], 9)) == (8, 0)
    mask = fill_polygon(corners, 16, 12)
    assert mask.sum() == 20 and mask[0:10, 6:8].all()


def test_ellipse_is_closed_and_matches_the_equation() -> None:
    w, h = 30, 24
    mask = fill_ellipse(14.5, 10.5, 6, 4, 0, w, h)
    # Centres on the axes' ends (14.5 ± 6, 10.5) are on the boundary: inside.
    assert mask[10, 8] and mask[10, 20] and not mask[10, 7] and not mask[10, 21]
    assert mask[6, 14] and mask[14, 14] and not mask[5, 14] and not mask[15, 14]
    for angle in (0, 30, 125):
        got = fill_ellipse(13.2, 11.7, 7.5, 3.25, angle, w, h)
        a = math.radians(angle)
        for r in range(h):
            for c in range(w):
                dx, dy = c + 0.5 - 13.2, r + 0.5 - 11.7
                u = math.cos(a) * dx + math.sin(a) * dy
                v = -math.sin(a) * dx + math.cos(a) * dy
                assert got[r, c] == ((u / 7.5) ** 2 + (v / 3.25) ** 2 <= 1.0), (angle, r, c)


def test_cvat_mask_rle_starts_with_background_and_includes_right_bottom() -> None:
    # Box left=2, top=1, right=4, bottom=2 (inclusive): 3x2 pixels; runs bg 1, fg 2, bg 2, fg 1.
    mask = decode_cvat_rle([1, 2, 2, 1, 2, 1, 4, 2], 6, 4)
    expected = np.zeros((4, 6), dtype=bool)
    expected[1, 3] = expected[1, 4] = True  # row 1: bg at x=2, fg at 3, 4
    expected[2, 4] = True  # row 2: bg at 2, 3 (run continues across the row end), fg at 4
    assert (mask == expected).all()


def test_cvat_mask_rle_first_run_may_be_zero_and_is_clipped_to_the_frame() -> None:
    mask = decode_cvat_rle([0.0, 4.0, 3.0, 4.0, 4.0, 5.0], 5, 7)  # box (3,4)-(4,5) on a 5x7 frame
    assert mask[4:6, 3:5].all() and mask.sum() == 4
    clipped = decode_cvat_rle([0, 4, 4, 6, 5, 7], 5, 7)  # box (4,6)-(5,7): half outside
    assert clipped.sum() == 1 and clipped[6, 4]


def test_cvat_empty_mask_and_bad_runs() -> None:
    assert not decode_cvat_rle([0, 0, 0, 0], 3, 3).any()
    with pytest.raises(RasterError, match="covers 5 pixels"):
        decode_cvat_rle([1, 4, 0, 0, 2, 1], 4, 4)
    with pytest.raises(RasterError, match="not an integer"):
        decode_cvat_rle([1.5, 2.5, 0, 0, 1, 1], 4, 4)


def _key(frame: int, points: tuple[float, ...], *, outside: bool = False, rotation: float = 0) -> Keyframe:
    return Keyframe(frame, "rectangle", points, rotation, 0, outside)


def test_track_interpolates_linearly_and_outside_ends_a_segment() -> None:
    keys = [
        _key(2, (0, 0, 4, 4)),
        _key(6, (8, 4, 12, 8)),
        _key(8, (8, 4, 12, 8), outside=True),
        _key(10, (1, 1, 2, 2)),
    ]
    assert shape_at(keys, 1) is None  # before the first keyframe
    assert shape_at(keys, 4).points == (4, 2, 8, 6)  # type: ignore[union-attr]
    assert shape_at(keys, 7).points == (8, 4, 12, 8)  # type: ignore[union-attr]
    assert shape_at(keys, 8) is None and shape_at(keys, 9) is None
    assert shape_at(keys, 10).points == (1, 1, 2, 2)  # type: ignore[union-attr]
    assert shape_at(keys, 500).points == (1, 1, 2, 2)  # type: ignore[union-attr]  # persists


def test_track_rotation_takes_the_short_way_and_polygons_of_other_sizes_are_held() -> None:
    keys = [_key(0, (0, 0, 2, 2), rotation=350), _key(2, (0, 0, 2, 2), rotation=10)]
    assert shape_at(keys, 1).rotation == pytest.approx(0)  # type: ignore[union-attr]
    assert angle_difference(10, 350) == 20 and angle_difference(350, 10) == -20
    poly = [
        Keyframe(0, "polygon", (0, 0, 4, 0, 0, 4), 0, 0, False),
        Keyframe(4, "polygon", (0, 0, 8, 0, 8, 8, 0, 8), 0, 0, False),
    ]
    assert shape_at(poly, 2).points == (0, 0, 4, 0, 0, 4)  # type: ignore[union-attr]


def test_paint_order_is_z_order_then_shapes_before_tracks_then_id() -> None:
    document = {
        "version": 0,
        "tags": [{"frame": 0, "label_id": 1}],
        "shapes": [
            {"id": 9, "type": "rectangle", "frame": 0, "label_id": 1, "points": [0, 0, 4, 4], "z_order": 1},
            {"id": 3, "type": "rectangle", "frame": 0, "label_id": 2, "points": [0, 0, 4, 4], "z_order": 1},
            {"id": 1, "type": "rectangle", "frame": 0, "label_id": 3, "points": [0, 0, 4, 4], "z_order": 0},
            {"id": 2, "type": "polyline", "frame": 0, "label_id": 3, "points": [0, 0, 4, 4]},
            {
                "id": 4,
                "type": "rectangle",
                "frame": 0,
                "label_id": 3,
                "points": [0, 0, 4, 4],
                "outside": "true",
            },
        ],
        "tracks": [
            {
                "id": 1,
                "frame": 0,
                "label_id": 4,
                "shapes": [{"type": "rectangle", "frame": 0, "points": [2, 2, 6, 6], "z_order": 1}],
            }
        ],
    }
    job = parse_annotations(document)
    assert job.skipped == {"outside": 1, "polyline": 1, "tag": 1}
    order = [instance.key for instance, _ in job.on_frame(0)]
    assert order == ["shape-1", "shape-3", "shape-9", "track-1"]
    painted = render(job.on_frame(0), 6, 6)
    numbers = {i.key: i.number for i in job.instances}
    assert painted[0, 0] == numbers["shape-9"] and painted[3, 3] == numbers["track-1"]


def test_malformed_annotations_are_permanent() -> None:
    with pytest.raises(Permanent, match="shape #0 points"):
        parse_annotations({"shapes": [{"type": "polygon", "frame": 0, "label_id": 1, "points": "1,2"}]})
    job = parse_annotations(
        {"shapes": [{"type": "mask", "frame": 0, "label_id": 1, "points": [3, 0, 0, 0, 0]}]}
    )
    with pytest.raises(Permanent, match="shape-#0"):
        render(job.on_frame(0), 4, 4)
