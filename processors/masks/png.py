"""Minimal deterministic PNG writer for label maps (8-bit palette, 16-bit grey).

Written by hand rather than through Pillow because Pillow filters 16-bit grey rows adaptively
(about 5x slower on a 4K frame) and the bytes would follow Pillow's version. Here the output is a
pure function of the pixels: no timestamps, no text chunks, fixed filters and zlib settings.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Level 1 keeps a 4K frame in tens of milliseconds; label maps are long runs, so the runs strategy
# (after the Sub filter has turned every run into zeros) compresses about as well as level 6.
_LEVEL = 1


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


# Rows per zlib call: about 1 MiB of filtered bytes, so a frame's encoder needs one band of scratch
# memory, not a second copy of the frame. Fixed, so the deflate stream is the same on every run.
_BAND_BYTES = 1 << 20

Bands = Iterable[npt.NDArray[np.unsignedinteger[Any]]]


def _idat(bands: Iterable[npt.NDArray[np.uint8]], strategy: int) -> bytes:
    compressor = zlib.compressobj(_LEVEL, zlib.DEFLATED, 15, 9, strategy)
    parts = [compressor.compress(rows.data) for rows in bands]
    parts.append(compressor.flush())
    return b"".join(parts)


def _png(width: int, height: int, depth: int, colour_type: int, extra: bytes, data: bytes) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    return _SIGNATURE + _chunk(b"IHDR", header) + extra + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


def row_bands(pixels: npt.NDArray[Any]) -> Iterator[npt.NDArray[Any]]:
    """``pixels`` a band of rows at a time, in the size the encoders use."""
    height, width = pixels.shape
    step = band_rows(width, pixels.dtype.itemsize)
    for y0 in range(0, height, step):
        yield pixels[y0 : y0 + step]


def band_rows(width: int, itemsize: int) -> int:
    """Rows per band for a map ``width`` pixels wide with ``itemsize``-byte samples."""
    return max(1, _BAND_BYTES // max(1, width * itemsize))


def encode_palette(pixels: npt.NDArray[np.uint8], palette: Sequence[tuple[int, int, int]]) -> bytes:
    """8-bit palette PNG; ``palette[i]`` is the RGB shown for value ``i`` (at most 256 entries)."""
    height, width = pixels.shape
    return encode_palette_bands(width, height, row_bands(pixels), palette)


def encode_palette_bands(
    width: int, height: int, bands: Bands, palette: Sequence[tuple[int, int, int]]
) -> bytes:
    """`encode_palette` of an image given as consecutive bands of rows (uint8 values)."""

    def filtered() -> Iterator[npt.NDArray[np.uint8]]:
        for band in bands:
            rows = np.empty((band.shape[0], width + 1), dtype=np.uint8)
            rows[:, 0] = 0  # filter "None": palette indices are not numbers, and runs compress as they are
            rows[:, 1:] = band
            yield rows

    plte = _chunk(b"PLTE", bytes(channel for colour in palette for channel in colour))
    return _png(width, height, 8, 3, plte, _idat(filtered(), zlib.Z_RLE))


def encode_grey16(pixels: npt.NDArray[np.uint16]) -> bytes:
    """16-bit greyscale PNG of ``pixels``."""
    height, width = pixels.shape
    return encode_grey16_bands(width, height, row_bands(pixels))


def encode_grey16_bands(width: int, height: int, bands: Bands) -> bytes:
    """`encode_grey16` of an image given as consecutive bands of rows (values < 65536)."""

    def filtered() -> Iterator[npt.NDArray[np.uint8]]:
        for band in bands:
            raw = band.astype(">u2").view(np.uint8).reshape(band.shape[0], 2 * width)
            rows = np.empty((band.shape[0], 2 * width + 1), dtype=np.uint8)
            rows[:, 0] = 1  # filter "Sub" (bytes minus the same byte one pixel left): runs become zeros
            rows[:, 1:3] = raw[:, :2]
            np.subtract(raw[:, 2:], raw[:, :-2], out=rows[:, 3:])
            yield rows

    return _png(width, height, 16, 0, b"", _idat(filtered(), zlib.Z_RLE))
