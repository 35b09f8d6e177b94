"""Pure mask decoding: PNG bytes → RGBA, RGBA + labelmap → semantic/instance maps, areas, boxes, RLE.

No I/O besides bytes in and out. One frame costs one lookup-table pass over the pixels and one
column-major pass over the instance map; everything per segment is derived from run boundaries.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from processors.errors import Permanent
from processors.masks.labelmap import Labelmap, Segment, build_labelmap
from processors.masks.png import encode_grey16, encode_palette
from processors.masks.rle import label_runs

__all__ = [
    "FoundSegment",
    "FrameMasks",
    "Labelmap",
    "build_labelmap",
    "decode_frame",
    "encode_instances_png",
    "encode_semantic_png",
    "read_rgba",
]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Pillow raises all of these on hostile or damaged input (zlib errors surface as OSError or
# zlib.error, broken chunk tables as SyntaxError/struct.error/EOFError).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError)


@dataclass(frozen=True)
class FoundSegment:
    """A segment with pixels in this frame."""

    segment: Segment
    area: int
    bbox: tuple[int, int, int, int]  # x, y, w, h
    counts: str  # compressed COCO RLE, column-major


@dataclass(frozen=True)
class FrameMasks:
    """Everything decoded from one mask frame."""

    semantic: npt.NDArray[np.unsignedinteger[Any]]  # labelmap ids; uint8, uint16 if > 256 ids
    instances: npt.NDArray[np.uint16]  # segment numbers, 0 = none
    segments: tuple[FoundSegment, ...]  # in segment-number order
    unknown_colors: dict[str, int]  # opaque colours in no legend entry → pixels (left unlabeled)
    empty_instances: tuple[str, ...]  # colours of segments with no pixels in this frame

    @property
    def height(self) -> int:
        return int(self.instances.shape[0])

    @property
    def width(self) -> int:
        return int(self.instances.shape[1])


def read_rgba(data: bytes, *, max_pixels: int) -> npt.NDArray[np.uint8]:
    """Decode a PNG mask into a read-only H×W×4 uint8 array.

    RGB gets alpha 255; palette, grey and tRNS transparency are expanded; 16-bit samples keep their
    high byte. The size is checked from the header before any pixel is decoded. Raises Permanent on
    anything that is not a complete, valid PNG within ``max_pixels``.
    """
    width, height = _png_size(data)
    if width * height > max_pixels:
        raise Permanent(f"mask is {width}x{height} = {width * height} pixels, over the limit of {max_pixels}")
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
            image.load()
            return _to_rgba(image)
    except Image.DecompressionBombError as exc:
        raise Permanent(f"mask is too large to decode: {exc}") from exc
    except _DECODE_ERRORS as exc:
        raise Permanent(f"mask PNG is corrupt: {exc}") from exc


def _png_size(data: bytes) -> tuple[int, int]:
    """Width and height from IHDR, after checking every chunk is complete and intact.

    Walking the chunk table first gives a clear reason for truncation (whatever the process-wide
    ``ImageFile.LOAD_TRUNCATED_IMAGES`` says) and costs one CRC pass over the compressed bytes.
    """
    if not data.startswith(_PNG_SIGNATURE):
        raise Permanent("mask is not a PNG image")
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise Permanent("mask PNG is truncated or has no IHDR header")
    width, height = struct.unpack(">II", data[16:24])
    if width == 0 or height == 0:
        raise Permanent("mask PNG has zero width or height")
    pos = len(_PNG_SIGNATURE)
    while True:
        if pos + 8 > len(data):
            raise Permanent("mask PNG is truncated (no IEND chunk)")
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if end > len(data):
            raise Permanent(f"mask PNG is truncated inside a {kind.decode('latin-1')!r} chunk")
        if zlib.crc32(data[pos + 4 : end - 4]) != struct.unpack(">I", data[end - 4 : end])[0]:
            raise Permanent(f"mask PNG is corrupt (bad CRC in a {kind.decode('latin-1')!r} chunk)")
        if kind == b"IEND":
            return width, height
        pos = end


def _to_rgba(image: Image.Image) -> npt.NDArray[np.uint8]:
    if image.mode == "RGBA":
        return np.asarray(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        return _grey16_to_rgba(image)
    if image.mode in ("RGB", "P", "PA", "L", "LA", "1"):
        # convert() applies tRNS transparency ("transparency" in info) as alpha 0.
        return np.asarray(image.convert("RGBA"))
    raise Permanent(f"mask PNG has unsupported pixel mode {image.mode}")


def _grey16_to_rgba(image: Image.Image) -> npt.NDArray[np.uint8]:
    samples = np.asarray(image).astype(np.int64)
    grey = (np.clip(samples, 0, 0xFFFF) >> 8).astype(np.uint8)
    rgba = np.empty((*grey.shape, 4), dtype=np.uint8)
    rgba[..., :3] = grey[..., None]
    rgba[..., 3] = 255
    transparent = image.info.get("transparency")
    if isinstance(transparent, int):
        rgba[..., 3][samples == transparent] = 0
    return rgba


def decode_frame(rgba: npt.NDArray[np.uint8], labelmap: Labelmap) -> FrameMasks:
    """Map every pixel to a segment and class; measure each segment present.

    Alpha 0 is unlabeled whatever the RGB. Opaque pixels whose colour has no legend entry (e.g.
    anti-aliased edges) are unlabeled and counted per colour in ``unknown_colors``.
    """
    if rgba.ndim != 3 or rgba.shape[2] != 4 or rgba.dtype != np.uint8:
        raise ValueError(f"expected an H×W×4 uint8 array, got {rgba.dtype} {rgba.shape}")
    # One little-endian word per pixel: R | G<<8 | B<<16 | A<<24, whatever the host byte order.
    packed = np.ascontiguousarray(rgba).view("<u4")[..., 0]
    opaque = packed >= 0x01000000
    colour = packed & np.uint32(0xFFFFFF)
    instances = labelmap.color_lut[colour]
    unknown = instances == 0
    unknown &= opaque
    unknown_colors = _count_colours(colour, unknown)
    del colour, unknown
    np.multiply(instances, opaque, out=instances)
    del opaque

    return measure_instances(instances, labelmap, unknown_colors)


def measure_instances(
    instances: npt.NDArray[np.uint16], labelmap: Labelmap, unknown_colors: dict[str, int] | None = None
) -> FrameMasks:
    """Measure an instance map (segment number per pixel, 0 unlabeled): semantic map, and per segment
    present its area, box and COCO RLE. Used for decoded masks and for rasterised shapes (CVAT)."""
    semantic = labelmap.segment_labels[instances]
    if len(labelmap.classes) <= 256:
        semantic = semantic.astype(np.uint8)
    runs = label_runs(instances)
    by_number = {segment.number: segment for segment in labelmap.segments}
    found = tuple(
        FoundSegment(
            segment=by_number[int(number)],
            area=int(area),
            bbox=(int(box[0]), int(box[1]), int(box[2]), int(box[3])),
            counts=counts,
        )
        for number, area, box, counts in zip(runs.labels, runs.areas, runs.bboxes, runs.counts, strict=True)
    )
    present = {int(number) for number in runs.labels}
    empty = tuple(segment.color for segment in labelmap.segments if segment.number not in present)
    return FrameMasks(semantic, instances, found, unknown_colors or {}, empty)


def _count_colours(colour: npt.NDArray[np.uint32], where: npt.NDArray[np.bool_]) -> dict[str, int]:
    """Pixel count per colour at ``where``, as ``{"#rrggbb": n}`` sorted by colour."""
    index = np.flatnonzero(where)
    if index.size == 0:
        return {}
    values = colour.reshape(-1)[index]
    # Collapse repeats of one colour first, so a large unlisted area costs per run, not per pixel.
    breaks = np.flatnonzero(values[1:] != values[:-1]) + 1
    starts = np.concatenate(([0], breaks))
    lengths = np.diff(np.append(starts, values.size))
    distinct, inverse = np.unique(values[starts], return_inverse=True)
    totals = np.zeros(distinct.size, dtype=np.int64)
    np.add.at(totals, inverse, lengths)
    named = {
        f"#{value & 0xFF:02x}{(value >> 8) & 0xFF:02x}{value >> 16:02x}": int(total)
        for value, total in zip(distinct.tolist(), totals.tolist(), strict=True)
    }
    return dict(sorted(named.items()))


def encode_semantic_png(semantic: npt.NDArray[np.unsignedinteger[Any]], labelmap: Labelmap) -> bytes:
    """``semantic.png``: 8-bit palette PNG coloured like the labelmap; 16-bit grey if > 256 ids."""
    if len(labelmap.classes) <= 256:
        palette = [_rgb(entry.color) for entry in labelmap.classes]
        return encode_palette(semantic.astype(np.uint8, copy=False), palette)
    return encode_grey16(semantic.astype(np.uint16, copy=False))


def encode_instances_png(instances: npt.NDArray[np.uint16]) -> bytes:
    """``instances.png``: 16-bit grey PNG of segment numbers (0 = none)."""
    return encode_grey16(instances)


def _rgb(colour: str) -> tuple[int, int, int]:
    value = int(colour[1:], 16)
    return value >> 16, (value >> 8) & 0xFF, value & 0xFF
