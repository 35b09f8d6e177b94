"""One end-to-end suite, two deployments: `sqlite://` + `file://` and `sqs://` + `s3://` (moto over HTTP).

Web and worker run as separate OS processes (`labelhook serve`, `labelhook work`) that share nothing
but the queue and the store — exactly the PaaS shape (separate dynos) for the SQS + S3 backend.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from processors.config import Settings, load_settings
from processors.delivery import Delivery
from processors.errors import Retryable
from processors.queue import Queue, RetryPolicy, open_queue
from processors.queue.sqs import SQSQueue
from processors.store import JobWriter, Store, open_store
from processors.store.s3 import S3Store
from processors.vendors.base import Processor
from processors.worker import Worker
from tests.conftest import AWS_TEST_ENV
from tests.support import callback_body, cli_env, free_port, is_up, labelhook, run_cli, sign, wait_for


@dataclass
class Backend:
    name: str
    env: dict[str, str]
    store: Store
    tmp: Path
    sqs: Any = None

    def open_queue(self, policy: RetryPolicy) -> Queue:
        """The backend's queue in this process, with explicit clients (no process-wide AWS env)."""
        if self.sqs is None:
            return open_queue(self.env["LABELHOOK_QUEUE"], policy)
        name = self.env["LABELHOOK_QUEUE"].removeprefix("sqs://")
        return SQSQueue(self.sqs, queue_name=name, policy=policy, store=self.store)

    def manifests(self) -> dict[str, dict[str, Any]]:
        found = {}
        for key in self.store.list("standard/acme"):
            if key.endswith("/manifest.json"):
                found[key.split("/")[-2]] = json.loads(self.store.get(key))
        return found

    def settings(self, **extra: str) -> Settings:
        return load_settings({**self.env, **extra})


@pytest.fixture(params=["sqlite+file", "sqs+s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite+file":
        env = cli_env(tmp_path, LABELHOOK_LEASE_SECONDS="3", LABELHOOK_RETRY_BASE_SECONDS="0.1")
        yield Backend(request.param, env, open_store(env["LABELHOOK_STORE"]), tmp_path)
        return
    endpoint = request.getfixturevalue("moto_endpoint")
    s3 = request.getfixturevalue("s3_client")
    bucket = request.getfixturevalue("bucket")
    import boto3

    sqs = boto3.client(
        "sqs",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    name = f"lh-e2e-{uuid.uuid4().hex[:10]}"
    dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"})
    main = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "3", "RedrivePolicy": redrive})
    env = cli_env(
        tmp_path,
        LABELHOOK_QUEUE=f"sqs://{name}",
        LABELHOOK_STORE=f"s3://{bucket}/out",
        LABELHOOK_LEASE_SECONDS="3",
        LABELHOOK_RETRY_BASE_SECONDS="1",
        AWS_ENDPOINT_URL=endpoint,
        **AWS_TEST_ENV,
    )
    yield Backend(request.param, env, S3Store(bucket, "out", client=s3), tmp_path, sqs)
    sqs.delete_queue(QueueUrl=main["QueueUrl"])
    sqs.delete_queue(QueueUrl=dlq)


def start_web(backend: Backend) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    web = labelhook("serve", env={**backend.env, "PORT": str(port), "HOST": "127.0.0.1"}, cwd=backend.tmp)
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: is_up(url), timeout=30, what="labelhook serve")
    return web, url


