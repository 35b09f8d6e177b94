"""Label Studio brush RLE (thi.ng `rle-pack`, the editor's encoder) → the alpha channel as a 2-D array.

Bit stream, most significant bit first: ``num`` (32 bits) values of ``wordsize`` (5 bits, +1) bits,
four run-length field sizes (4 bits each, +1), then chunks of ``flag`` (1) · ``class`` (2) · ``n``
(``rle_sizes[class]`` bits): flag 1 = the next word repeated ``n + 1`` times, flag 0 = ``n + 1``
literal words follow. The editor encodes the RGBA canvas, so ``num = width · height · 4`` and the
mask is every fourth value (alpha); RGB is either the label colour (older editors) or a copy of alpha
(newer ones) and is never used.

What the reference decoders (label-studio-sdk ``decode_rle``, thi.ng ``decode``) accept, this accepts:
any word size and run sizes from the header, multi-value literal chunks (the JS encoder writes them),
and anything after the ``num``-th value (the SDK's encoder pads with a whole extra byte when aligned).
What they would crash on or silently truncate is a `BrushError`: a stream that ends inside a chunk, a
run past ``num``, or a ``num`` that does not match the image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

_HEADER_BITS = 32 + 5 + 4 * 4


class BrushError(ValueError):
    """The RLE cannot be decoded into a mask of the expected size (the message says why)."""


def decode_values(
    data: bytes, *, max_values: int, stride: int = 1, offset: int = 0
) -> npt.NDArray[np.unsignedinteger[Any]]:
    """The values at positions ``offset + k·stride`` of an rle-pack stream; `BrushError` if malformed.

    ``stride=4, offset=3`` keeps only the alpha of an RGBA canvas, so a brush over a 100-megapixel
    image costs one byte per pixel, not four. The array type follows the word size (uint8 up to 8
    bits, as the reference decoders do). ``max_values`` is checked against the header before anything
    is allocated: the header is vendor-supplied and could claim four billion values.
    """
    total_bits = len(data) * 8
    if total_bits < _HEADER_BITS:
        raise BrushError(f"brush RLE is {len(data)} bytes, shorter than its 7-byte header")
    reader = _Bits(data)
    num = reader.read(32)
    word = reader.read(5) + 1
    sizes = [reader.read(4) + 1 for _ in range(4)]
    if num > max_values:
        raise BrushError(f"brush RLE declares {num} values, over the limit of {max_values}")
    dtype = np.uint8 if word <= 8 else np.uint16 if word <= 16 else np.uint32
    out: npt.NDArray[np.unsignedinteger[Any]] = np.zeros(_kept(num, stride, offset), dtype=dtype)
    bits: npt.NDArray[np.uint8] | None = None
    weights = 1 << np.arange(word - 1, -1, -1, dtype=np.uint64)
    i = 0
    while i < num:
        repeat = reader.read(1)
        run = reader.read(sizes[reader.read(2)]) + 1
        end = i + run
        if end > num:
            raise BrushError(f"brush RLE run of {run} at value {i} passes the declared end ({num})")
        first, stop = _kept(i, stride, offset), _kept(end, stride, offset)
        if repeat:
            value = reader.read(word)
            if first < stop:
                out[first:stop] = value
        else:
            # A literal chunk can hold thousands of words: decode the kept ones in one vectorised step.
            start = reader.skip(run * word)
            if first < stop:
                if bits is None:
                    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
                words = bits[start : start + run * word].reshape(run, word)
                kept = words[first * stride + offset - i :: stride].astype(np.uint64)
                out[first:stop] = kept @ weights
        i = end
    return out


def _kept(position: int, stride: int, offset: int) -> int:
    """How many kept positions (``offset + k·stride``) lie before ``position``."""
    return max(0, -((offset - position) // stride))


def decode_alpha(data: bytes, width: int, height: int) -> npt.NDArray[np.uint8]:
    """The ``height × width`` alpha channel of a brush RLE over a ``width × height`` RGBA canvas.

    `BrushError` unless the stream is well formed and declares exactly ``width · height · 4`` values.
    Alpha wider than 8 bits (not produced by any editor) is clipped to 255.
    """
    if width <= 0 or height <= 0:
        raise BrushError(f"brush image size {width}x{height} is empty")
    expected = width * height * 4
    if len(data) >= 4:
        declared = int.from_bytes(data[:4], "big")
        if declared != expected:
            raise BrushError(
                f"brush RLE declares {declared} values; a {width}x{height} RGBA canvas has {expected}"
            )
    alpha = decode_values(data, max_values=expected, stride=4, offset=3).reshape(height, width)
    clipped: npt.NDArray[np.uint8] = np.minimum(alpha, 255).astype(np.uint8, copy=False)
    return clipped


def rle_bytes(value: object) -> bytes:
    """The RLE of a result's ``value.rle``: a JSON list of byte values (0–255); `BrushError` otherwise."""
    if not isinstance(value, Sequence) or isinstance(value, str | bytes):
        raise BrushError("brush 'rle' is not a list of byte values")
    try:
        return bytes(value)
    except (TypeError, ValueError):
        raise BrushError("brush 'rle' holds something other than integers 0-255") from None


class _Bits:
    """Reads unsigned big-endian bit fields of up to 32 bits from ``data``, most significant bit first."""

    __slots__ = ("_data", "_padded", "_total", "pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        # Eight spare bytes so a field near the end can always be read as one 64-bit window.
        self._padded = data + bytes(8)
        self._total = len(data) * 8
        self.pos = 0

    def read(self, count: int) -> int:
        pos = self.pos
        if pos + count > self._total:
            raise BrushError(f"brush RLE ends inside a chunk (bit {pos} of {self._total})")
        self.pos = pos + count
        byte = pos >> 3
        window = int.from_bytes(self._padded[byte : byte + 8], "big")
        return (window >> (64 - (pos & 7) - count)) & ((1 << count) - 1)

    def skip(self, count: int) -> int:
        """Advance past ``count`` bits (a literal chunk's words); returns where they start."""
        start = self.pos
        if start + count > self._total:
            raise BrushError(f"brush RLE ends inside a literal chunk (bit {start} of {self._total})")
        self.pos = start + count
        return start
