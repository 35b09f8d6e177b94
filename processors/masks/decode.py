"""Pure mask decoding: PNG bytes → RGBA, RGBA + labelmap → semantic/instance maps, areas, boxes, RLE.

No I/O besides bytes in and out. One frame costs one lookup-table pass over the pixels and one
column-major pass over the instance map; everything per segment is derived from run boundaries.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from processors.errors import Permanent
from processors.masks.labelmap import Labelmap, Segment, build_labelmap
from processors.masks.png import encode_grey16, encode_grey16_bands, encode_palette_bands, row_bands
from processors.masks.rle import TooManyRuns, label_runs

__all__ = [
    "FoundSegment",
    "FrameFacts",
    "FrameMasks",
    "Labelmap",
    "build_labelmap",
    "decode_frame",
    "decode_png",
    "encode_frame_semantic_png",
    "encode_instances_png",
    "encode_semantic_png",
    "read_rgba",
]

# The unknown-colour report lists at most this many colours (the lowest values), see `_ColourCounts`.
MAX_UNKNOWN_COLOURS = 4096
# A 4K frame with 500 large instances has about 250k column runs (1 per 33 pixels); noise has one per
# pixel. The limit keeps the run tables of a frame within ~3 bytes per pixel.
PIXELS_PER_RUN = 16
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
class FrameFacts:
    """What a job's annotations keep of a frame once its PNGs are written (no pixel arrays)."""

    width: int
    height: int
    segments: tuple[FoundSegment, ...]
    unknown_colors: dict[str, int]


@dataclass(frozen=True)
class FrameMasks:
    """Everything decoded from one mask frame."""

    labels: npt.NDArray[np.unsignedinteger[Any]]  # segment number → labelmap id (`Labelmap.segment_labels`)
    instances: npt.NDArray[np.uint16]  # segment numbers, 0 = none
    segments: tuple[FoundSegment, ...]  # in segment-number order
    unknown_colors: dict[str, int]  # opaque colours in no legend entry → pixels (left unlabeled)
    empty_instances: tuple[str, ...]  # colours of segments with no pixels in this frame

    @property
    def semantic(self) -> npt.NDArray[np.unsignedinteger[Any]]:
        """Labelmap id per pixel; uint8, uint16 if > 256 ids (built on demand: the PNG writer
        derives it a band at a time instead)."""
        return self.labels[self.instances]

    @property
    def height(self) -> int:
        return int(self.instances.shape[0])

    def facts(self) -> FrameFacts:
        return FrameFacts(self.width, self.height, self.segments, self.unknown_colors)

    @property
    def width(self) -> int:
        return int(self.instances.shape[1])


def read_rgba(data: bytes, *, max_pixels: int) -> npt.NDArray[np.uint8]:
    """Decode a PNG mask into a read-only H×W×4 uint8 array (a reference view of what `decode_png` sees).

    RGB gets alpha 255; palette, grey and tRNS transparency are expanded; 16-bit samples keep their
    high byte. The size is checked from the header before any pixel is decoded. Raises Permanent on
    anything that is not a complete, valid PNG within ``max_pixels``.
    """
    with _open_png(data, max_pixels) as image:
        packed = np.concatenate([band for _, band in _packed_bands(image)])
    return packed.view(np.uint8).reshape(image.height, image.width, 4)


def decode_png(data: bytes, labelmap: Labelmap, *, max_pixels: int) -> FrameMasks:
    """Decode a PNG mask straight into its instance map and per-segment facts.

    The same result as ``decode_frame(read_rgba(data))``, without ever holding a full RGBA copy: the
    decoded image is read a band of rows at a time, each band mapped to segment numbers over its
    runs of equal pixels (a flat vendor mask has a few runs per row). Raises Permanent on any bad
    input, including noise (see `measure_instances`).
    """
    with _open_png(data, max_pixels) as image:
        mapper = _Mapper(labelmap, image.width)
        instances = np.empty((image.height, image.width), dtype=np.uint16)
        for y0, band in _packed_bands(image):
            instances[y0 : y0 + band.shape[0]] = mapper.map(band)
    return measure_instances(instances, labelmap, mapper.unknown_colors())


@contextmanager
def _open_png(data: bytes, max_pixels: int) -> Iterator[Image.Image]:
    width, height = _png_size(data)
    if width * height > max_pixels:
        raise Permanent(f"mask is {width}x{height} = {width * height} pixels, over the limit of {max_pixels}")
    try:
        image = Image.open(io.BytesIO(data), formats=["PNG"])
    except Image.DecompressionBombError as exc:
        raise Permanent(f"mask is too large to decode: {exc}") from exc
    except _DECODE_ERRORS as exc:
        raise Permanent(f"mask PNG is corrupt: {exc}") from exc
    with image:
        try:
            image.load()
        except Image.DecompressionBombError as exc:
            raise Permanent(f"mask is too large to decode: {exc}") from exc
        except _DECODE_ERRORS as exc:
            raise Permanent(f"mask PNG is corrupt: {exc}") from exc
        if image.mode not in _MODES:
            raise Permanent(f"mask PNG has unsupported pixel mode {image.mode}")
        yield image


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


