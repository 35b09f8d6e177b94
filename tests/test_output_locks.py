"""One delivery at a time writes a job's output set: two deliveries for one job, claimed together.

Two signed CVAT updates of one job (different update times, so both are processed) are queued
first, then one worker claims both at once (concurrency 2). Without `OutputLocks` both threads
fetch and write `cvat/3/42` at the same moment; with it the fake CVAT sees one whole processing and
then the other, and the manifest left names the later delivery and matches every file's bytes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from processors.output_locks import OutputLocks
from processors.queue import open_queue
from processors.store import open_store
from processors.worker import Worker
from receiver.app import create_app
from tests.fakes.cvat import FakeCvat, FakeCvatJob, build_app
from tests.support import LiveServer, wait_for
from tests.test_client_lifetime import META, cvat_env
from tests.test_cvat import LABELS, annotations, job_object, signed, webhook

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


@pytest.fixture
def fake() -> Iterator[tuple[FakeCvat, LiveServer]]:
    cvat = FakeCvat(labels=list(LABELS))
    cvat.jobs["42"] = FakeCvatJob(job_object(42), annotations(), META)
    with LiveServer(build_app(cvat)) as live:
        yield cvat, live


def test_two_deliveries_for_one_job_write_its_output_set_one_after_the_other(
    make_settings: Any, fake: tuple[FakeCvat, LiveServer], tmp_path: Path
) -> None:
    cvat, api = fake
    settings = make_settings(**cvat_env(api.url))
    first = {**job_object(42), "updated_date": "2024-05-02T11:22:33.000001Z"}
    second = {**job_object(42), "updated_date": "2024-05-02T11:22:34.000002Z"}
    # Intake only: both deliveries wait in the queue, so the worker below claims them together.
    with LiveServer(
        create_app(settings, open_queue(settings.queue_url), open_store(settings.store_url))
    ) as rx:
        for job in (first, second):
            body = webhook(job)
            response = httpx.post(rx.url + "/hooks/cvat", content=body, headers=signed(body), timeout=10)
            assert response.status_code == 202
    queue, store = open_queue(settings.queue_url), open_store(settings.store_url)
    worker = Worker(settings, queue, store, drain_seconds=5)
    with LiveServer(create_app(settings, queue, store, worker=worker)):
        wait_for(lambda: worker.processed >= 2, timeout=60, what="both deliveries")
    assert len(worker.output_locks) == 0  # nothing held, nothing remembered

    # The vendor saw one complete processing, then the other: never two at once.
    calls = [path for method, path, _ in cvat.seen if method == "GET" and path.startswith("/api/jobs/42")]
    half = len(calls) // 2
    assert calls.count("/api/jobs/42") == 2 and calls[0] == calls[half] == "/api/jobs/42"
    assert calls[:half] == calls[half:]

    job = tmp_path / "out" / "cvat" / "3" / "42"
    manifest = json.loads((job / "manifest.json").read_text())
    assert json.loads((job / "callback.json").read_bytes()) == json.loads(webhook(second))  # FIFO: later last
    on_disk = {p.relative_to(job).as_posix() for p in job.rglob("*") if p.is_file()} - {"manifest.json"}
    assert {f["path"] for f in manifest["files"]} == on_disk
    for entry in manifest["files"]:
        data = (job / entry["path"]).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (entry["size"], entry["sha256"]), entry[
            "path"
        ]


def test_locks_queue_in_order_per_key_and_are_forgotten_even_after_a_cancelled_wait() -> None:
    async def main() -> None:
        locks, order = OutputLocks(), []

        async def write(key: str, name: str, hold: float) -> None:
            async with locks.hold(key):
                order.append(f"{name}+")
                await asyncio.sleep(hold)
                order.append(f"{name}-")

        a = asyncio.create_task(write("job", "a", 0.05))
        await asyncio.sleep(0)
        b = asyncio.create_task(write("job", "b", 0))
        other = asyncio.create_task(write("other", "o", 0))
        cancelled = asyncio.create_task(write("job", "c", 0))
        await asyncio.sleep(0.01)
        cancelled.cancel()
        await asyncio.gather(a, b, other, return_exceptions=True)
        assert order.index("o-") < order.index("a-")  # another output set does not wait
        assert [e for e in order if e[0] in "ab"] == ["a+", "a-", "b+", "b-"]
        assert "c+" not in order and len(locks) == 0

    asyncio.run(main())
