"""The queue contract for `SQSQueue` on moto over real HTTP, plus what only SQS does (redrive, offload)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from processors.errors import Permanent
from processors.queue import Queue, QueueUnavailable, RetryPolicy, open_queue
from processors.queue.sqs import OFFLOAD_PREFIX, SQSQueue
from processors.store.s3 import S3Store
from tests.support import free_port
from tests.test_queue_contract import QueueContract, delivery

MAX_RECEIVE_COUNT = 3


def sqs_client(endpoint: str, **config: Any) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "sqs",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(max_pool_connections=32, **config),
    )


class TestSQSQueue(QueueContract):
    # SQS rounds a 0.5 s lease up to 1 s, and moto's long poll rescans only once a second.
    lease_seconds = 1.0

    @pytest.fixture(autouse=True)
    def _queues(self, moto_endpoint: str, s3_client: Any, bucket: str) -> Iterator[None]:
        """A fresh main queue (1 s visibility) and DLQ (redrive after 3 receives) per test; S3 for offload."""
        self.endpoint = moto_endpoint
        self.sqs = sqs_client(moto_endpoint)
        self.name = f"lh-{uuid.uuid4().hex[:12]}"
        dlq_url = self.sqs.create_queue(QueueName=f"{self.name}-dlq")["QueueUrl"]
        dlq_arn = self.sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVE_COUNT)}
        self.url = self.sqs.create_queue(
            QueueName=self.name, Attributes={"VisibilityTimeout": "1", "RedrivePolicy": json.dumps(redrive)}
        )["QueueUrl"]
        self.dlq_url = dlq_url
        self.store = S3Store(bucket, "out", client=s3_client)
        yield
        self.sqs.delete_queue(QueueUrl=self.url)
        self.sqs.delete_queue(QueueUrl=dlq_url)

    def make_queue(self, tmp_path: Path, policy: RetryPolicy | None = None) -> Queue:
        return SQSQueue(self.sqs, queue_url=self.url, policy=policy or self.policy, store=self.store)

    def run_with(self, policy: RetryPolicy, scenario: Any) -> Any:
        async def main() -> Any:
            queue = self.make_queue(Path("."), policy)
            try:
                return await scenario(queue)
            finally:
                await queue.close()

        return asyncio.run(main())

    # -- contract tests whose SQLite expectation SQS cannot meet: the documented SQS behaviour instead --

    def test_duplicate_dedupe_key_is_reported_and_not_stored_twice(self, tmp_path: Path) -> None:
        # SQS standard queues cannot detect duplicates at send time; both are queued, and the worker's
        # claim marker (Store.create_exclusive on the dedupe key) makes only one of them produce output.
        first, second = delivery("a"), delivery("a")

        async def scenario(q: Queue) -> None:
            a = await q.enqueue(first)
            b = await q.enqueue(second)
            assert (a.duplicate, b.duplicate) == (False, False)
            assert (a.delivery_id, b.delivery_id) == (first.id, second.id)
            leases = await q.claim(10, 5, 1)
            leases += await q.claim(10, 5, 1) if len(leases) < 2 else []
            assert sorted(lease.delivery.id for lease in leases) == sorted([first.id, second.id])

        self.run(tmp_path, scenario)

    def test_concurrent_enqueues_share_commits_and_keep_dedupe(self, tmp_path: Path) -> None:
        async def scenario(q: Queue) -> None:
            items = [delivery(f"k{i % 50}") for i in range(200)]
            results = await asyncio.gather(*(q.enqueue(d) for d in items))
            assert [r.delivery_id for r in results] == [d.id for d in items]
            assert not any(r.duplicate for r in results)  # no dedupe at send time on SQS
            assert (await q.depth())["queued"] == 200

        self.run(tmp_path, scenario)

    def test_release_makes_the_delivery_visible_without_costing_an_attempt(self, tmp_path: Path) -> None:
        # Visible again at once, as promised; but SQS cannot take back a receive, so it counts.
        async def scenario(q: Queue) -> None:
            await q.enqueue(delivery("a"))
            [lease] = await q.claim(1, 60, 1)
            await q.release(lease)
            [again] = await q.claim(1, 60, 0)
            assert again.delivery == lease.delivery and again.attempts == 2

        self.run(tmp_path, scenario)

    def test_a_delivery_that_keeps_crashing_its_worker_is_dead_lettered(self, tmp_path: Path) -> None:
        # With maxReceiveCount 3, SQS itself would move the 4th receive; here our own count (2 attempts)
        # catches the crash loop first, so the dead letter carries our reason.
        async def scenario(q: Queue) -> None:
            await q.enqueue(delivery("a"))
            lease = None
            for _ in range(3):
                [lease] = await q.claim(1, lease_seconds=1, wait_seconds=3)
            assert lease is not None and lease.attempts == 3
            assert await q.check_attempts(lease) is False
            [dead] = await q.dead_letters()
            assert dead.attempts == 3 and "worker crashed" in (dead.last_error or "")
            assert (await q.depth())["dead"] == 1

        self.run_with(RetryPolicy(max_attempts=2, base_seconds=0.05, max_seconds=0.2), scenario)

    # -- what only SQS does -------------------------------------------------------------------------

    def test_an_unacked_message_reappears_after_its_visibility_timeout(self, tmp_path: Path) -> None:
        async def scenario(q: Queue) -> None:
            d = delivery("a")
            await q.enqueue(d)
            [first] = await q.claim(1, lease_seconds=1, wait_seconds=1)
            assert await q.claim(1, 1, 0) == []
            [again] = await q.claim(1, lease_seconds=5, wait_seconds=3)  # the worker "died": no ack
            assert (again.delivery, again.attempts) == (d, 2)
            assert again.receipt != first.receipt
            await q.ack(again)
            assert await q.depth() == {"queued": 0, "in_flight": 0, "dead": 0}

        self.run(tmp_path, scenario)

    def test_a_poison_message_is_redriven_to_the_dlq_and_replay_brings_it_back(self, tmp_path: Path) -> None:
        async def scenario(q: Queue) -> None:
            d = delivery("poison")
            await q.enqueue(d)
            for attempt in range(1, MAX_RECEIVE_COUNT + 1):
                [lease] = await q.claim(1, lease_seconds=1, wait_seconds=3)
                assert lease.attempts == attempt
            # The next receive finds the count at maxReceiveCount: SQS moves the message to the DLQ.
            assert await q.claim(1, 1, wait_seconds=2) == []
            for _ in range(2):  # listing does not consume
                [dead] = await q.dead_letters()
                assert (dead.id, dead.job_id, dead.attempts) == (d.id, "poison", MAX_RECEIVE_COUNT)
                assert "exceeded maxReceiveCount" in (dead.last_error or "")
            assert (await q.depth())["dead"] == 1
            assert await q.replay(["no-such-id"]) == 0
            assert await q.replay([d.id]) == 1
            assert await q.dead_letters() == []
            [back] = await q.claim(1, 5, 2)
            assert (back.delivery, back.attempts) == (d, 1)

        self.run_with(RetryPolicy(max_attempts=8), scenario)

    def test_an_oversized_delivery_round_trips_through_the_store(self, tmp_path: Path) -> None:
        big = dataclasses.replace(delivery("big"), body=b'{"blob": "' + b"x" * (1024 * 1024) + b'"}')

        async def scenario(q: Queue) -> None:
            await q.enqueue(big)
            assert self.store.list(OFFLOAD_PREFIX.rstrip("/")) == [f"{OFFLOAD_PREFIX}{big.id}.json"]
            raw = self.sqs.receive_message(QueueUrl=self.url, VisibilityTimeout=0)["Messages"][0]["Body"]
            assert len(raw) < 1024 and json.loads(raw)["offload"] == f"{OFFLOAD_PREFIX}{big.id}.json"
            [lease] = await q.claim(1, 5, 2)
            assert lease.delivery == big
            # The pointer survives a dead letter and a replay.
            await q.fail(lease, Permanent("mask is not a PNG"))
            [dead] = await q.dead_letters()
            assert (dead.id, dead.last_error) == (big.id, "mask is not a PNG")
            assert await q.replay(None) == 1
            [again] = await q.claim(1, 5, 2)
            assert again.delivery == big

        self.run(tmp_path, scenario)

    def test_an_oversized_delivery_without_a_store_is_refused(self) -> None:
        big = dataclasses.replace(delivery("big"), body=b"x" * (300 * 1024))
        q = SQSQueue(self.sqs, queue_url=self.url)
        with pytest.raises(QueueUnavailable, match="no store"):
            asyncio.run(q.enqueue(big))

    def test_an_unreadable_message_is_dead_lettered_not_looped_on(self, tmp_path: Path) -> None:
        self.sqs.send_message(QueueUrl=self.url, MessageBody="not json")

        async def scenario(q: Queue) -> None:
            assert await q.claim(10, 5, 1) == []
            [dead] = await q.dead_letters()
            assert "unreadable message body" in (dead.last_error or "")
            assert (await q.depth())["queued"] == 0

        self.run(tmp_path, scenario)

    def test_open_queue_resolves_names_and_urls(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        local_url = "sqs+" + self.url  # moto's queue URL is http://127.0.0.1:PORT/ACCOUNT/NAME

        async def scenario() -> None:
            by_name = open_queue(f"sqs://{self.name}", endpoint_url=self.endpoint)
            by_url = open_queue(local_url)
            await by_name.enqueue(delivery("a"))
            [lease] = await by_url.claim(1, 5, 1)
            assert lease.delivery.job_id == "a"
            await by_url.ping()

        asyncio.run(scenario())
        with pytest.raises(ValueError):
            open_queue("sqs://")

    def test_an_unreachable_endpoint_is_unavailable(self) -> None:
        dead_end = sqs_client(
            f"http://127.0.0.1:{free_port()}", retries={"max_attempts": 1}, connect_timeout=1
        )
        q = SQSQueue(dead_end, queue_url=self.url.replace(self.endpoint, "http://127.0.0.1:9"))
        with pytest.raises(QueueUnavailable, match="EndpointConnectionError"):
            asyncio.run(q.ping())
        with pytest.raises(QueueUnavailable):
            asyncio.run(q.enqueue(delivery("a")))
