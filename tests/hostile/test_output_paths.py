"""#6: one job ↔ one folder: different vendor ids never share an output set or a job-book entry."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

from processors.delivery import Delivery, new_delivery_id, path_segment
from processors.jobs import JobBook
from processors.queue.sqlite import SQLiteQueue
from processors.store import open_store
from processors.worker import Worker


def test_colliding_ids_of_the_old_scheme_map_to_different_segments() -> None:
    pairs = [
        ("collide:1", "collide/1"),
        ("collide:1", "collide_1"),
        ("a" * 200 + "x" * 56, "a" * 200 + "y" * 56),
        (".", "_."),
        ("..", "_.."),
        ("job ", "job"),
        ("", "_"),
    ]
    for a, b in pairs:
        assert path_segment(a) != path_segment(b), (a, b)
        assert JobBook.key("acme", a) != JobBook.key("acme", b)


def test_segments_are_safe_and_one_to_one_over_random_ids() -> None:
    rng = random.Random(18)
    alphabet = "aZ09._-~/:\\ %\x00\x1b.é💥"
    seen: dict[str, str] = {}
    for _ in range(20_000):
        value = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        segment = path_segment(value)
        assert segment not in ("", ".", "..") and "/" not in segment and "\\" not in segment
        assert segment.isascii() and segment.isprintable() and len(segment) <= 200
        assert seen.setdefault(segment, value) == value, (segment, value, seen[segment])
    assert path_segment("plain-id_1.2") == "plain-id_1.2"  # readable ids stay as they are


def _delivery(job: str) -> Delivery:
    return Delivery(
        id=new_delivery_id(),
        source="acme",
        vendor="standard",
        dedupe_key=f"acme:{job}",
        job_id=job,
        project="acme",
        body=b'{"job": "%s"}' % job.encode(),
        received_at=time.time(),
    )


def test_two_jobs_whose_ids_collided_keep_two_output_sets(make_settings: Any, tmp_path: Path) -> None:
    settings = make_settings()

    async def main() -> None:
        queue = SQLiteQueue(str(tmp_path / "queue.db"), poll_seconds=0.02)
        for job in ("collide:1", "collide/1"):
            await queue.enqueue(_delivery(job))
        worker = Worker(settings, queue, open_store(settings.store_url), drain_seconds=5)
        task = asyncio.create_task(worker.run())
        deadline = time.monotonic() + 30
        while worker.processed < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        worker.stop()
        await task
        await queue.close()

    asyncio.run(main())
    manifests = sorted(p.parent.name for p in (tmp_path / "out").rglob("manifest.json"))
    assert manifests == sorted([path_segment("collide:1"), path_segment("collide/1")])
    jobs = JobBook(open_store(settings.store_url)).list("acme")
    assert sorted(j.job_id for j in jobs) == ["collide/1", "collide:1"]
