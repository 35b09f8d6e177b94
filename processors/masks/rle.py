"""COCO compressed RLE: run counts of many segments from one label map, and the pycocotools string form.

COCO masks are run-length encoded in column-major (Fortran) order, starting with a run of zeros
(possibly empty) and alternating zeros/ones. ``pycocotools`` packs the counts into a string: each
count (after ``i > 2``, the difference from the count two places back) is written as little-endian
5-bit groups, bit 0x20 meaning "more groups follow", each group offset by 48 to printable ASCII.

Everything here is vectorised over *all* segments of a frame at once: one column-major pass over
the instance map finds every run, and the string packing runs on flat arrays, because a per-segment
boolean mask (the usual approach) costs a full-frame pass per segment. Pure numpy; pycocotools is
only used by the tests, to check that its decoder reproduces our pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class SegmentRuns:
    """Run-length facts of the labels present in one label map (arrays aligned by position)."""

    labels: IntArray  # label values present (> 0), ascending
    areas: IntArray  # pixels per label
    bboxes: IntArray  # (n, 4) [x, y, w, h] in pixels, as pycocotools.mask.toBbox computes them
    counts: tuple[str, ...]  # compressed COCO RLE string per label


def label_runs(labels: npt.NDArray[np.integer[Any]]) -> SegmentRuns:
    """Find every run of every non-zero label of a 2-D map in one column-major pass.

    Returns, per label present, its bounding box and compressed COCO RLE counts; labels absent from
    the map do not appear. Areas come from the runs too, so no per-label pass over the pixels is
    needed.
    """
    height, width = labels.shape
    total = height * width
    # The one unavoidable column-major copy; everything after works on the (few) run boundaries.
    flat = np.ascontiguousarray(labels.T).reshape(-1)
    if total == 0:
        empty = np.zeros(0, dtype=np.int64)
        return SegmentRuns(empty, empty, np.zeros((0, 4), dtype=np.int64), ())
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    starts = np.concatenate(([0], change)).astype(np.int64)
    ends = np.concatenate((change, [total])).astype(np.int64)
    values = flat[starts].astype(np.int64)
    keep = values != 0
    starts, ends, values = starts[keep], ends[keep], values[keep]
    if values.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return SegmentRuns(empty, empty, np.zeros((0, 4), dtype=np.int64), ())
    # Stable sort keeps each label's runs in column-major order, which the RLE needs.
    order = np.argsort(values, kind="stable")
    starts, ends, values = starts[order], ends[order], values[order]
    first = np.flatnonzero(np.concatenate(([True], values[1:] != values[:-1])))
    present = values[first]
    areas = np.add.reduceat(ends - starts, first)
    bboxes = _bboxes(starts, ends, first, height)
    counts = _pack_all(starts, ends, first, total)
    return SegmentRuns(present, areas, bboxes, counts)


def _bboxes(starts: IntArray, ends: IntArray, first: IntArray, height: int) -> IntArray:
    last = ends - 1
    col0, col1 = starts // height, last // height
    # A run that wraps into the next column covers the bottom of one and the top of the next, so
    # the box spans every row (pycocotools' toBbox makes the same call).
    wraps = col1 > col0
    row0 = np.where(wraps, 0, starts % height)
    row1 = np.where(wraps, height - 1, last % height)
    x0 = np.minimum.reduceat(col0, first)
    x1 = np.maximum.reduceat(col1, first)
    y0 = np.minimum.reduceat(row0, first)
    y1 = np.maximum.reduceat(row1, first)
    return np.stack([x0, y0, x1 - x0 + 1, y1 - y0 + 1], axis=1)


def _pack_all(starts: IntArray, ends: IntArray, first: IntArray, total: int) -> tuple[str, ...]:
    """Counts of every segment, laid end to end, packed in one vectorised pass, then split."""
    n_runs = starts.size
    seg_of_run = np.repeat(np.arange(first.size), np.diff(np.append(first, n_runs)))
    is_first = np.zeros(n_runs, dtype=bool)
    is_first[first] = True
    # The zero run before each one-run: from the previous run's end, or from 0 for a segment's first.
    prev_end = np.empty(n_runs, dtype=np.int64)
    prev_end[0] = 0
    prev_end[1:] = ends[:-1]
    prev_end[is_first] = 0
    zeros = starts - prev_end
    ones = ends - starts
    seg_last = np.append(first[1:], n_runs) - 1
    tail = total - ends[seg_last]  # trailing zeros; pycocotools omits an empty final run
    # Interleave per segment: z0 o0 z1 o1 ... [tail]; one slot per count, tails only where > 0.
    has_tail = tail > 0
    per_seg = 2 * np.diff(np.append(first, n_runs)) + has_tail
    seg_offset = np.concatenate(([0], np.cumsum(per_seg)))
    counts = np.empty(int(seg_offset[-1]), dtype=np.int64)
    run_slot = seg_offset[seg_of_run] + 2 * (np.arange(n_runs) - first[seg_of_run])
    counts[run_slot] = zeros
    counts[run_slot + 1] = ones
    counts[seg_offset[1:][has_tail] - 1] = tail[has_tail]
    index_in_seg = np.arange(counts.size) - np.repeat(seg_offset[:-1], per_seg)
    text, char_offsets = _pack(counts, index_in_seg)
    bounds = char_offsets[seg_offset]
    return tuple(text[bounds[i] : bounds[i + 1]] for i in range(first.size))


def _pack(counts: IntArray, index_in_seg: IntArray) -> tuple[str, IntArray]:
    """The pycocotools string of ``counts``; also the char offset where each count starts."""
    deltas = counts.copy()
    later = index_in_seg > 2
    deltas[later] -= counts[np.flatnonzero(later) - 2]
    # Groups needed: smallest k with -2^(5k-1) <= x < 2^(5k-1) (the top bit of the last group is
    # the sign, which is why the encoder keeps going while that bit disagrees with the rest).
    magnitude = np.where(deltas < 0, ~deltas, deltas)
    bits = np.zeros(deltas.size, dtype=np.int64)
    m = magnitude.copy()
    while True:
        nonzero = m > 0
        if not nonzero.any():
            break
        bits += nonzero
        m >>= 1
    n_groups = bits // 5 + 1
    max_groups = int(n_groups.max())
    shifts = 5 * np.arange(max_groups, dtype=np.int64)
    groups = (deltas[:, None] >> shifts[None, :]) & 0x1F
    more = np.arange(max_groups)[None, :] < (n_groups[:, None] - 1)
    chars = (groups | (more.astype(np.int64) << 5)) + 48
    valid = np.arange(max_groups)[None, :] < n_groups[:, None]
    text = chars[valid].astype(np.uint8).tobytes().decode("ascii")
    offsets = np.concatenate(([0], np.cumsum(n_groups)))
    return text, offsets


def encode_mask(mask: npt.NDArray[np.bool_]) -> str:
    """Compressed COCO RLE counts of one boolean mask (helper for tests and debugging)."""
    height, width = mask.shape
    runs = label_runs(mask.astype(np.uint8))
    if runs.labels.size == 0:
        return _pack(np.array([height * width], dtype=np.int64), np.zeros(1, dtype=np.int64))[0]
    return runs.counts[0]


def decode_counts(text: str) -> list[int]:
    """Unpack a compressed COCO RLE string into its run counts (zeros first, alternating)."""
    counts: list[int] = []
    pos = 0
    while pos < len(text):
        value = 0
        shift = 0
        while True:
            group = ord(text[pos]) - 48
            pos += 1
            value |= (group & 0x1F) << shift
            shift += 5
            if not group & 0x20:
                if group & 0x10:
                    value |= -1 << shift
                break
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts


def decode_mask(text: str, height: int, width: int) -> npt.NDArray[np.bool_]:
    """The boolean mask of a compressed COCO RLE string (helper for tests and debugging)."""
    counts = decode_counts(text)
    values = np.arange(len(counts)) % 2 == 1
    flat = np.repeat(values, counts)
    if flat.size != height * width:
        raise ValueError(f"RLE covers {flat.size} pixels, expected {height * width}")
    return flat.reshape(width, height).T
