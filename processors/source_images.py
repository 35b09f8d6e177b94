"""Source images: the photo or video frame a vendor labelled, stored as ``images/<frame>.<ext>``.

A vendor processor knows where each frame's image lives (a URL, or an API call); this module streams
it into the job's output set through the guarded fetcher, names it by frame with an extension taken
from its content (never from the vendor's say-so alone), and reads its size from the header so that
``annotations.json`` can pair it with the masks. A hostile or broken image never fails the job: the
masks are what the job is for, so the frame is reported in ``warnings`` instead.
"""

from __future__ import annotations

import io
import posixpath
import urllib.parse
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, cast

from processors.errors import Permanent

if TYPE_CHECKING:
    from processors.store import JobWriter

#: Magic bytes → (extension, content type). Only formats every COCO/VOC consumer reads.
_SIGNATURES: tuple[tuple[bytes, str, str], ...] = (
    (b"\xff\xd8\xff", ".jpg", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", ".png", "image/png"),
    (b"BM", ".bmp", "image/bmp"),
    (b"II*\x00", ".tif", "image/tiff"),
    (b"MM\x00*", ".tif", "image/tiff"),
)
_URL_EXTENSIONS = {
    ".jpg": ".jpg",
    ".jpeg": ".jpg",
    ".png": ".png",
    ".bmp": ".bmp",
    ".tif": ".tif",
    ".tiff": ".tif",
    ".webp": ".webp",
}


@dataclass(frozen=True)
class SourceImage:
    """One frame's source image as ``annotations.json`` names it.

    ``fetched`` is False when the option is off or the fetch failed; then ``file_name`` still names
    the frame (``images/<frame>`` plus the extension the URL suggests) and ``reason`` says why.
    """

    frame: int
    file_name: str
    width: int | None = None
    height: int | None = None
    fetched: bool = False
    reason: str | None = None


_IMAGE_KEYS = ("image_url", "imageUrl", "imageURL", "image", "src", "url")


def find_image_url(value: Any) -> str | None:
    """The image URL of a vendor input object: the first ``image_url``/``imageUrl``/``image``/``src``/
    ``url`` holding an http(s) or ``data://`` URL, looked for breadth-first (the input's own keys
    before those of nested objects); None when there is none."""
    level: list[Any] = [value]
    for _ in range(8):  # inputs are shallow; a deep structure is not worth walking
        nested: list[Any] = []
        for item in level:
            if isinstance(item, Mapping):
                for key in _IMAGE_KEYS:
                    found = item.get(key)
                    if isinstance(found, str) and found.strip().lower().startswith(
                        ("http://", "https://", "data://")
                    ):
                        return found.strip()
                nested.extend(item.values())
            elif isinstance(item, list):
                nested.extend(item)
        if not nested:
            return None
        level = nested
    return None


def url_extension(url: str) -> str:
    """The image extension a URL's path suggests (``.jpg`` for ``.jpeg``), or ``""``."""
    suffix = posixpath.splitext(urllib.parse.urlsplit(url).path)[1].lower()
    return _URL_EXTENSIONS.get(suffix, "")


def not_fetched(frame: int, reason: str, url: str = "") -> SourceImage:
    return SourceImage(frame, f"images/{frame}{url_extension(url)}", reason=reason)


Opener = Callable[[], AbstractContextManager[Iterable[bytes]]]


def store_image(frame: int, open_image: Opener, out: JobWriter, *, hint: str = "") -> SourceImage:
    """Stream one frame's image into ``images/<frame>.<ext>``; its size read from the header.

    ``open_image`` opens the guarded download (a context manager yielding chunks, capped by the
    fetcher). The extension comes from the magic bytes; bytes of no known image format are not
    stored. The size is read from the first MiB as it streams past (never the whole file in
    memory). A download that fails permanently becomes a not-fetched image with the reason, bytes
    Pillow cannot size a fetched image with a reason; Retryable errors propagate (the job is tried
    again). ``hint`` (the URL) names the extension of a frame that was not fetched.
    """
    try:
        with open_image() as chunks:
            reader = _PeekingReader(iter(chunks))
            head = reader.peek(16)
            ext, content_type = _sniff(head)
            if not ext:
                return not_fetched(frame, "not a JPEG, PNG, BMP or TIFF image", hint)
            name = f"images/{frame}{ext}"
            out.write_stream(name, cast("IO[bytes]", reader), content_type)
    except Permanent as exc:
        return not_fetched(frame, exc.reason, hint)
    size = _image_size(reader.head)
    if size is None:
        return SourceImage(frame, name, fetched=True, reason="image header is unreadable")
    return SourceImage(frame, name, size[0], size[1], fetched=True)


def _sniff(head: bytes) -> tuple[str, str]:
    for magic, ext, content_type in _SIGNATURES:
        if head.startswith(magic):
            return ext, content_type
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return ".webp", "image/webp"
    return "", ""


def _image_size(head: bytes) -> tuple[int, int] | None:
    from PIL import Image

    try:
        with warnings.catch_warnings():
            # Only the header is parsed: a decompression-bomb warning is irrelevant to reading a size.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(head)) as image:
                width, height = image.size
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError):
        return None
    return int(width), int(height)


#: How much of an image is kept to read its size from: headers (JPEG EXIF/APP segments before the
#: frame header included) fit well within it.
_HEAD_BYTES = 1024 * 1024


class _PeekingReader:
    """A read()-able view of a chunk iterator whose first bytes can be looked at before streaming;
    ``head`` keeps the first ``_HEAD_BYTES`` that went through."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""
        self.head = b""

    def peek(self, size: int) -> bytes:
        while len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        return self._buffer[:size]

    def read(self, size: int | None = -1) -> bytes:
        want = -1 if size is None else size
        while want < 0 or len(self._buffer) < want:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        if want < 0:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:want], self._buffer[want:]
        if len(self.head) < _HEAD_BYTES:
            self.head += data[: _HEAD_BYTES - len(self.head)]
        return data


def image_warnings(
    images: Mapping[int, SourceImage], mask_sizes: Mapping[int, tuple[int, int]]
) -> dict[str, Any]:
    """``images_not_fetched`` ({frame: reason}) and ``image_size_mismatch`` for annotations.json."""
    missing: dict[str, str] = {}
    mismatch: list[dict[str, Any]] = []
    for frame, (width, height) in sorted(mask_sizes.items()):
        image = images.get(frame)
        if image is None or not image.fetched:
            missing[str(frame)] = image.reason if image and image.reason else "no source image"
            continue
        if image.reason:
            missing[str(frame)] = image.reason
        if image.width is not None and (image.width, image.height) != (width, height):
            mismatch.append({"frame": frame, "image": [image.width, image.height], "mask": [width, height]})
    return {"images_not_fetched": missing, "image_size_mismatch": mismatch}