def stop(*procs: subprocess.Popen[bytes]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        proc.wait(30)


def post(url: str, msg_id: str, job: str | None = None) -> httpx.Response:
    body = callback_body(job or msg_id)
    return httpx.post(url + "/hooks/acme", content=body, headers=sign(body, msg_id), timeout=10)


def test_web_and_worker_in_separate_processes_deliver_jobs(backend: Backend) -> None:
    web, url = start_web(backend)
    worker = labelhook("work", env=backend.env, cwd=backend.tmp)
    try:
        assert httpx.get(url + "/readyz", timeout=10).json()["queue"] == "ok"
        statuses = [post(url, f"e2e-{i}").status_code for i in range(20)]
        assert statuses == [202] * 20
        found = wait_for(
            lambda: (m := backend.manifests()) and len(m) == 20 and m, timeout=60, what="20 output sets"
        )
    finally:
        stop(web, worker)
    assert sorted(found) == sorted(f"e2e-{i}" for i in range(20))
    for msg_id in found:
        assert backend.store.get(f"standard/acme/{msg_id}/callback.json") == callback_body(msg_id)


def test_duplicate_callbacks_raced_by_two_workers_give_one_output_set(backend: Backend) -> None:
    web, url = start_web(backend)
    workers = [labelhook("work", env=backend.env, cwd=backend.tmp) for _ in range(2)]
    try:
        body = callback_body("dup")
        headers = sign(body, "dup-1")

        async def burst() -> list[int]:
            async with httpx.AsyncClient(base_url=url, timeout=10) as client:
                sent = [client.post("/hooks/acme", content=body, headers=headers) for _ in range(5)]
                return [r.status_code for r in await asyncio.gather(*sent)]

        statuses = asyncio.run(burst())
        wait_for(lambda: "dup-1" in backend.manifests(), timeout=60, what="the output set")
        time.sleep(4)  # give the other copies (SQS) time to be claimed, judged and acked
    finally:
        stop(web, *workers)
    if backend.name == "sqlite+file":
        assert sorted(statuses) == [200, 200, 200, 200, 202]  # duplicates known at enqueue
    else:
        assert statuses == [202] * 5  # SQS cannot tell at send time; the worker's claim decides
    assert list(backend.manifests()) == ["dup-1"]
    keys = backend.store.list("standard/acme")
    assert sorted(keys) == ["standard/acme/dup-1/callback.json", "standard/acme/dup-1/manifest.json"]


def test_worker_metrics_reach_the_web_labelled_by_worker(backend: Backend) -> None:
    """`serve` and `work` share only the queue and the store: the worker's counters still show on the
    web's /metrics within 15 s, labelled by worker, a duplicate counted as a duplicate (SQS)."""
    from prometheus_client.parser import text_string_to_metric_families

    token = {"Authorization": "Bearer e2e-dashboard-token-0123456789"}

    def scrape() -> dict[str, dict[str, float]]:
        text = httpx.get(url + "/metrics", headers=token, timeout=10).text
        by_worker: dict[str, dict[str, float]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if "worker" in sample.labels:
                    counts = by_worker.setdefault(sample.labels["worker"], {})
                    counts[sample.name] = counts.get(sample.name, 0.0) + sample.value
        return by_worker

    port = free_port()
    web_env = {**backend.env, "PORT": str(port), "HOST": "127.0.0.1"}
    web_env["LABELHOOK_DASHBOARD_TOKEN"] = token["Authorization"].removeprefix("Bearer ")
    web, url = labelhook("serve", env=web_env, cwd=backend.tmp), f"http://127.0.0.1:{port}"
    worker = labelhook("work", env=backend.env, cwd=backend.tmp)
    try:
        wait_for(lambda: is_up(url), timeout=30, what="labelhook serve")
        for i in range(3):
            assert post(url, f"wm-{i}").status_code == 202
        body = callback_body("wm-dup")
        headers = sign(body, "wm-dup")
        for _ in range(3):
            assert httpx.post(url + "/hooks/acme", content=body, headers=headers, timeout=10).is_success
        wait_for(lambda: len(backend.manifests()) == 4, timeout=60, what="4 output sets")
        done_at = time.monotonic()
        expected_duplicates = 0 if backend.name == "sqlite+file" else 2  # SQLite refuses them at intake
        label = f"-{worker.pid}"

        def settled() -> dict[str, float] | None:
            counts = next((c for w, c in scrape().items() if w.endswith(label)), None)
            ok = counts is not None and counts.get("labelhook_deliveries_processed_total") == 4
            ok = ok and counts.get("labelhook_deliveries_duplicate_total", 0) == expected_duplicates
            return counts if ok else None

        counts = wait_for(settled, timeout=30, interval=0.5, what="worker counters on the web's /metrics")
        assert time.monotonic() - done_at <= 15
        # The dashboard's workers list: the same worker, its heartbeat recent.
        [seen] = httpx.get(url + "/api/workers", headers=token, timeout=10).json()
        assert seen["worker"].endswith(label) and seen["totals"]["processed"] == 4
        assert time.time() - seen["heartbeat_at"] < 60 and seen["stopped_at"] is None
    finally:
        stop(web, worker)
    assert counts["labelhook_delivery_latency_seconds_count"] == 4  # duplicates are not in the timings
    assert counts["labelhook_in_flight"] == 0
    assert counts["labelhook_worker_heartbeat_timestamp_seconds"] > time.time() - 60


def test_worker_killed_mid_job_loses_nothing(backend: Backend) -> None:
    web, url = start_web(backend)
    try:
        for i in range(60):
            assert post(url, f"k-{i}").status_code == 202
    finally:
        stop(web)
    worker = labelhook("work", env={**backend.env, "LABELHOOK_WORKER_CONCURRENCY": "4"}, cwd=backend.tmp)
    wait_for(lambda: len(backend.manifests()) >= 5, timeout=60, interval=0.01, what="the worker under way")
    worker.send_signal(signal.SIGKILL)
    worker.wait(10)
    done_at_kill = len(backend.manifests())
    assert done_at_kill < 60, "the worker finished everything before it was killed"
    second = labelhook("work", env=backend.env, cwd=backend.tmp)
    try:
        found = wait_for(
            lambda: (m := backend.manifests()) and len(m) == 60 and m,
            timeout=90,
            what="the rest, after the leases ran out",
        )
    finally:
        stop(second)
    for i in range(60):
        assert backend.store.get(f"standard/acme/k-{i}/callback.json") == callback_body(f"k-{i}")
    assert len({m["delivery_id"] for m in found.values()}) == 60


class Failing(Processor):
    def process(self, delivery: Delivery, out: JobWriter) -> dict[str, Any]:
        raise Retryable("vendor answered 502 Bad Gateway")


def test_poison_delivery_dead_letters_then_replays(backend: Backend) -> None:
    web, url = start_web(backend)
    try:
        assert post(url, "poison-1").status_code == 202
    finally:
        stop(web)
    settings = backend.settings(LABELHOOK_MAX_ATTEMPTS="2")

    def run_worker(processors: dict[str, Processor] | None, until: Any) -> None:
        async def main() -> None:
            queue = backend.open_queue(RetryPolicy(2, 0.1, 0.2))
            worker = Worker(settings, queue, backend.store, processors=processors)
            task = asyncio.create_task(worker.run())
            deadline = time.monotonic() + 60
            while not await until(queue):
                assert time.monotonic() < deadline, "worker did not reach the expected state"
                await asyncio.sleep(0.2)
            worker.stop()
            await task
            await queue.close()

        asyncio.run(main())

    async def has_dead(queue: Any) -> bool:
        return bool(await queue.dead_letters())

    run_worker({"acme": Failing(settings.sources["acme"], settings)}, has_dead)
    listed = run_cli("dead", "list", "--json", env=backend.env, cwd=backend.tmp)
    [row] = json.loads(listed.stdout)
    assert "vendor answered 502 Bad Gateway" in row["reason"]
    replayed = run_cli("dead", "replay", "--all", env=backend.env, cwd=backend.tmp)
    assert "replayed 1" in replayed.stdout, replayed.stdout + replayed.stderr

    async def processed(queue: Any) -> bool:
        return "poison-1" in backend.manifests()

    run_worker(None, processed)
    assert backend.store.get("standard/acme/poison-1/callback.json") == callback_body("poison-1")
