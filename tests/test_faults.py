"""Faults, loopback only: kill -9 of web and worker under load, a flaky S3, a flaky vendor, a full disk.

The kill test's count is `LABELHOOK_FAULT_KILLS` (kills of each process; default 4 keeps the default run
short, `LABELHOOK_FAULT_KILLS=20` is the issue's full run). Every test prints its acked / processed /
duplicated / lost counts (`pytest -s` shows them).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from processors.config import Settings
from processors.delivery import Delivery
from processors.errors import Permanent
from processors.queue import RetryPolicy
from processors.queue.sqlite import SQLiteQueue
from processors.store import JobWriter, open_store
from processors.store.s3 import S3Store
from processors.vendors.base import Processor
from processors.worker import Worker
from receiver.app import create_app
from receiver.protocol import BoundedHttpTools
from tests.faults import (
    FlakyProxy,
    LoadGenerator,
    Restarter,
    ScriptedServer,
    delivery_body,
    kill_loop,
    orphan_temp_files,
    output_sets,
    tally,
    up,
)
from tests.support import (
    SECRET,
    LiveServer,
    cli_env,
    enqueue_deliveries,
    free_port,
    labelhook,
    loopback_origins,
    queue_rows,
    sign,
    wait_for,
)

KILLS = int(os.environ.get("LABELHOOK_FAULT_KILLS", "4"))


def _attempts(db: Path) -> dict[str, int]:
    return {key.split(":", 1)[1]: attempts for key, (_, attempts) in queue_rows(db).items()}


@pytest.mark.timeout(max(180, KILLS * 20))
def test_kill_9_of_web_and_worker_under_load_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    db, out = tmp_path / "queue.db", tmp_path / "out"
    env = cli_env(
        tmp_path,
        PORT=str(port),
        LABELHOOK_LEASE_SECONDS="2",
        LABELHOOK_RETRY_BASE_SECONDS="0.05",
        LABELHOOK_WORKER_CONCURRENCY="2",
    )
    web = Restarter(lambda: labelhook("serve", env=env, cwd=tmp_path), lambda: up(url))
    worker = Restarter(lambda: labelhook("work", env=env, cwd=tmp_path), lambda: True)
    try:
        web.wait_ready()
        with LoadGenerator(url, SECRET, threads=6, rate=150) as load:
            killers = [
                threading.Thread(target=kill_loop, args=(web, KILLS, (0.2, 1.2))),
                threading.Thread(target=kill_loop, args=(worker, KILLS, (0.3, 2.0))),
            ]
            for k in killers:
                k.start()
            for k in killers:
                k.join()
        acked = set(load.stats.acked)

        def settled() -> bool:
            rows = queue_rows(db).values()
            return bool(rows) and all(status == "done" for status, _ in rows)

        wait_for(settled, timeout=120, interval=0.2, what="the worker to finish every delivery")
    finally:
        web.stop()
        worker.stop()
    result = tally(acked, output_sets(out), _attempts(db))
    print(
        f"\nkill -9: web {web.kills}x, worker {worker.kills}x; {result.line()}; "
        f"http attempts={load.stats.sent} refused/reset={load.stats.errors} "
        f"re-sent-after-durable={load.stats.duplicates} non-2xx={load.stats.non_2xx} "
        f"orphan-temp-files={orphan_temp_files(out)}"
    )
    assert web.kills == KILLS and worker.kills == KILLS
    assert result.acked > 50
    assert result.lost == 0 and result.extra == 0
    assert result.processed == result.acked
    assert set(queue_rows(db)) == {f"acme:{m}" for m in acked}  # one queue row per delivery, no more
    for job in acked:
        manifest = json.loads((out / "standard/acme" / job / "manifest.json").read_text())
        assert manifest["job"] == job
        assert (out / "standard/acme" / job / "callback.json").read_bytes() == delivery_body(job)


def _enqueue(db: Path, count: int, prefix: str) -> list[Delivery]:
    return enqueue_deliveries(db, [f"{prefix}{i}" for i in range(count)], delivery_body)


def _run_worker(worker: Worker, queue: SQLiteQueue, count: int, timeout: float = 60) -> dict[str, int]:
    async def main() -> dict[str, int]:
        task = asyncio.create_task(worker.run())
        deadline = time.monotonic() + timeout
        try:
            while True:
                depth = await queue.depth()
                if depth["done"] + depth["dead"] >= count:
                    return depth
                assert time.monotonic() < deadline, f"worker did not finish: {depth}"
                await asyncio.sleep(0.05)
        finally:
            worker.stop()
            await task
            await queue.close()

    return asyncio.run(main())


def test_s3_put_failures_are_retried_and_every_output_set_completes(
    make_settings: Any, moto_endpoint: str, s3_client: Any, bucket: str, tmp_path: Path
) -> None:
    import boto3
    from botocore.config import Config

    count = 30
    items = _enqueue(tmp_path / "queue.db", count, "s3-")
    settings = make_settings(LABELHOOK_STORE=f"s3://{bucket}/out")
    # Every 4th PUT fails. (Every 3rd would starve a job forever: a job writes 3 objects, so each attempt
    # would start in the same phase and fail at its 3rd PUT — real faults are not periodic.)
    with FlakyProxy(moto_endpoint, fail_every=4) as proxy:
        client = boto3.client(
            "s3",
            endpoint_url=proxy.url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            # No retries inside boto3: every injected 500 reaches the worker's own retry policy.
            config=Config(retries={"max_attempts": 1, "mode": "standard"}),
        )
        queue = SQLiteQueue(str(tmp_path / "queue.db"), RetryPolicy(8, 0.02, 0.1), poll_seconds=0.02)
        worker = Worker(settings, queue, S3Store(bucket, "out", client=client), drain_seconds=5)
        depth = _run_worker(worker, queue, count)
    attempts = _attempts(tmp_path / "queue.db")
    pages = s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="out/standard/acme/")
    keys = [obj["Key"] for page in pages for obj in page.get("Contents", [])]
    sets: dict[str, list[str]] = {}
    for key in keys:
        job, name = key.split("/")[3:5]
        sets.setdefault(job, []).append(name)
    result = tally({d.job_id for d in items}, {j: sorted(f) for j, f in sets.items()}, attempts)
    retried = sum(1 for a in attempts.values() if a > 1)
    print(
        f"\nflaky S3: {proxy.failed} PUTs failed, {proxy.forwarded} forwarded; "
        f"{result.line()}; retried={retried}"
    )
    assert proxy.failed >= 10 and retried > 0
    assert depth["dead"] == 0 and depth["done"] == count
    assert result.lost == 0 and result.extra == 0 and result.processed == count
    for d in items:
        stored = s3_client.get_object(Bucket=bucket, Key=f"out/standard/acme/{d.job_id}/callback.json")
        assert stored["Body"].read() == d.body


class FetchingProcessor(Processor):
    """A vendor processor in miniature: fetch the job's result through the real `Fetcher`, store it."""

    def __init__(self, settings: Settings, api_url: str) -> None:
        super().__init__(settings.sources["acme"], settings)
        self.api_url = api_url

    def process(self, delivery: Delivery, out: JobWriter) -> dict[str, Any]:
        result = self.fetcher.get_json(f"{self.api_url}/jobs/{delivery.job_id}/result")
        out.write_json("result.json", result)
        return {}


