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


class TooManyRuns(ValueError):
    """The map has more labelled runs than the caller's limit (noise, not a mask): refused, because
    every run costs memory here and in the COCO output."""


# Columns transposed per step: a block of 2^18 pixels (512 KiB of uint16) stays in cache while it is
# turned column-major, and a frame never needs a second full-size copy of its map.
_BLOCK_PIXELS = 1 << 18


def label_runs(labels: npt.NDArray[np.integer[Any]], *, max_runs: int | None = None) -> SegmentRuns:
    """Find every run of every non-zero label of a 2-D map in column-major order.

    Returns, per label present, its area, bounding box and compressed COCO RLE counts; labels
    absent from the map do not appear. The map is read a band of columns at a time (column-major
    order is contiguous per band), so the extra memory is one block plus the runs themselves.
    Raises `TooManyRuns` when there are more than ``max_runs`` labelled runs.
    """
    height, width = labels.shape
    total = height * width
    if total == 0:
        return _no_runs()
    step = max(1, _BLOCK_PIXELS // height)
    starts_parts: list[IntArray] = []
    values_parts: list[IntArray] = []
    found = 0
    previous: int | None = None  # value of the last pixel of the previous block
    for c0 in range(0, width, step):
        block = np.ascontiguousarray(labels[:, c0 : c0 + step].T).reshape(-1)
        change = np.flatnonzero(block[1:] != block[:-1]) + 1
        if previous is None or int(block[0]) != previous:
            change = np.concatenate(([0], change))
        previous = int(block[-1])
        values = block[change]
        keep = values != 0
        # Runs of 0 are needed only as separators: a labelled run ends where any other run starts.
        starts_parts.append(change.astype(np.int64) + c0 * height)
        values_parts.append(values.astype(np.int64))
        found += int(np.count_nonzero(keep))
        if max_runs is not None and found > max_runs:
            raise TooManyRuns(f"more than {max_runs} labelled runs")
    starts = np.concatenate(starts_parts)
    all_values = np.concatenate(values_parts)
    ends = np.append(starts[1:], total)
    keep = all_values != 0
    starts, ends, values = starts[keep], ends[keep], all_values[keep]
    if values.size == 0:
        return _no_runs()
    # Stable sort keeps each label's runs in column-major order, which the RLE needs.
    order = np.argsort(values, kind="stable")
    starts, ends, values = starts[order], ends[order], values[order]
    first = np.flatnonzero(np.concatenate(([True], values[1:] != values[:-1])))
    present = values[first]
    areas = np.add.reduceat(ends - starts, first)
    bboxes = _bboxes(starts, ends, first, height)
    counts = _pack_all(starts, ends, first, total)
    return SegmentRuns(present, areas, bboxes, counts)


def _no_runs() -> SegmentRuns:
    empty = np.zeros(0, dtype=np.int64)
    return SegmentRuns(empty, empty, np.zeros((0, 4), dtype=np.int64), ())


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


# Counts packed per step: the packer's temporaries are (counts × groups) wide, so a frame with
# hundreds of thousands of runs is packed in slices of bounded memory.
_PACK_STEP = 1 << 16


def _pack(counts: IntArray, index_in_seg: IntArray) -> tuple[str, IntArray]:
    """The pycocotools string of ``counts``; also the char offset where each count starts."""
    deltas = counts.copy()
    later = np.flatnonzero(index_in_seg > 2)
    deltas[later] -= counts[later - 2]
    del later
    parts: list[bytes] = []
    sizes: list[IntArray] = []
    for at in range(0, deltas.size, _PACK_STEP):
        chars, n_groups = _pack_slice(deltas[at : at + _PACK_STEP])
        parts.append(chars)
        sizes.append(n_groups)
    offsets = np.concatenate(([0], np.cumsum(np.concatenate(sizes)))) if sizes else np.zeros(1, np.int64)
    return b"".join(parts).decode("ascii"), offsets


def _pack_slice(deltas: IntArray) -> tuple[bytes, IntArray]:
    # Groups needed: smallest k with -2^(5k-1) <= x < 2^(5k-1) (the top bit of the last group is
    # the sign, which is why the encoder keeps going while that bit disagrees with the rest).
    magnitude = np.where(deltas < 0, ~deltas, deltas)
    bits = np.zeros(deltas.size, dtype=np.int64)
    while True:
        nonzero = magnitude > 0
        if not nonzero.any():
            break
        bits += nonzero
        magnitude >>= 1
    n_groups = bits // 5 + 1
    max_groups = int(n_groups.max())
    shifts = 5 * np.arange(max_groups, dtype=np.int64)
    groups = (deltas[:, None] >> shifts[None, :]) & 0x1F
    more = np.arange(max_groups)[None, :] < (n_groups[:, None] - 1)
    chars = (groups | (more.astype(np.int64) << 5)) + 48
    valid = np.arange(max_groups)[None, :] < n_groups[:, None]
    return chars[valid].astype(np.uint8).tobytes(), n_groups


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
