"""The durable path fails closed: every way a journal write can go wrong answers its callers (503),
never leaves them waiting, and `/readyz` says so until a write succeeds again. Faults are injected
through the writer's `Disk` — a stand-in for `os` — never by patching a module."""

from __future__ import annotations

import asyncio
import errno
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from processors.queue import QueueUnavailable
from processors.queue.group_commit import GroupCommit, connect
from processors.queue.journal import Disk, JournalError, JournalWriter, read_segment, segments
from processors.queue.sqlite import SQLiteQueue
from processors.store import open_store
from receiver.app import create_app
from tests.support import LiveServer, callback_body, sign, wait_for
from tests.support import acme_delivery as delivery


class Platform:
    """`os` as the journal sees it: ``without`` names attributes this platform lacks; ``faults``
    maps a call name to a function run before the real call (it may raise, or block)."""

    def __init__(self, *, without: tuple[str, ...] = (), **faults: Any) -> None:
        self.without = without
        self.faults = faults
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        if name in self.without:
            raise AttributeError(name)
        real = getattr(os, name)
        fault = self.faults.get(name)
        if not callable(real):
            return real

        def call(*args: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            if fault is not None:
                fault(*args)
            return real(*args)

        return call


def _once(exc: BaseException, *, when: Any = lambda *args: True) -> Any:
    """A fault that raises ``exc`` the first time ``when(*args)`` holds."""
    state = {"fired": False}

    def fault(*args: Any) -> None:
        if not state["fired"] and when(*args):
            state["fired"] = True
            raise exc

    return fault


def _frame_write(fd: int, data: Any, offset: int) -> bool:
    """A pwrite of a frame: past the header block, and not a zero-fill (those are 2 MiB at most,
    frames here are one block)."""
    return offset > 0 and len(data) == 4096 and bytes(data[:4]) != b"\0\0\0\0"


async def _append(writer: JournalWriter, record: bytes, timeout: float = 30) -> None:
    await asyncio.wait_for(writer.append(record)[1], timeout)


def _read_back(directory: Path) -> list[bytes]:
    return [r for path in segments(directory) for r in read_segment(path, 0, 1000).records]


def test_a_platform_without_o_direct_writes_through_the_page_cache(tmp_path: Path) -> None:
    platform = Platform(without=("O_DIRECT", "posix_fallocate"))

    async def main() -> str:
        writer = JournalWriter(tmp_path, disk=Disk(platform))
        try:
            await asyncio.gather(*(_append(writer, b"r%d" % i) for i in range(20)))
            return writer.mode
        finally:
            writer.close()

    assert asyncio.run(main()) == "thread+buffered"
    assert sorted(_read_back(tmp_path)) == sorted(b"r%d" % i for i in range(20))


def test_a_filesystem_refusing_o_direct_falls_back_to_buffered_writes(tmp_path: Path) -> None:
    def refuse_direct(path: Any, flags: int, *mode: int) -> None:
        if flags & getattr(os, "O_DIRECT", 0) and getattr(os, "O_DIRECT", 0):
            raise OSError(errno.EINVAL, "Invalid argument")

    # Without O_DIRECT in `os` at all this platform has nothing to refuse: pretend it has the flag.
    platform = Platform(open=refuse_direct)
    disk = Disk(platform)
    disk.o_direct = disk.o_direct or 0x4000

    async def main() -> str:
        writer = JournalWriter(tmp_path, disk=disk)
        try:
            await _append(writer, b"kept")
            return writer.mode
        finally:
            writer.close()

    assert asyncio.run(main()) == "thread+buffered"
    assert _read_back(tmp_path) == [b"kept"]


def test_without_o_dsync_every_write_is_followed_by_fsync(tmp_path: Path) -> None:
    platform = Platform(without=("O_DSYNC",))

    async def main() -> None:
        writer = JournalWriter(tmp_path, disk=Disk(platform))
        try:
            await _append(writer, b"one")
            before = platform.calls.get("fsync", 0)
            await _append(writer, b"two")
            assert platform.calls.get("fsync", 0) > before  # the frame's write was fsynced
        finally:
            writer.close()

    asyncio.run(main())
    assert _read_back(tmp_path) == [b"one", b"two"]


@pytest.mark.parametrize(
    "exc", [OSError(errno.EIO, "injected I/O error"), AttributeError("a bug, not an OSError")]
)
def test_a_failed_frame_fails_its_callers_and_the_next_one_starts_a_new_segment(
    tmp_path: Path, exc: BaseException
) -> None:
    platform = Platform(pwrite=_once(exc, when=_frame_write))

    async def main() -> None:
        writer = JournalWriter(tmp_path, disk=Disk(platform))
        try:
            with pytest.raises(JournalError, match="journal write failed"):
                await _append(writer, b"lost")
            assert not writer.healthy and writer.last_error
            await _append(writer, b"kept")  # never a hang: the next frame is written
            assert writer.healthy and writer.last_error is None
        finally:
            writer.close()

    asyncio.run(main())
    first, second = segments(tmp_path)  # the segment of the failed write was abandoned
    assert read_segment(second, 0, 10).records == [b"kept"]
    assert read_segment(first, 0, 10).records == []


def test_no_room_to_zero_blocks_fails_the_frame_and_keeps_the_segment(tmp_path: Path) -> None:
    def zero_fill(fd: int, data: Any, offset: int) -> bool:
        return offset > 4096 and len(data) > 4096  # zeroing ahead, past the first frame's blocks

    platform = Platform(pwrite=_once(OSError(errno.ENOSPC, "No space left on device"), when=zero_fill))

    async def main() -> None:
        writer = JournalWriter(tmp_path, disk=Disk(platform), segment_bytes=64 * 1024 * 1024)
        try:
            await _append(writer, b"first")
            big = os.urandom(3 * 1024 * 1024)  # needs more zeroed blocks than the first round made
            with pytest.raises(JournalError) as failed:
                await _append(writer, big)
            assert failed.value.errno == errno.ENOSPC
            await _append(writer, b"after")
        finally:
            writer.close()

    asyncio.run(main())
    assert len(segments(tmp_path)) == 1  # nothing was written: the segment stayed
    assert _read_back(tmp_path) == [b"first", b"after"]


def test_a_write_that_never_returns_fails_its_callers_at_the_deadline_then_recovers(tmp_path: Path) -> None:
    release = threading.Event()
    stuck = threading.Event()

    def hang(fd: int, data: Any, offset: int) -> None:
        if _frame_write(fd, data, offset) and bytes(data).find(b"stuck") >= 0:
            stuck.set()
            release.wait(60)

    async def main() -> None:
        writer = JournalWriter(tmp_path, disk=Disk(Platform(pwrite=hang)), durable_timeout=0.5)
        try:
            await _append(writer, b"before")
            started = time.monotonic()
            with pytest.raises(JournalError) as timed_out:
                await _append(writer, b"stuck")
            assert timed_out.value.errno == errno.ETIMEDOUT
            assert 0.4 < time.monotonic() - started < 20  # at the deadline, not forever
            assert not writer.healthy
            with pytest.raises(JournalError, match="stalled"):  # fail fast while the write hangs
                writer.append(b"meanwhile")
            release.set()
            await asyncio.to_thread(wait_for, lambda: writer.healthy, what="the stuck write to return")
            await _append(writer, b"after")
        finally:
            release.set()
            writer.close()

    asyncio.run(main())
    assert stuck.is_set()
    # The stuck frame landed after its callers got 503 (at-least-once: the vendor retries, dedupe).
    assert _read_back(tmp_path) == [b"before", b"stuck", b"after"]


def test_close_writes_the_pending_frames_and_settles_every_caller(tmp_path: Path) -> None:
    release = threading.Event()

    def slow(fd: int, data: Any, offset: int) -> None:
        if _frame_write(fd, data, offset):
            release.wait(10)

    async def main() -> None:
        writer = JournalWriter(tmp_path, disk=Disk(Platform(pwrite=slow)))
        first = writer.append(b"in flight")[1]
        await asyncio.sleep(0.05)  # the first frame is now in the writer thread
        rest = [writer.append(b"pending-%d" % i)[1] for i in range(3)]
        threading.Timer(0.2, release.set).start()
        writer.close()  # blocking: the frame in flight, then the pending ones
        assert first.done() and all(f.done() for f in rest)
        await asyncio.gather(first, *rest)  # all durable, none failed

    asyncio.run(main())
    assert _read_back(tmp_path) == [b"in flight", b"pending-0", b"pending-1", b"pending-2"]


def test_after_a_burst_a_lone_record_waits_at_most_max_wait_for_company(tmp_path: Path) -> None:
    gate = threading.Event()

    def hold_first(fd: int, data: Any, offset: int) -> None:
        if _frame_write(fd, data, offset):
            gate.wait(10)

    async def main() -> float:
        writer = JournalWriter(tmp_path, disk=Disk(Platform(pwrite=hold_first)), max_wait=0.3)
        try:
            burst = [writer.append(b"burst-%d" % i)[1] for i in range(40)]  # peak: 40 outstanding
            gate.set()
            await asyncio.wait_for(asyncio.gather(*burst), 30)
            started = time.monotonic()
            await _append(writer, b"lone")  # target ≈ 3/4 of the recent peak: waits for the timer
            return time.monotonic() - started
        finally:
            writer.close()

    waited = asyncio.run(main())
    assert waited >= 0.25  # held by the max_wait timer (never more than it plus scheduling)
    assert b"lone" in _read_back(tmp_path)


def test_a_failing_statement_rolls_back_only_its_own_savepoint(tmp_path: Path) -> None:
    db = str(tmp_path / "queue.db")

    async def main() -> None:
        commits = GroupCommit(connect(db))

        def insert(name: str, fail: bool = False) -> Any:
            def op(conn: sqlite3.Connection) -> None:
                conn.execute("INSERT INTO journal (segment, offset) VALUES (?, 0)", (name,))
                if fail:
                    raise ValueError("this caller's bug")

            return op

        try:
            # The first op starts a batch at once; the next three share the following transaction.
            results = await asyncio.gather(
                commits.run(insert("a")),
                commits.run(insert("b")),
                commits.run(insert("c", fail=True)),
                commits.run(insert("d")),
                return_exceptions=True,
            )
            assert isinstance(results[2], ValueError)
            assert results[:2] == [None, None] and results[3] is None
        finally:
            await commits.aclose()

    asyncio.run(main())
    rows = sqlite3.connect(db).execute("SELECT segment FROM journal ORDER BY segment").fetchall()
    assert rows == [("a",), ("b",), ("d",)]


def test_a_stalled_journal_is_503_and_not_ready_until_a_write_succeeds(
    tmp_path: Path, make_settings: Any
) -> None:
    settings = make_settings()
    release = threading.Event()

    def hang(fd: int, data: Any, offset: int) -> None:
        if _frame_write(fd, data, offset) and not release.is_set():
            release.wait(60)

    db = tmp_path / "queue.db"
    queue = SQLiteQueue(str(db), journal_disk=Disk(Platform(pwrite=hang)), durable_timeout=0.5)
    store = open_store(settings.store_url)
    try:
        with LiveServer(create_app(settings, queue, store)) as server:
            assert httpx.get(server.url + "/readyz", timeout=10).status_code == 200
            body = callback_body("stalled")
            started = time.monotonic()
            answer = httpx.post(
                server.url + "/hooks/acme", content=body, headers=sign(body, "s-1"), timeout=30
            )
            assert answer.status_code == 503 and "error" in answer.json()
            assert time.monotonic() - started < 20
            # /readyz reads figures refreshed once a second: it turns within a refresh or two.
            not_ready = wait_for(
                lambda: (r := httpx.get(server.url + "/readyz", timeout=10)).status_code == 503 and r,
                what="/readyz to report the stalled journal",
            )
            assert "journal" in not_ready.json()["detail"]["queue"]
            release.set()  # the disk answers again: the refresher's probe write makes it healthy
            wait_for(lambda: httpx.get(server.url + "/readyz", timeout=10).status_code == 200, what="ready")
            body = callback_body("after")
            assert (
                httpx.post(server.url + "/hooks/acme", content=body, headers=sign(body, "s-2")).status_code
                == 202
            )
    finally:
        release.set()


def test_enqueue_on_a_stalled_journal_is_queue_unavailable(tmp_path: Path) -> None:
    release = threading.Event()

    def hang(fd: int, data: Any, offset: int) -> None:
        if _frame_write(fd, data, offset):
            release.wait(60)

    async def main() -> None:
        queue = SQLiteQueue(
            str(tmp_path / "queue.db"), journal_disk=Disk(Platform(pwrite=hang)), durable_timeout=0.3
        )
        try:
            with pytest.raises(QueueUnavailable, match="within"):
                await queue.enqueue(delivery("a"))
            assert (await queue.gauges()).problem is not None
            with pytest.raises(QueueUnavailable, match="stalled"):
                await queue.enqueue(delivery("b"))
        finally:
            release.set()
            await queue.close()

    asyncio.run(main())
