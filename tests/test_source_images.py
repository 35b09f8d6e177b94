"""`store_image` and the helpers that name a job's source images, on hostile and ordinary bytes."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from processors.config import ConfigError, load_settings
from processors.errors import Permanent, Retryable
from processors.source_images import find_image_url, store_image
from processors.store import JobWriter
from processors.store.local import LocalStore
from tests.support import SECRET


def _jpeg(width: int, height: int) -> bytes:
    pixels = np.random.default_rng(1).integers(0, 255, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def _chunks(data: bytes, size: int = 7) -> contextlib.AbstractContextManager[Iterator[bytes]]:
    return contextlib.nullcontext(iter([data[i : i + size] for i in range(0, len(data), size)]))


def test_image_streamed_byte_for_byte_with_its_size_from_the_header(tmp_path: Path) -> None:
    data = _jpeg(1500, 900)  # over 1 MiB: the size comes from the head, the file is whole
    assert len(data) > 1024 * 1024
    out = JobWriter(LocalStore(tmp_path), "v/p/j")
    image = store_image(4, lambda: _chunks(data, 65536), out, hint="https://x/a.jpeg")
    assert (image.file_name, image.width, image.height, image.fetched, image.reason) == (
        "images/4.jpg",
        1500,
        900,
        True,
        None,
    )
    assert (tmp_path / "v/p/j/images/4.jpg").read_bytes() == data
    assert [f.path for f in out.files] == ["images/4.jpg"]


def test_bytes_that_are_no_image_are_not_stored(tmp_path: Path) -> None:
    out = JobWriter(LocalStore(tmp_path), "v/p/j")
    image = store_image(0, lambda: _chunks(b"<html>login</html>"), out, hint="https://x/p.png?sig=1")
    assert (image.file_name, image.fetched) == ("images/0.png", False)
    assert image.reason == "not a JPEG, PNG, BMP or TIFF image"
    assert not (tmp_path / "v").exists()


def test_a_truncated_image_is_kept_and_said_to_be_unreadable(tmp_path: Path) -> None:
    out = JobWriter(LocalStore(tmp_path), "v/p/j")
    image = store_image(0, lambda: _chunks(b"\x89PNG\r\n\x1a\n\x00\x00"), out)
    assert (image.file_name, image.fetched, image.width) == ("images/0.png", True, None)
    assert image.reason == "image header is unreadable"


def test_permanent_fetch_errors_are_reported_retryable_ones_propagate(tmp_path: Path) -> None:
    out = JobWriter(LocalStore(tmp_path), "v/p/j")

    @contextlib.contextmanager
    def failing(exc: Exception) -> Iterator[Iterator[bytes]]:
        raise exc
        yield iter(())

    image = store_image(2, lambda: failing(Permanent("GET … answered 404 Not Found")), out, hint="h/2.jpg")
    assert (image.file_name, image.fetched, image.reason) == (
        "images/2.jpg",
        False,
        "GET … answered 404 Not Found",
    )
    with pytest.raises(Retryable):
        store_image(2, lambda: failing(Retryable("503")), out)


def test_option_and_input_url_lookup() -> None:
    # FETCH_IMAGES is a common source option, parsed at start-up (tests/test_source_options.py too).
    env = {"LABELHOOK_SOURCES": "acme", "LABELHOOK_ACME_VENDOR": "standard", "LABELHOOK_ACME_SECRET": SECRET}
    assert load_settings(env).sources["acme"].fetch_images
    assert not load_settings({**env, "LABELHOOK_ACME_FETCH_IMAGES": "0"}).sources["acme"].fetch_images
    with pytest.raises(ConfigError, match="LABELHOOK_ACME_FETCH_IMAGES"):
        load_settings({**env, "LABELHOOK_ACME_FETCH_IMAGES": "sometimes"})
    assert (
        find_image_url({"imageUrl": "https://a/x.jpg", "nested": {"image_url": "https://b"}})
        == "https://a/x.jpg"
    )
    assert find_image_url({"meta": {"src": "data://1/x.png"}}) == "data://1/x.png"
    assert find_image_url({"image": "javascript:alert(1)", "url": "ftp://x"}) is None
    assert find_image_url([{"text": "no image"}]) is None