@pytest.mark.parametrize(
    ("script", "outcome", "claims"),
    [
        ([429, 503, 502], "done", 4),
        ([429] * 10, "dead", 4),  # LABELHOOK_MAX_ATTEMPTS=4 below: gives up, reason kept
        ([404], "dead", 1),  # a vendor 4xx is permanent: no retry
    ],
    ids=["429-then-5xx-then-ok", "always-429", "404"],
)
def test_vendor_429_and_5xx_are_retried_4xx_is_not(
    make_settings: Any, tmp_path: Path, script: list[int], outcome: str, claims: int
) -> None:
    [item] = _enqueue(tmp_path / "queue.db", 1, "v-")
    with ScriptedServer(script, body=b'{"labels": [1, 2, 3]}') as vendor:
        settings = make_settings(
            LABELHOOK_FETCH_ALLOW_HOSTS=loopback_origins(vendor.url), LABELHOOK_MAX_ATTEMPTS="4"
        )
        queue = SQLiteQueue(str(tmp_path / "queue.db"), RetryPolicy(4, 0.02, 0.1), poll_seconds=0.02)
        processor = FetchingProcessor(settings, vendor.url)
        worker = Worker(settings, queue, open_store(settings.store_url), processors={"acme": processor})
        _run_worker(worker, queue, 1)
    rows = queue_rows(tmp_path / "queue.db")
    status, attempts = rows[item.dedupe_key]
    print(f"\nvendor {script}: {[s for _, s in vendor.hits]} -> {status} after {attempts} claims")
    assert (status, attempts) == (outcome, min(claims, 4))
    job = tmp_path / "out/standard/acme" / item.job_id
    if outcome == "done":
        assert json.loads((job / "result.json").read_text()) == {"labels": [1, 2, 3]}
        assert (job / "manifest.json").exists()
    else:
        assert not (job / "manifest.json").exists()
        [dead] = asyncio.run(_dead(tmp_path / "queue.db"))
        assert f"{script[0]}" in (dead.last_error or ""), dead.last_error
        if script[0] == 404:
            assert "gave up" not in (dead.last_error or "")


