"""The intake journal: frames on disk, torn tails, rotation, the writer's lock, and the SQLite queue
indexing it (dedupe, restarts, a second process reading while the writer lives)."""

from __future__ import annotations

import asyncio
import fcntl
import os
import struct
import time
from pathlib import Path

import pytest

from processors.delivery import Delivery
from processors.queue import QueueUnavailable
from processors.queue.journal import (
    BLOCK,
    MAGIC,
    Disk,
    JournalWriter,
    abandoned,
    decode_frame,
    encode_frame,
    read_segment,
    segments,
)
from processors.queue.sqlite import SQLiteQueue
from tests.support import acme_delivery as delivery
from tests.support import index_queue, queue_rows


def write_records(directory: Path, records: list[bytes], disk: Disk | None = None, **options: int) -> str:
    """Write ``records`` concurrently through one writer; the mode it wrote in."""

    async def guard() -> None:
        # A writer that loops (rotating or zeroing without end) fails here before it fills the disk:
        # each new segment needs at least one frame, so there can be no more than records + 1.
        limit = len(segments(directory)) + len(records) + 1
        while len(segments(directory)) <= limit:
            await asyncio.sleep(0.005)
        raise AssertionError(f"runaway writer: more than {limit} segments")

    async def main() -> str:
        writer = JournalWriter(directory, disk=disk, **options)  # type: ignore[arg-type]
        try:
            work = asyncio.ensure_future(asyncio.gather(*(writer.append(r)[1] for r in records)))
            watch = asyncio.ensure_future(guard())
            done, _ = await asyncio.wait({work, watch}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
            watch.cancel()
            if watch in done:
                watch.result()
            assert work in done, "the writer did not finish within 30 s"
            work.result()
            return writer.mode
        finally:
            writer.close()

    return asyncio.run(main())


def read_all(directory: Path) -> list[bytes]:
    found: list[bytes] = []
    for path in segments(directory):
        chunk = read_segment(path, 0, 10**9)
        assert chunk.finished
        found.extend(chunk.records)
    return found


def test_frames_round_trip_any_bytes() -> None:
    records = [b"", b"\x00" * 10, os.urandom(5000), b"\n{}\n"]
    frame = encode_frame(records)
    length, _crc = struct.unpack_from("<II", frame)
    assert length == len(frame) - 8
    assert decode_frame(frame[8:]) == records


def test_written_records_come_back_in_order_from_block_aligned_frames(tmp_path: Path) -> None:
    records = [b"record-%d-" % i + os.urandom(i * 37) for i in range(300)]
    write_records(tmp_path, records)
    assert read_all(tmp_path) == records
    [path] = segments(tmp_path)
    data = path.read_bytes()
    assert data.startswith(MAGIC) and len(data) % BLOCK == 0  # zeroed ahead, in whole blocks


def test_a_live_writers_segment_is_never_finished_and_a_closed_ones_is(tmp_path: Path) -> None:
    async def main() -> None:
        writer = JournalWriter(tmp_path)
        await writer.append(b"one")[1]
        [path] = segments(tmp_path)
        chunk = read_segment(path, 0, 100)
        assert chunk.records == [b"one"] and not chunk.finished
        # Nothing more yet: same offset, still not finished (the writer holds its lock).
        again = read_segment(path, chunk.end, 100)
        assert again.records == [] and again.end == chunk.end and not again.finished
        await writer.append(b"two")[1]
        assert read_segment(path, chunk.end, 100).records == [b"two"]
        writer.close()
        assert read_segment(path, 0, 100).finished

    asyncio.run(main())


def test_a_torn_last_frame_is_dropped_once_the_writer_is_gone(tmp_path: Path) -> None:
    write_records(tmp_path, [b"kept-1", b"kept-2"])
    [path] = segments(tmp_path)
    end = read_segment(path, 0, 100).end
    torn = encode_frame([b"never acknowledged" * 100])
    with open(path, "r+b") as file:  # a crash mid-write: the frame's tail never reached the disk
        file.seek(end)
        file.write(torn[: len(torn) // 2])
    chunk = read_segment(path, 0, 100)
    assert chunk.records == [b"kept-1", b"kept-2"]
    assert chunk.finished and chunk.discarded == len(torn) - 8
    assert chunk.end == end


def test_a_corrupted_frame_stops_the_reader_rather_than_yield_garbage(tmp_path: Path) -> None:
    write_records(tmp_path, [b"first"])
    write_records(tmp_path, [b"second"])  # a second segment (a new writer never reuses one)
    first, second = segments(tmp_path)
    with open(first, "r+b") as file:
        file.seek(BLOCK + 8)
        file.write(b"X")  # flip payload bytes: the CRC no longer matches
    assert read_segment(first, 0, 100).records == []
    assert read_segment(second, 0, 100).records == [b"second"]


def test_segments_rotate_when_full(tmp_path: Path) -> None:
    records = [os.urandom(3000) for _ in range(40)]

    async def main() -> None:
        writer = JournalWriter(tmp_path, segment_bytes=4 * BLOCK)
        try:
            for record in records:  # one at a time: one frame each
                await writer.append(record)[1]
        finally:
            writer.close()

    asyncio.run(main())
    assert len(segments(tmp_path)) > 5
    assert read_all(tmp_path) == records


def test_a_frame_bigger_than_a_segment_goes_alone_into_a_fresh_one(tmp_path: Path) -> None:
    # 5 MB: more than a segment here, and more than one zero-fill round (ZERO_CHUNK is 2 MiB).
    records = [b"small-1", os.urandom(5_000_000), b"small-2"]
    for record in records:
        write_records(tmp_path, [record], segment_bytes=64 * BLOCK)
    assert read_all(tmp_path) == records
    assert len(segments(tmp_path)) == 3  # one writer each; none rotated into an empty segment
    # Only a bounded headroom of zeroed blocks beyond what was written (a runaway zero-fill would not be).
    assert sum(p.stat().st_size for p in segments(tmp_path)) < 5_000_000 + 3 * (2 * 1024 * 1024 + 2 * BLOCK)


def test_a_segment_abandoned_mid_creation_is_swept_and_a_live_or_fresh_one_is_not(tmp_path: Path) -> None:
    journal_dir = tmp_path / "queue.db-intake"
    journal_dir.mkdir()
    dead, fresh, live = (journal_dir / f"{name}.new" for name in ("1-dead", "2-fresh", "3-live"))
    for path in (dead, fresh, live):
        path.write_bytes(MAGIC)
    an_hour_ago = time.time() - 3600
    for path in (dead, live):
        os.utime(path, (an_hour_ago, an_hour_ago))
    with open(live, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # its writer is alive (between create and rename)
        assert abandoned(journal_dir) == [dead]
        index_queue(tmp_path / "queue.db")  # a caught-up reader sweeps
        assert sorted(p.name for p in journal_dir.iterdir()) == ["2-fresh.new", "3-live.new"]


def test_a_file_that_is_not_a_segment_is_left_alone(tmp_path: Path) -> None:
    stranger = tmp_path / "0000-stranger.seg"
    stranger.write_bytes(b"not ours")
    chunk = read_segment(stranger, 0, 100)
    assert chunk.records == [] and not chunk.finished


def test_a_lone_record_at_rest_is_written_at_once_not_after_max_wait(tmp_path: Path) -> None:
    async def main() -> float:
        writer = JournalWriter(tmp_path, max_wait=30.0)
        try:
            started = time.monotonic()
            await writer.append(b"alone")[1]
            return time.monotonic() - started
        finally:
            writer.close()

    assert asyncio.run(main()) < 5.0


def test_a_burst_is_written_in_few_frames_and_all_of_it_durable(tmp_path: Path) -> None:
    async def main() -> int:
        writer = JournalWriter(tmp_path)
        try:
            results = await asyncio.gather(*(writer.append(b"r%d" % i)[1] for i in range(500)))
            assert results == [None] * 500
            return writer._batch
        finally:
            writer.close()

    frames = asyncio.run(main())
    assert frames < 100  # group commit: far fewer writes than records
    assert sorted(read_all(tmp_path)) == sorted(b"r%d" % i for i in range(500))


def test_tmpfs_works_whether_or_not_it_takes_o_direct() -> None:
    # Kernels before 6.6 refuse O_DIRECT on tmpfs: the writes then go through the page cache, O_DSYNC.
    shm = Path("/dev/shm")
    if not shm.is_dir():
        pytest.skip("no /dev/shm (tmpfs) here")
    directory = shm / f"labelhook-journal-test-{os.getpid()}"
    try:
        write_records(directory, [b"on tmpfs"])
        assert read_all(directory) == [b"on tmpfs"]
    finally:
        for path in directory.glob("*"):
            path.unlink()
        directory.rmdir()


# -- the SQLite queue on top ------------------------------------------------------------------------


def test_an_acknowledged_delivery_is_in_the_journal_before_any_sqlite_row(tmp_path: Path) -> None:
    db = tmp_path / "queue.db"
    item = delivery("a", body=b'{"raw": "\\u00e9 bytes kept"}\n')

    async def main() -> None:
        queue = SQLiteQueue(str(db))
        try:
            assert (await queue.enqueue(item)).duplicate is False
            [path] = segments(Path(f"{db}-intake"))
            [record] = read_segment(path, 0, 10).records
            assert Delivery.from_bytes(record) == item
        finally:
            await queue.close()

    asyncio.run(main())
    assert queue_rows(db) == {"acme:a": ("queued", 0)}  # indexed by the first reader
    assert segments(Path(f"{db}-intake")) == []  # and the finished segment deleted


def test_a_second_process_indexes_while_the_writer_lives_and_deletes_only_after(tmp_path: Path) -> None:
    db = str(tmp_path / "queue.db")

    async def main() -> None:
        writer, reader = SQLiteQueue(db), SQLiteQueue(db)
        try:
            await writer.enqueue(delivery("a"))
            [lease] = await reader.claim(10, 5, 0)
            assert lease.delivery.job_id == "a"
            assert len(segments(Path(f"{db}-intake"))) == 1  # still the writer's
            await writer.enqueue(delivery("b"))
            [lease] = await reader.claim(10, 5, 0)
            assert lease.delivery.job_id == "b"  # read on from where indexing stopped, once
            await writer.close()
            assert (await reader.depth())["in_flight"] == 2
            assert segments(Path(f"{db}-intake")) == []
        finally:
            await writer.close()
            await reader.close()

    asyncio.run(main())


def test_a_repeat_after_restart_is_a_duplicate_once_indexed_and_stored_once(tmp_path: Path) -> None:
    db = tmp_path / "queue.db"
    first, repeat, late = delivery("a"), delivery("a"), delivery("b")

    async def enqueue(item: Delivery, *, index_first: bool = False) -> bool:
        queue = SQLiteQueue(str(db))
        try:
            if index_first:
                await queue.index()
            return (await queue.enqueue(item)).duplicate
        finally:
            await queue.close()

    assert asyncio.run(enqueue(first)) is False
    assert asyncio.run(enqueue(repeat, index_first=True)) is True  # seeded from the table
    assert asyncio.run(enqueue(late)) is False
    assert asyncio.run(enqueue(delivery("b"))) is False  # not indexed yet: journalled again...
    assert queue_rows(db) == {"acme:a": ("queued", 0), "acme:b": ("queued", 0)}  # ...and dropped


def test_the_journal_cannot_be_written_is_queue_unavailable(tmp_path: Path) -> None:
    db = tmp_path / "queue.db"

    async def main() -> None:
        queue = SQLiteQueue(str(db))
        try:
            Path(f"{db}-intake").rmdir()
            Path(f"{db}-intake").write_text("a file where the journal directory was")
            with pytest.raises(QueueUnavailable):
                await queue.enqueue(delivery("a"))
            with pytest.raises(QueueUnavailable):  # the key was not kept: a retry is tried afresh
                await queue.enqueue(delivery("a"))
        finally:
            await queue.close()

    asyncio.run(main())


def test_a_segment_is_rotated_once_old_so_a_trickle_holds_little_disk(tmp_path: Path) -> None:
    async def main() -> None:
        writer = JournalWriter(tmp_path, segment_seconds=0.05)
        try:
            await writer.append(b"first")[1]
            await asyncio.sleep(0.1)
            await writer.append(b"second")[1]  # the first segment is old now: a new one takes it
        finally:
            writer.close()

    asyncio.run(main())
    first, second = segments(tmp_path)
    assert read_segment(first, 0, 10).records == [b"first"] and read_segment(first, 0, 10).finished
    assert read_segment(second, 0, 10).records == [b"second"]
