"""Kernel AIO through ctypes: durable direct writes with their completion on an eventfd."""

from __future__ import annotations

import mmap
import os
import select
from collections.abc import Iterator
from pathlib import Path

import pytest

from processors.queue.linux_aio import AioContext

BLOCK = 4096


@pytest.fixture
def aio() -> Iterator[AioContext]:
    try:
        context = AioContext()
    except OSError as exc:
        pytest.skip(f"no kernel AIO here: {exc}")
    yield context
    context.close()


@pytest.fixture
def direct_fd(tmp_path: Path) -> Iterator[int]:
    try:
        fd = os.open(tmp_path / "data", os.O_RDWR | os.O_CREAT | os.O_DIRECT | os.O_DSYNC, 0o600)
    except OSError:
        pytest.skip("this filesystem refuses O_DIRECT")
    os.pwrite(fd, mmap.mmap(-1, 4 * BLOCK), 0)  # allocated: the writes below overwrite
    yield fd
    os.close(fd)


def buffer_with(data: bytes, size: int) -> mmap.mmap:
    buffer = mmap.mmap(-1, size)  # page-aligned, as O_DIRECT needs
    buffer.write(data)
    return buffer


def wait_readable(fd: int) -> None:
    readable, _, _ = select.select([fd], [], [], 10)
    assert readable, "no completion signalled within 10 s"


def test_a_write_completes_on_the_eventfd_with_its_tag_and_byte_count(
    aio: AioContext, direct_fd: int, tmp_path: Path
) -> None:
    buffer = buffer_with(b"durable bytes", 2 * BLOCK)
    aio.submit_write(direct_fd, buffer, 2 * BLOCK, BLOCK, tag=7)
    assert aio.in_flight == 1
    wait_readable(aio.fileno)
    assert aio.completions() == [(7, 2 * BLOCK)]
    assert aio.in_flight == 0
    assert aio.completions() == []  # nothing more, and no blocking
    data = (tmp_path / "data").read_bytes()
    assert data[BLOCK : BLOCK + 13] == b"durable bytes" and data[:BLOCK] == bytes(BLOCK)


def test_a_write_in_flight_pins_its_buffer(aio: AioContext, direct_fd: int) -> None:
    buffer = buffer_with(b"x", BLOCK)
    aio.submit_write(direct_fd, buffer, BLOCK, 0, tag=1)
    with pytest.raises(BufferError):
        buffer.close()  # the kernel may still be reading it
    assert aio.completions(wait_for=1) == [(1, BLOCK)]
    buffer.close()  # released with the completion


def test_a_tag_cannot_be_in_flight_twice(aio: AioContext, direct_fd: int) -> None:
    buffer = buffer_with(b"x", BLOCK)
    aio.submit_write(direct_fd, buffer, BLOCK, 0, tag=3)
    with pytest.raises(ValueError):
        aio.submit_write(direct_fd, buffer, BLOCK, BLOCK, tag=3)
    assert aio.completions(wait_for=1) == [(3, BLOCK)]


def test_a_misaligned_direct_write_fails_with_einval(aio: AioContext, direct_fd: int) -> None:
    buffer = buffer_with(b"x", BLOCK)
    try:
        aio.submit_write(direct_fd, buffer, 100, 0, tag=1)  # length not a multiple of the block
    except OSError as exc:  # refused at submit time ...
        assert exc.errno == 22
        assert aio.in_flight == 0
    else:  # ... or reported as the write's result
        [(tag, result)] = aio.completions(wait_for=1)
        assert (tag, result) == (1, -22)


def test_close_waits_for_writes_in_flight(direct_fd: int, tmp_path: Path) -> None:
    try:
        aio = AioContext()
    except OSError as exc:
        pytest.skip(f"no kernel AIO here: {exc}")
    buffer = buffer_with(b"written before close returned", BLOCK)
    aio.submit_write(direct_fd, buffer, BLOCK, 2 * BLOCK, tag=1)
    aio.close()
    buffer.close()  # no longer pinned
    assert (tmp_path / "data").read_bytes()[2 * BLOCK :].startswith(b"written before close returned")
