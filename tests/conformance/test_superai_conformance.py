"""super.AI conformance: callbacks in the forms super.AI's docs publish (job callbacks to the
trailing-slash URL, v2 batch callbacks), through the real intake, a fake super.AI API and the worker;
output sets checked to the pixel."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from processors.jobs import JobBook
from processors.queue import open_queue
from processors.store import open_store
from processors.worker import Worker
from receiver.app import create_app
from tests.conformance.payloads import load, raw
from tests.fakes.superai import FakeSuperAI
from tests.support import LiveServer, loopback_origins, wait_for

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")
TOKEN = "superai-conformance-token"
APP: str = load("superai/batch-callback-completed.json")["appId"]
BATCH: str = load("superai/batch-callback-completed.json")["entityId"]
LEGEND = {"#e6194b": "crack", "#3cb44b": "rust"}


def mask(seed: int) -> tuple[bytes, np.ndarray]:
    """An RGBA mask of legend colours and its expected class map (1 crack, 2 rust, 0 unlabeled)."""
    rng = np.random.default_rng(seed)
    classes = rng.integers(0, 3, size=(12, 16)).astype(np.uint8)
    rgba = np.zeros((12, 16, 4), dtype=np.uint8)
    rgba[classes == 1] = (0xE6, 0x19, 0x4B, 255)
    rgba[classes == 2] = (0x3C, 0xB4, 0x4B, 255)
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, format="PNG")
    return buffer.getvalue(), classes


def finish(vendor: FakeSuperAI, job_id: str, seed: int) -> np.ndarray:
    """Make ``job_id`` COMPLETED at the fake, with a segmentation response; returns the expected map."""
    png, classes = mask(seed)
    path = f"data://1/jobs/{job_id}/mask.png"
    vendor.add_file(path, png, "image/png")
    vendor.add_job(job_id, "COMPLETED", {"id": int(job_id), "response": {"mask": path, "legend": LEGEND}})
    return classes


@pytest.fixture
def vendor() -> Iterator[tuple[FakeSuperAI, LiveServer]]:
    fake = FakeSuperAI()
    with LiveServer(fake.app) as live:
        yield fake, live


@pytest.fixture
def service(make_settings: Any, vendor: tuple[FakeSuperAI, LiveServer]) -> Iterator[tuple[LiveServer, Any]]:
    settings = make_settings(
        LABELHOOK_SOURCES="superai",
        LABELHOOK_SUPERAI_SECRET=TOKEN,
        LABELHOOK_SUPERAI_API_KEY=vendor[0].api_key,
        LABELHOOK_SUPERAI_API_URL=vendor[1].url,
        LABELHOOK_SUPERAI_APP_ID=APP,
        LABELHOOK_FETCH_ALLOW_HOSTS=loopback_origins(vendor[1].url),
        LABELHOOK_MAX_ATTEMPTS="3",
    )
    queue, store = open_queue(settings.queue_url), open_store(settings.store_url)
    worker = Worker(settings, queue, store, drain_seconds=2)
    with LiveServer(create_app(settings, queue, store, worker=worker)) as live:
        yield live, JobBook(store)


def post(url: str, body: bytes, path: str = "/hooks/superai/") -> httpx.Response:
    """To the URL form super.AI's callback docs require: trailing slash, here with the token query."""
    return httpx.post(
        f"{url}{path}?token={TOKEN}", content=body, headers={"content-type": "application/json"}, timeout=10
    )


def output(tmp_path: Path, job_id: str) -> Path:
    folder = tmp_path / "out" / "superai" / APP / job_id
    wait_for(lambda: (folder / "manifest.json").exists(), timeout=30, what=f"output set of {job_id}")
    return folder


def semantic(folder: Path) -> np.ndarray:
    with Image.open(folder / "masks" / "0" / "semantic.png") as image:
        return np.array(image)


def test_batch_callback_brings_its_finished_jobs_out_exactly_once(
    vendor: tuple[FakeSuperAI, LiveServer], service: tuple[LiveServer, JobBook], tmp_path: Path
) -> None:
    fake, _ = vendor
    live, book = service
    fake.batches[(APP, BATCH)] = load("superai/batch-answer.json")
    first = finish(fake, "1234567", seed=1)
    fake.add_job("1234568", "IN_PROGRESS")

    reply = post(live.url, raw("superai/batch-callback-completed.json"))
    assert reply.status_code == 202
    folder = output(tmp_path, "1234567")
    assert np.array_equal(semantic(folder), first)
    wait_for(lambda: (r := book.get("superai", f"batch:{BATCH}")) is not None and not r.open, what="batch")
    batch = book.get("superai", f"batch:{BATCH}")
    assert batch is not None and batch.meta["jobs"] == ["1234567", "1234568"]
    waiting = book.get("superai", "1234568")
    assert waiting is not None and waiting.open and waiting.meta["batch"] == BATCH

    # The same batch again, and the finished job's own callback: both acknowledged, nothing redone.
    assert post(live.url, raw("superai/batch-callback-completed.json")).json()["duplicate"] is True
    assert post(live.url, raw("superai/job-callback-completed.json")).json()["duplicate"] is True

    # The other job reports progress (recorded, not fetched), then finishes: its own callback brings it.
    assert post(live.url, raw("superai/job-callback-in-progress.json")).status_code == 202
    second = finish(fake, "1234568", seed=2)
    done = load("superai/job-callback-in-progress.json") | {"state": "COMPLETED"}
    assert post(live.url, json.dumps(done).encode(), "/hooks/superai").status_code == 202
    assert np.array_equal(semantic(output(tmp_path, "1234568")), second)
    assert len(fake.requests_to("/v1/jobs/1234567/response")) == 1
    assert len(fake.requests_to("/v1/jobs/1234568/response")) == 1
    assert len(fake.requests_to(f"/v1/apps/{APP}/batches/{BATCH}")) == 1


def test_failed_and_partially_failed_batches(
    vendor: tuple[FakeSuperAI, LiveServer], service: tuple[LiveServer, JobBook], tmp_path: Path
) -> None:
    fake, _ = vendor
    live, book = service
    assert post(live.url, raw("superai/batch-callback-failed.json")).status_code == 202
    wait_for(lambda: book.get("superai", f"batch:{BATCH}") is not None, what="failed batch recorded")
    record = book.get("superai", f"batch:{BATCH}")
    assert record is not None and record.state == "failed" and record.vendor_state == "FAILED"
    assert fake.requests_to(f"/v1/apps/{APP}/batches/{BATCH}") == []  # recorded, nothing fetched

    partial = load("superai/batch-callback-partial-failure.json")
    fake.batches[(APP, partial["entityId"])] = {"jobIds": ["1234569"]}
    expected = finish(fake, "1234569", seed=3)
    assert post(live.url, raw("superai/batch-callback-partial-failure.json")).status_code == 202
    assert np.array_equal(semantic(output(tmp_path, "1234569")), expected)


def test_v2_callbacks_are_verified_like_job_callbacks(service: tuple[LiveServer, JobBook]) -> None:
    live, _ = service
    body = raw("superai/batch-callback-completed.json")
    for url in (f"{live.url}/hooks/superai/", f"{live.url}/hooks/superai/?token=wrong"):
        reply = httpx.post(url, content=body, headers={"content-type": "application/json"}, timeout=10)
        assert reply.status_code == 401
    other = load("superai/batch-callback-completed.json") | {"entityType": "project"}
    reply = post(live.url, json.dumps(other).encode())
    assert reply.status_code == 200 and reply.json()["queued"] is False  # handled explicitly, not stored
