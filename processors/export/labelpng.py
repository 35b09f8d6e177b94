"""Label PNGs in and out at export speed: a reader for the ones `processors.masks.png` writes, an RGB writer.

The job's ``semantic.png`` (8-bit palette, filter None) and ``instances.png`` (16-bit grey, filter
Sub) are read with one inflate and a numpy pass instead of Pillow's row-by-row unfilter; any PNG
laid out otherwise (an older job, another writer) goes through Pillow. The RGB writer is for
panoptic segment maps: deterministic bytes, Sub filter.

Inflate goes through libdeflate (`deflate`) and deflate through ISA-L (`isal`), not zlib: on a
1080p label frame zlib spends ~10 ms inflating instances.png (libdeflate ~0.3 ms, ISA-L ~1.5 ms) and
4-12 ms deflating a new 8-bit or RGB frame (ISA-L ~0.3-0.8 ms, libdeflate 3-9 ms), which is what
lets a panoptic or VOC export run at about the speed of copying the jobs (README, bench/export.py).
libdeflate inflates into a buffer of the size the header promises, so a hostile stream cannot make
it allocate more. ISA-L's output is a pure function of the input for a given ISA-L build (the same
on every x86-64 CPU with SSE4.2), so a re-run writes identical bytes; its level 1 files are ~1.2-1.8x
zlib's here (tens of KB a frame, against a ~700 KB source image).
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Sequence

import deflate
import numpy as np
import numpy.typing as npt
from isal import isal_zlib

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: ISA-L level 1: as fast as level 0 on label masks and a third smaller.
_LEVEL = 1


class LabelPngError(ValueError):
    """Not a readable label PNG."""


def read_label_png(data: bytes) -> npt.NDArray[np.uint16]:
    """Pixel values (palette indices or grey levels) of an 8-bit palette/grey or 16-bit grey PNG."""
    fast = _read_fast(data)
    return fast if fast is not None else _read_pillow(data)


def _inflated(data: bytes) -> tuple[bytearray, int, int, int, int] | None:
    """(image data inflated: per row its filter byte, then its bytes; width, height, bit depth, colour
    type) of an 8-bit palette/grey or 16-bit grey, non-interlaced PNG; None for anything else."""
    if not data.startswith(_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(">IIBBBBB", data[16:29])
    if (depth, colour) not in ((8, 3), (8, 0), (16, 0)) or compression or filtering or interlace:
        return None
    idat: list[bytes] = []
    pos = len(_SIGNATURE)
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        if kind == b"IDAT":
            idat.append(data[pos + 8 : pos + 8 + length])
        elif kind == b"IEND":
            break
        pos += 12 + length
    raw = _inflate(b"".join(idat), height * (width * depth // 8 + 1))
    return None if raw is None else (raw, width, height, depth, colour)


def _filtered_rows(data: bytes) -> tuple[npt.NDArray[np.uint8], int, int, int, npt.NDArray[np.uint8]] | None:
    """(rows without their filter byte, width, height, bit depth, filter bytes) of an 8-bit palette/grey
    or 16-bit grey, non-interlaced PNG; None for anything else."""
    inflated = _inflated(data)
    if inflated is None:
        return None
    raw, width, height, depth, _ = inflated
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(height, width * depth // 8 + 1)
    return rows[:, 1:], width, height, depth, rows[:, 0]


def _read_fast(data: bytes) -> npt.NDArray[np.uint16] | None:
    parsed = _filtered_rows(data)
    if parsed is None:
        return None
    pixels, width, height, depth, filters = parsed
    bpp = depth // 8
    if not filters.any():
        unfiltered = pixels
    elif (filters == 1).all():
        # Sub: each byte plus the byte one pixel to its left: a running sum per byte lane, mod 256.
        lanes = np.ascontiguousarray(pixels.reshape(height, width, bpp).transpose(0, 2, 1))
        summed = np.cumsum(lanes, axis=2, dtype=np.uint8)
        unfiltered = summed.transpose(0, 2, 1).reshape(height, width * bpp)
    else:
        return None  # Up/Average/Paeth rows: not what labelhook writes; Pillow handles them
    if bpp == 1:
        return unfiltered.astype(np.uint16)
    return np.ascontiguousarray(unfiltered).view(">u2").astype(np.uint16)


def grey16_to_panoptic_rgb(data: bytes) -> bytes | None:
    """A 16-bit grey PNG of segment ids (as `processors.masks.png` writes ``instances.png``) re-wrapped
    as panopticapi's RGB PNG (R = id mod 256, G = id div 256, B = 0) without unfiltering a pixel.

    Sub filtering works byte lane by byte lane, so the filtered low/high lanes of the grey rows are
    already the filtered R/G lanes of the RGB rows: only the lanes are rearranged and recompressed.
    None when the PNG is laid out otherwise (the caller decodes it then).
    """
    parsed = _filtered_rows(data)
    if parsed is None:
        return None
    rows, width, height, depth, filters = parsed
    if depth != 16 or not (filters == 1).all():
        return None
    grey = rows.reshape(height, width, 2)
    rgb = np.empty((height, width * 3 + 1), dtype=np.uint8)
    rgb[:, 0] = 1
    lanes = rgb[:, 1:].reshape(height, width, 3)
    lanes[..., 0] = grey[..., 1]  # low byte: R
    lanes[..., 1] = grey[..., 0]  # high byte: G
    lanes[..., 2] = 0  # ids are 16-bit: B (id div 256²) is always 0
    return _png_rgb(width, height, rgb)


def with_palette(data: bytes, palette: Sequence[tuple[int, int, int]]) -> bytes | None:
    """An 8-bit palette PNG with its colours replaced and its pixels (IDAT) untouched; None when
    ``data`` is not one. For a class mask whose indices already mean the right classes."""
    if not data.startswith(_SIGNATURE) or data[12:16] != b"IHDR" or data[24:26] != b"\x08\x03":
        return None
    parts = [_SIGNATURE]
    pos = len(_SIGNATURE)
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if end > len(data):
            return None
        if kind == b"PLTE":
            parts.append(_chunk(b"PLTE", bytes(channel for colour in palette for channel in colour)))
        elif kind in (b"IHDR", b"IDAT", b"IEND"):  # transparency and text are not label data
            parts.append(data[pos:end])
        if kind == b"IEND":
            return b"".join(parts)
        pos = end
    return None


def remapped_palette(
    data: bytes, lut: Sequence[int], palette: Sequence[tuple[int, int, int]]
) -> bytes | None:
    """An 8-bit palette PNG of unfiltered rows (as `processors.masks.png` writes ``semantic.png``)
    with each index ``i`` replaced by ``lut[i]`` and its colours by ``palette``; None when ``data`` is
    laid out otherwise or holds an index ``lut`` does not map (the caller decodes it then).

    Filter "None" rows are the pixels themselves, so the inflated bytes go through one
    ``bytearray.translate`` (the filter bytes are put back to 0 after it) and are deflated again.
    """
    inflated = _inflated(data)
    if inflated is None or inflated[4] != 3 or not 0 < len(lut) <= 256:
        return None
    raw, width, height, _, _ = inflated
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(height, width + 1)
    if rows[:, 0].any() or int(rows.max(initial=0)) >= len(lut):
        return None
    mapped = raw.translate(bytes(lut) + bytes(256 - len(lut)))
    out = np.frombuffer(mapped, dtype=np.uint8).reshape(height, width + 1)
    out[:, 0] = 0  # the filter bytes went through the table too
    return _png_palette(width, height, out, palette)


def grey16_as_palette(data: bytes, palette: Sequence[tuple[int, int, int]]) -> bytes | None:
    """A 16-bit grey PNG whose values are all below 256, as an 8-bit palette PNG of the same values,
    without unfiltering: with every high byte zero, the filtered low-byte lane is the filtered 8-bit
    image. None when ``data`` is laid out otherwise or holds a value over 255."""
    parsed = _filtered_rows(data)
    if parsed is None:
        return None
    rows, width, height, depth, filters = parsed
    if depth != 16 or not (filters.max(initial=0) <= 1 and (filters == filters[0]).all()):
        return None
    # Each (high, low) byte pair read little-endian: the high byte lands in bits 0-7, the low in 8-15
    # (contiguous reads: ~5x faster than picking every other byte).
    pairs = rows.view("<u2")
    if int(np.bitwise_or.reduce(pairs, axis=None)) & 0xFF:
        return None  # a high byte (filtered or not, all zero means every value < 256)
    out = np.empty((height, width + 1), dtype=np.uint8)
    out[:, 0] = filters
    out[:, 1:] = pairs >> 8
    return _png_palette(width, height, out, palette)


def _png_palette(
    width: int, height: int, filtered_rows: npt.NDArray[np.uint8], palette: Sequence[tuple[int, int, int]]
) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0)
    plte = _chunk(b"PLTE", bytes(channel for colour in palette for channel in colour))
    idat = _deflate(filtered_rows)
    return _SIGNATURE + _chunk(b"IHDR", header) + plte + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _read_pillow(data: bytes) -> npt.NDArray[np.uint16]:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            # Palette images give their indices, grey ones their levels: never colours.
            return np.asarray(image).astype(np.uint16)
    except (OSError, SyntaxError, ValueError) as exc:
        raise LabelPngError(str(exc)) from exc


def encode_rgb(pixels: npt.NDArray[np.uint8]) -> bytes:
    """8-bit RGB PNG of an H×W×3 array (filter Sub, run-length deflate, no ancillary chunks)."""
    height, width, _ = pixels.shape
    flat = pixels.reshape(height, width * 3)
    rows = np.empty((height, width * 3 + 1), dtype=np.uint8)
    rows[:, 0] = 1
    rows[:, 1:4] = flat[:, :3]
    np.subtract(flat[:, 3:], flat[:, :-3], out=rows[:, 4:])
    return _png_rgb(width, height, rows)


def _png_rgb(width: int, height: int, filtered_rows: npt.NDArray[np.uint8]) -> bytes:
    idat = _deflate(filtered_rows)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return _SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _inflate(compressed: bytes, size: int) -> bytearray | None:
    """The zlib stream inflated, when it holds exactly ``size`` bytes (None otherwise: a short, long
    or corrupt stream); never more than ``size`` bytes are allocated, whatever the stream holds."""
    try:
        raw = deflate.zlib_decompress(compressed, size)
    except deflate.DeflateError:
        return None
    return raw if len(raw) == size else None


def _deflate(filtered_rows: npt.NDArray[np.uint8]) -> bytes:
    """One zlib stream of the rows (the IDAT payload)."""
    return isal_zlib.compress(np.ascontiguousarray(filtered_rows).data, _LEVEL)


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
