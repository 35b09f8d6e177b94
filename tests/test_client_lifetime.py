"""HTTP clients live exactly as long as their worker or command: no sockets leak, none outlive it.

A real worker (hosted by the real receiver, as `labelhook run` does) processes many CVAT jobs against a
fake CVAT over real HTTP; the process's open file descriptors (`/proc/self/fd`) stay flat while it
works and fall back to where they were once it stops, and collecting garbage afterwards finds no
unclosed socket (a `ResourceWarning`, which pytest would otherwise swallow as unraisable).
"""

from __future__ import annotations

import contextlib
import gc
import os
import threading
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from processors.fetch import Fetcher
from processors.queue import open_queue
from processors.store import open_store
from processors.vendors.cvat.processor import CvatProcessor
from processors.worker import Worker
from receiver.app import create_app
from tests.fakes.cvat import FakeCvat, FakeCvatJob, build_app
from tests.support import LiveServer, loopback_origins, wait_for
from tests.test_cvat import LABELS, SECRET, annotations, job_object, signed, webhook

pytestmark = [
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword"),
    pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd (Linux)"),
]
JOBS = 40
WARM_UP = 4
META = {
    "chunk_size": 36, "size": 5, "image_quality": 70, "start_frame": 0, "stop_frame": 4,
    "frame_filter": "", "deleted_frames": [], "included_frames": None,
    "frames": [{"width": 40, "height": 30, "name": "video.mp4", "related_files": 0}],
}  # fmt: skip


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def open_sockets() -> int:
    """Open descriptors that are sockets (files such as the queue's come and go with their owners)."""
    count = 0
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # closed in between (or the listing's own descriptor)
            count += os.readlink(f"/proc/self/fd/{name}").startswith("socket:")
    return count


def settle_sockets(at_most: int, what: str) -> None:
    """Wait until the open sockets fall to ``at_most``: the fake server closes its side of a connection
    a moment after the client closes its own."""
    wait_for(lambda: open_sockets() <= at_most, timeout=20, what=what)


def unclosed_sockets() -> list[str]:
    """Collect garbage with every ResourceWarning recorded; the messages naming sockets/transports."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        gc.collect()
        gc.collect()
    return [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]


@pytest.fixture
def cvat() -> Iterator[LiveServer]:
    fake = FakeCvat(labels=list(LABELS))
    for number in range(1, JOBS + WARM_UP + 1):
        fake.jobs[str(number)] = FakeCvatJob(job_object(number), annotations(), META)
    with LiveServer(build_app(fake)) as live:
        yield live


def cvat_env(api_url: str) -> dict[str, str]:
    return {
        "LABELHOOK_SOURCES": "cvat",
        "LABELHOOK_CVAT_SECRET": SECRET,
        "LABELHOOK_CVAT_API_KEY": "cvat-test-token",
        "LABELHOOK_CVAT_API_URL": api_url,
        "LABELHOOK_FETCH_ALLOW_HOSTS": loopback_origins(api_url),
        "LABELHOOK_WORKER_CONCURRENCY": "2",
    }


def test_many_jobs_keep_descriptors_flat_and_the_worker_closes_its_clients_when_it_stops(
    make_settings: Any, cvat: LiveServer, tmp_path: Path
) -> None:
    settings = make_settings(**cvat_env(cvat.url))
    gc.collect()
    before = open_sockets()
    queue, store = open_queue(settings.queue_url), open_store(settings.store_url)
    worker = Worker(settings, queue, store, drain_seconds=5)

    with LiveServer(create_app(settings, queue, store, worker=worker)) as live, httpx.Client() as hooks:

        def deliver(first: int, count: int) -> None:
            for number in range(first, first + count):
                body = webhook(job_object(number))
                assert (
                    hooks.post(live.url + "/hooks/cvat", content=body, headers=signed(body)).status_code
                    == 202
                )
            wait_for(
                lambda: worker.processed >= first + count - 1, timeout=120, what=f"{first + count - 1} jobs"
            )

        deliver(1, WARM_UP)  # the pool, the receiver and the store have opened what they keep open
        warm = open_fds()
        deliver(WARM_UP + 1, JOBS)
        after_many = open_fds()
        # Keep-alive connections come and go with the load; a per-job leak would be 40+ here.
        assert after_many - warm <= 4, (warm, after_many)

    out = tmp_path / "out" / "cvat" / "3"
    assert len([p for p in out.iterdir() if (p / "manifest.json").exists()]) == JOBS + WARM_UP
    # The worker stopped with the server: its vendor clients are closed, not waiting for the GC.
    settle_sockets(before, "the worker's sockets to close")
    assert unclosed_sockets() == []


def test_a_processor_closes_the_client_it_built_and_leaves_an_injected_one_open(
    make_settings: Any, cvat: LiveServer
) -> None:
    settings = make_settings(**cvat_env(cvat.url))
    source = settings.source("cvat")
    gc.collect()
    before = open_sockets()
    with CvatProcessor(source, settings) as processor:  # as `labelhook submit` / `poll` use it
        assert processor.client().job("1")["id"] == 1
        assert open_sockets() > before  # a pooled keep-alive connection (and the server's end of it)
    settle_sockets(before, "the processor's socket to close")
    assert unclosed_sockets() == []

    with Fetcher.from_settings(settings) as fetcher:
        with CvatProcessor(source, settings, fetcher=fetcher) as processor:
            processor.client().job("1")
        # The caller owns an injected fetcher: it still works after the processor is closed.
        assert (
            fetcher.get_json(cvat.url + "/api/jobs/2", headers={"Authorization": "Token cvat-test-token"})[
                "id"
            ]
            == 2
        )
    settle_sockets(before, "the injected fetcher's socket to close")
    assert unclosed_sockets() == []


def test_threads_starting_on_a_fresh_processor_share_one_client(make_settings: Any, cvat: LiveServer) -> None:
    settings = make_settings(**cvat_env(cvat.url))
    barrier = threading.Barrier(8)

    def first_use(processor: CvatProcessor) -> int:
        barrier.wait()  # all at once, as a worker's first deliveries for a source are
        return id(processor.fetcher)

    with CvatProcessor(settings.source("cvat"), settings) as processor:
        with ThreadPoolExecutor(8) as pool:
            built = set(pool.map(first_use, [processor] * 8))
        assert len(built) == 1  # a second client would be overwritten and never closed