# Rows per band: about 1 MiB of packed pixels, so a band's temporaries stay in cache and a frame
# never needs more than the decoded image, its instance map and one band.
_BAND_BYTES = 1 << 20
_MODES = ("RGBA", "RGB", "P", "PA", "L", "LA", "1", "I;16", "I;16B", "I;16L", "I")
_OPAQUE = np.uint32(0xFF000000)


def _packed_bands(image: Image.Image) -> Iterator[tuple[int, npt.NDArray[np.uint32]]]:
    """The image as H×W little-endian words R | G<<8 | B<<16 | A<<24, a band of rows at a time."""
    width, height = image.size
    rows = max(1, _BAND_BYTES // (4 * width))
    palette = _palette_words(image) if image.mode == "P" else None
    transparency = image.info.get("transparency")
    for y0 in range(0, height, rows):
        with image.crop((0, y0, width, min(height, y0 + rows))) as band:
            yield y0, _pack(band, palette, transparency)


def _pack(
    band: Image.Image, palette: npt.NDArray[np.uint32] | None, transparency: Any
) -> npt.NDArray[np.uint32]:
    mode = band.mode
    words: npt.NDArray[np.uint32]
    if mode == "RGBA":
        words = np.asarray(band).view("<u4")[..., 0]
        return words
    if palette is not None:
        words = palette[np.asarray(band)]
        return words
    if mode == "RGB":
        words = np.frombuffer(band.tobytes("raw", "RGBX"), dtype="<u4").reshape(band.height, band.width)
        words = words | _OPAQUE
        if isinstance(transparency, tuple) and len(transparency) == 3:
            r, g, b = (int(v) & 0xFF for v in transparency)
            words[words == np.uint32(r | g << 8 | b << 16 | 0xFF000000)] = r | g << 8 | b << 16
        return words
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        samples = np.asarray(band)
        grey = (np.clip(samples, 0, 0xFFFF) >> 8).astype(np.uint32)
        words = grey * np.uint32(0x010101) | _OPAQUE
        if isinstance(transparency, int):
            words[samples == transparency] &= np.uint32(0xFFFFFF)  # as Pillow: grey kept, alpha 0
        return words
    # L, LA, PA and 1: rare for masks; Pillow's own conversion applies their transparency.
    with band.convert("RGBA") as rgba:
        words = np.asarray(rgba).view("<u4")[..., 0].copy()
        return words


def _palette_words(image: Image.Image) -> npt.NDArray[np.uint32]:
    """Palette index → packed RGBA, tRNS applied, by letting Pillow convert all 256 indices once."""
    table = Image.frombytes("P", (256, 1), bytes(range(256)))
    if image.palette is not None:
        table.putpalette(image.palette.tobytes(), image.palette.mode)
    if "transparency" in image.info:
        table.info["transparency"] = image.info["transparency"]
    with table.convert("RGBA") as rgba:
        return np.asarray(rgba).view("<u4").reshape(256).copy()


class _Mapper:
    """Packed pixels → segment numbers, through the runs of each row; counts unknown opaque colours."""

    def __init__(self, labelmap: Labelmap, width: int) -> None:
        self.width = width
        self.keys, self.numbers = labelmap.packed_colours
        self.unknown = _ColourCounts()

    def map(self, band: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint16]:
        rows, width = band.shape
        flat = band.reshape(-1)
        change = flat[1:] != flat[:-1]
        change[width - 1 :: width] = True  # every row starts a run
        starts = np.flatnonzero(change) + 1
        starts = np.concatenate(([0], starts))
        lengths = np.diff(np.append(starts, flat.size))
        words = flat[starts]
        colours = words & np.uint32(0xFFFFFF)
        opaque = words >= np.uint32(0x01000000)
        numbers = np.zeros(starts.size, dtype=np.uint16)
        if self.keys.size:
            at = np.minimum(np.searchsorted(self.keys, colours), self.keys.size - 1)
            hit = (self.keys[at] == colours) & opaque
            numbers[hit] = self.numbers[at[hit]]
            missing = opaque & ~hit
        else:
            missing = opaque
        if missing.any():
            self.unknown.add(colours[missing], lengths[missing])
        return np.repeat(numbers, lengths).reshape(rows, width)

    def unknown_colors(self) -> dict[str, int]:
        return self.unknown.as_dict()


class _ColourCounts:
    """Pixels per unknown colour, keeping the `MAX_UNKNOWN_COLOURS` lowest colours (0xRRGGBB) exactly.

    A noise image has millions of colours; an unbounded table would cost more than the frame.
    Keeping the lowest values (not the first seen) makes the report exact for the colours it lists
    and independent of band order: a colour once dropped can never re-enter the lowest set.
    """

    def __init__(self) -> None:
        self.colours = np.zeros(0, dtype=np.uint32)
        self.counts = np.zeros(0, dtype=np.int64)

    def add(self, packed: npt.NDArray[np.uint32], lengths: npt.NDArray[np.int64]) -> None:
        # Ordered as 0xRRGGBB, the order of the "#rrggbb" names, so a job's merge keeps the same set.
        colours = ((packed & 0xFF) << 16) | (packed & 0xFF00) | (packed >> 16)
        merged = np.concatenate((self.colours, colours))
        weights = np.concatenate((self.counts, lengths.astype(np.int64)))
        distinct, inverse = np.unique(merged, return_inverse=True)
        totals = np.bincount(inverse.reshape(-1), weights=weights, minlength=distinct.size)
        self.colours = distinct[:MAX_UNKNOWN_COLOURS]
        self.counts = totals[:MAX_UNKNOWN_COLOURS].astype(np.int64)

    def as_dict(self) -> dict[str, int]:
        named = {
            f"#{value:06x}": int(total)
            for value, total in zip(self.colours.tolist(), self.counts.tolist(), strict=True)
        }
        return dict(sorted(named.items()))


def decode_frame(rgba: npt.NDArray[np.uint8], labelmap: Labelmap) -> FrameMasks:
    """Map every pixel of an H×W×4 RGBA array to a segment and class; measure each segment present.

    Alpha 0 is unlabeled whatever the RGB. Opaque pixels whose colour has no legend entry (e.g.
    anti-aliased edges) are unlabeled and counted per colour in ``unknown_colors``.
    """
    if rgba.ndim != 3 or rgba.shape[2] != 4 or rgba.dtype != np.uint8:
        raise ValueError(f"expected an H×W×4 uint8 array, got {rgba.dtype} {rgba.shape}")
    # One little-endian word per pixel: R | G<<8 | B<<16 | A<<24, whatever the host byte order.
    packed = np.ascontiguousarray(rgba).view("<u4")[..., 0]
    height, width = packed.shape
    mapper = _Mapper(labelmap, width)
    instances = np.empty((height, width), dtype=np.uint16)
    rows = max(1, _BAND_BYTES // (4 * max(width, 1)))
    for y0 in range(0, height, rows):
        instances[y0 : y0 + rows] = mapper.map(packed[y0 : y0 + rows])
    return measure_instances(instances, labelmap, mapper.unknown_colors())


def measure_instances(
    instances: npt.NDArray[np.uint16],
    labelmap: Labelmap,
    unknown_colors: dict[str, int] | None = None,
) -> FrameMasks:
    """Measure an instance map (segment number per pixel, 0 unlabeled): per segment present its area,
    box and COCO RLE. Used for decoded masks and for rasterised shapes (CVAT).

    A map with more than one labelled column-major run per `PIXELS_PER_RUN` pixels is refused
    (Permanent): that is noise, not regions, and each run costs memory here and in the COCO output.
    """
    max_runs = max(4096, instances.size // PIXELS_PER_RUN)
    try:
        runs = label_runs(instances, max_runs=max_runs)
    except TooManyRuns as exc:
        raise Permanent(f"mask has {exc} (noise, not a segmentation mask)") from exc
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
    return FrameMasks(labelmap.segment_labels, instances, found, unknown_colors or {}, empty)


def encode_semantic_png(semantic: npt.NDArray[np.unsignedinteger[Any]], labelmap: Labelmap) -> bytes:
    """``semantic.png``: 8-bit palette PNG coloured like the labelmap; 16-bit grey if > 256 ids."""
    height, width = semantic.shape
    return _encode_semantic(width, height, row_bands(semantic), labelmap)


def encode_frame_semantic_png(frame: FrameMasks, labelmap: Labelmap) -> bytes:
    """`encode_semantic_png` of ``frame.semantic``, derived from the instance map a band at a time."""
    bands = (frame.labels[band] for band in row_bands(frame.instances))
    return _encode_semantic(frame.width, frame.height, bands, labelmap)


def _encode_semantic(
    width: int, height: int, bands: Iterable[npt.NDArray[np.unsignedinteger[Any]]], labelmap: Labelmap
) -> bytes:
    if len(labelmap.classes) <= 256:
        palette = [_rgb(entry.color) for entry in labelmap.classes]
        return encode_palette_bands(width, height, bands, palette)
    return encode_grey16_bands(width, height, bands)


def encode_instances_png(instances: npt.NDArray[np.uint16]) -> bytes:
    """``instances.png``: 16-bit grey PNG of segment numbers (0 = none)."""
    return encode_grey16(instances)


def _rgb(colour: str) -> tuple[int, int, int]:
    value = int(colour[1:], 16)
    return value >> 16, (value >> 8) & 0xFF, value & 0xFF
