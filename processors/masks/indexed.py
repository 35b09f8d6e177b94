"""Index images: PNGs whose pixel values *are* label indexes, read losslessly into an integer map.

Two encodings are in use (Scale's ``combined.indexedImage`` / ``extendedIndexedImage``):

* **one channel** — grey (8 or 16 bit), bilevel or palette PNG; the stored sample (for a palette
  image the palette *index*, never its colour) is the index;
* **packed RGB** — an RGB(A) PNG whose bytes hold a 24-bit index, R least significant:
  ``index = R + 256·G + 65536·B``. Alpha carries nothing.

0 is "unlabeled" by convention of the caller. Colour conversions (`PIL.Image.convert`) are never
applied: they would turn indexes into luminance or palette colours, and 16-bit samples into 8-bit.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import numpy.typing as npt
from PIL import Image

from processors.errors import Permanent

# Pillow raises all of these on hostile or damaged input (see processors.masks.decode).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError)
_ONE_CHANNEL = frozenset({"L", "P", "1", "I", "I;16", "I;16B", "I;16L"})
_PACKED = frozenset({"RGB", "RGBA"})


def read_index_image(data: bytes, *, packed_rgb: bool, max_pixels: int, what: str) -> npt.NDArray[np.uint32]:
    """Decode a PNG index image into an H×W uint32 map of indexes.

    ``packed_rgb`` selects the encoding (see the module docstring). ``what`` names the image in
    error reasons. Raises `Permanent` for anything that is not a complete PNG in the expected
    encoding, or that is larger than ``max_pixels`` (checked from the header, before decoding).
    """
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise Permanent(f"{what} is not a PNG image")
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise Permanent(
                    f"{what} is {width}x{height} = {width * height} pixels, over the limit of {max_pixels}"
                )
            expected = _PACKED if packed_rgb else _ONE_CHANNEL
            if image.mode not in expected:
                layout = "an RGB(A) PNG with the index packed in R, G, B" if packed_rgb else "a 1-channel PNG"
                raise Permanent(f"{what} has pixel mode {image.mode}; expected {layout}")
            image.load()
            pixels = np.asarray(image)
    except Image.DecompressionBombError as exc:
        raise Permanent(f"{what} is too large to decode: {exc}") from exc
    except _DECODE_ERRORS as exc:
        raise Permanent(f"{what} is a corrupt PNG: {exc}") from exc
    if packed_rgb:
        rgb = pixels[..., :3].astype(np.uint32)
        packed: npt.NDArray[np.uint32] = (
            rgb[..., 0] | (rgb[..., 1] << np.uint32(8)) | (rgb[..., 2] << np.uint32(16))
        )
        return packed
    if pixels.dtype == np.bool_:
        return pixels.astype(np.uint32)
    if np.issubdtype(pixels.dtype, np.signedinteger) and pixels.size and int(pixels.min()) < 0:
        raise Permanent(f"{what} holds negative sample values")
    return pixels.astype(np.uint32)
