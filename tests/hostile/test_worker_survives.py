"""#1: a record nested ~950 levels (or any unreadable one) cannot stop the worker; a dead worker is seen."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx

from processors.config import Settings
from processors.delivery import Delivery
from processors.queue import Lease, RetryPolicy
from processors.queue.sqlite import SQLiteQueue
from processors.store import open_store
from processors.worker import Worker
from receiver.app import create_app
from tests.hostile.inputs import CVAT_SECRET, cvat_headers, cvat_update_job
from tests.support import LiveServer, acme_delivery, wait_for


def _cvat_settings(make_settings: Any) -> Settings:
    settings: Settings = make_settings(
        LABELHOOK_SOURCES="cvat",
        LABELHOOK_CVAT_VENDOR="cvat",
        LABELHOOK_CVAT_SECRET=CVAT_SECRET,
        LABELHOOK_CVAT_API_KEY="k",
        LABELHOOK_CVAT_API_URL="http://127.0.0.1:9",
        LABELHOOK_CVAT_COMPLETE_ON="acceptance",
    )
    return settings


def test_a_deeply_nested_signed_callback_is_a_400_at_any_depth(make_settings: Any) -> None:
    settings = _cvat_settings(make_settings)
    app = create_app(
        settings, SQLiteQueue(settings.queue_url[len("sqlite:///") :]), open_store(settings.store_url)
    )
    with LiveServer(app) as live:
        for depth in (70, 950, 984, 5000, 200_000):
            body = cvat_update_job(depth)
            answer = httpx.post(
                f"{live.url}/hooks/cvat", content=body, headers=cvat_headers(body), timeout=30
            )
            assert answer.status_code == 400, (depth, answer.text)
            assert answer.json()["error"] == "too_deep"
        shallow = cvat_update_job(0)
        accepted = httpx.post(f"{live.url}/hooks/cvat", content=shallow, headers=cvat_headers(shallow))
        assert accepted.status_code == 202, accepted.text  # the same callback, sensibly shaped


class _OddRecord(Delivery):
    """A delivery whose stored head no reader can use: nested 950 levels deep in ``meta`` (what an
    older intake let into the queue from CVAT's ``job.stage``), or carrying a field this version does
    not know. Written as bytes, as the C encoder wrote them then."""

    extra = b""

    def to_record(self) -> bytes:
        head, _, body = super().to_record().partition(b"\n")
        assert head.endswith(b"}}")
        return head[:-2] + b"," + self.extra + b"}}\n" + body


class _DeepRecord(_OddRecord):
    extra = b'"stage":' + b"[" * 950 + b'"acceptance"' + b"]" * 950


class _UnknownFieldRecord(_OddRecord):
    extra = b'"x":1},"surprise":{"y":2'


def _odd(cls: type[_OddRecord], job: str) -> Delivery:
    d = acme_delivery(job)
    fields = {f: getattr(d, f) for f in ("id", "source", "vendor", "dedupe_key", "job_id", "project", "body")}
    return cls(**fields, received_at=d.received_at, meta={"event": "update:job"})


def test_unreadable_records_become_dead_letters_and_the_worker_goes_on(
    make_settings: Any, tmp_path: Path
) -> None:
    settings = make_settings()
    db = str(tmp_path / "queue.db")

    async def main() -> list[Any]:
        queue = SQLiteQueue(db, RetryPolicy(3, 0.01, 0.05), poll_seconds=0.02)
        await queue.enqueue(_odd(_DeepRecord, "deep"))
        await queue.enqueue(_odd(_UnknownFieldRecord, "unknown"))
        await queue.enqueue(acme_delivery("fine"))
        worker = Worker(settings, queue, open_store(settings.store_url), drain_seconds=5)
        task = asyncio.create_task(worker.run())
        deadline = time.monotonic() + 30
        dead: list[Any] = []
        while time.monotonic() < deadline and not task.done():
            dead = await queue.dead_letters()
            if worker.processed >= 1 and any(d.job_id == "unknown" for d in dead):
                break
            await asyncio.sleep(0.05)
        worker.stop()
        await asyncio.wait_for(task, 30)  # returned, not raised: the worker survived both records
        await queue.close()
        return dead

    dead = asyncio.run(main())
    assert (tmp_path / "out" / "standard" / "acme" / "fine" / "manifest.json").exists()
    reasons = {d.job_id: d.last_error or "" for d in dead}
    assert "unreadable record" in reasons["unknown"]
    # The deep one is read by a thread with room on its stack (processed), or not (a dead letter, or
    # logged and skipped by the journal indexer); never a worker death.
    assert set(reasons) <= {"deep", "unknown"}


class _BrokenQueue(SQLiteQueue):
    """A queue whose claim fails with something no worker code expects (a bug, a broken backend)."""

    async def claim(self, max_messages: int, lease_seconds: float, wait_seconds: float) -> list[Lease]:
        raise RuntimeError("claim exploded")


def test_a_dead_worker_fails_readyz_and_asks_the_server_to_exit(make_settings: Any, tmp_path: Path) -> None:
    settings = make_settings()
    queue = _BrokenQueue(str(tmp_path / "queue.db"))
    store = open_store(settings.store_url)
    worker = Worker(settings, queue, store, drain_seconds=1)
    died: list[bool] = []
    app = create_app(settings, queue, store, worker=worker, on_worker_death=lambda: died.append(True))
    with LiveServer(app) as live:
        wait_for(lambda: died, timeout=15, what="the worker's death to be reported")
        ready = httpx.get(f"{live.url}/readyz", timeout=10)
        assert ready.status_code == 503
        assert "claim exploded" in ready.json()["detail"]["worker"]
        assert httpx.get(f"{live.url}/healthz", timeout=10).status_code == 200
    assert worker.failure is not None and "RuntimeError" in worker.failure