async def _dead(db: Path) -> list[Any]:
    queue = SQLiteQueue(str(db))
    try:
        return await queue.dead_letters()
    finally:
        await queue.close()


def test_permanent_vendor_error_class_is_what_the_worker_dead_letters() -> None:
    # The 404 case above relies on this mapping; keep it explicit.
    from processors.fetch import HTTPStatusPermanent

    assert issubclass(HTTPStatusPermanent, Permanent)


@contextlib.contextmanager
def tiny_filesystem(path: Path, size: str = "1m") -> Iterator[Path]:
    path.mkdir()
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot mount a tmpfs for the full-disk test: {exc}")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs for the full-disk test (needs root): {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=10)


def _fill(disk: Path) -> Path:
    filler = disk / "filler"
    with contextlib.suppress(OSError), filler.open("wb") as f:
        while True:
            f.write(b"\0" * 4096)
            f.flush()
    return filler


def test_full_disk_on_the_sqlite_path_answers_503_and_recovers_when_space_is_freed(
    make_settings: Any, tmp_path: Path
) -> None:
    with tiny_filesystem(tmp_path / "disk") as disk:
        settings = make_settings(LABELHOOK_QUEUE=f"sqlite:///{disk}/queue.db")
        queue = SQLiteQueue(str(disk / "queue.db"))
        app = create_app(settings, queue, open_store(settings.store_url))
        statuses: dict[str, int] = {}
        with LiveServer(app, http=BoundedHttpTools) as live:

            def post(msg_id: str) -> httpx.Response:
                body = delivery_body(msg_id)
                response = httpx.post(live.url + "/hooks/acme", content=body, headers=sign(body, msg_id))
                statuses[msg_id] = response.status_code
                return response

            assert post("before-0").status_code == 202
            filler = _fill(disk)
            refused = None
            for i in range(500):
                response = post(f"full-{i}")
                assert response.status_code in (202, 503), response.text
                if response.status_code == 503:
                    refused = f"full-{i}"
                    assert response.json()["error"] == "queue_unavailable"
                    break
            assert refused is not None, "the queue accepted 500 deliveries on a full 1 MiB disk"
            assert post(f"full-{int(refused[5:]) + 1}").status_code == 503  # still full: still refused
            ready = httpx.get(live.url + "/healthz")
            assert ready.status_code == 200  # the process is alive; only intake refuses
            filler.unlink()
            # The vendor's retry of the refused delivery now succeeds, as do new ones.
            assert post(refused).status_code == 202
            assert post("after-0").status_code == 202
        acked = {m for m, s in statuses.items() if s == 202}
        stored = {key.split(":", 1)[1] for key in queue_rows(disk / "queue.db")}
        print(
            f"\nfull disk: {sum(s == 202 for s in statuses.values())} acked, "
            f"{sum(s == 503 for s in statuses.values())} refused with 503; lost={len(acked - stored)}"
        )
        assert acked <= stored
        assert not {m for m, s in statuses.items() if s == 503} & stored  # a 503 left nothing behind


def test_the_tiny_filesystem_is_really_full(tmp_path: Path) -> None:
    with tiny_filesystem(tmp_path / "disk", "256k") as disk:
        _fill(disk)
        assert shutil.disk_usage(disk).free < 4096
