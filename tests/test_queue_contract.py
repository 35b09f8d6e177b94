"""The queue contract, run against every backend (saq's pattern: one suite, a subclass per backend)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from processors.delivery import Delivery, new_delivery_id
from processors.errors import Permanent, Retryable
from processors.queue import Queue, QueueUnavailable, RetryPolicy
from processors.queue.sqlite import SQLiteQueue


def delivery(key: str, *, source: str = "acme") -> Delivery:
    return Delivery(
        id=new_delivery_id(),
        source=source,
        vendor="standard",
        dedupe_key=f"{source}:{key}",
        job_id=key,
        project=source,
        body=b'{"k": "%s"}' % key.encode(),
        received_at=time.time(),
    )


class QueueContract:
    """Behaviour every queue backend must show. Subclasses provide `make_queue`."""

    policy = RetryPolicy(max_attempts=3, base_seconds=0.05, max_seconds=0.2)
    #: The lease the expiry scenario waits out (a backend may need whole seconds).
    lease_seconds = 0.5

    def make_queue(self, tmp_path: Path) -> Queue:
        raise NotImplementedError

    def run(self, tmp_path: Path, scenario: Any) -> Any:
        async def main() -> Any:
            queue = self.make_queue(tmp_path)
            try:
                return await scenario(queue)
            finally:
                await queue.close()

        return asyncio.run(main())

    def test_enqueue_then_claim_round_trips_the_delivery(self, tmp_path: Path) -> None:
        original = delivery("a")

        async def scenario(q: Queue) -> None:
            assert (await q.enqueue(original)).duplicate is False
            [lease] = await q.claim(10, lease_seconds=5, wait_seconds=1)
            assert lease.delivery == original
            assert lease.attempts == 1

        self.run(tmp_path, scenario)

    def test_duplicate_dedupe_key_is_reported_and_not_stored_twice(self, tmp_path: Path) -> None:
        first, second = delivery("a"), delivery("a")

        async def scenario(q: Queue) -> None:
            a = await q.enqueue(first)
            b = await q.enqueue(second)
            assert (a.duplicate, b.duplicate) == (False, True)
            assert b.delivery_id == first.id
            leases = await q.claim(10, 5, 0.2)
            assert [lease.delivery.id for lease in leases] == [first.id]

        self.run(tmp_path, scenario)

    def test_concurrent_enqueues_share_commits_and_keep_dedupe(self, tmp_path: Path) -> None:
        async def scenario(q: Queue) -> None:
            items = [delivery(f"k{i % 50}") for i in range(200)]
            results = await asyncio.gather(*(q.enqueue(d) for d in items))
            assert sum(not r.duplicate for r in results) == 50
            depth = await q.depth()
            assert depth["queued"] == 50

        self.run(tmp_path, scenario)

    def test_claimed_delivery_is_invisible_until_its_lease_expires(self, tmp_path: Path) -> None:
        lease = self.lease_seconds

        async def scenario(q: Queue) -> None:
            await q.enqueue(delivery("a"))
            [first] = await q.claim(1, lease_seconds=lease, wait_seconds=0)
            assert await q.claim(1, lease, 0) == []
            await asyncio.sleep(lease + 0.1)
            [again] = await q.claim(1, 5, lease)
            assert again.delivery.id == first.delivery.id
            assert again.attempts == 2
            # The expired lease can no longer acknowledge, or fail: the new holder owns the delivery.
            await q.ack(first)
            await q.fail(first, Permanent("stale"))
            assert (await q.depth())["in_flight"] == 1
            await q.ack(again)
            depth = await q.depth()
            assert (depth["queued"], depth["in_flight"], depth["dead"]) == (0, 0, 0)

        self.run(tmp_path, scenario)

    def test_retryable_failures_back_off_then_dead_letter_with_reason(self, tmp_path: Path) -> None:
        async def scenario(q: Queue) -> None:
            await q.enqueue(delivery("a"))
            outcomes = []
            for _ in range(3):
                [lease] = await q.claim(1, 5, wait_seconds=2)
                outcomes.append(await q.fail(lease, Retryable("vendor answered 503")))
            assert outcomes == ["retry", "retry", "dead"]
            [dead] = await q.dead_letters()
            assert dead.attempts == 3 and "vendor answered 503" in (dead.last_error or "")
            assert await q.claim(1, 5, 0.3) == []

        self.run(tmp_path, scenario)

    def test_backoff_delays_the_next_claim(self, tmp_path: Path) -> None:
        async def scenario(q: Queue) -> None:
            await q.enqueue(delivery("a"))
            [lease] = await q.claim(1, 5, 1)
            await q.fail(lease, Retryable("429", retry_after=0.2))
            started = time.monotonic()
            assert await q.claim(1, 5, 0) == []
            [again] = await q.claim(1, 5, wait_seconds=2)
            assert time.monotonic() - started >= 0.15
            assert again.attempts == 2

        self.run(tmp_path, scenario)

    def test_permanent_failure_dead_letters_at_once_and_replay_requeues(self, tmp_path: Path) -> None:
        async def scenario(q: Queue) -> None:
            d = delivery("a")
            await q.enqueue(d)
            [lease] = await q.claim(1, 5, 1)
            assert await q.fail(lease, Permanent("mask is not a PNG")) == "dead"
            [dead] = await q.dead_letters()
            assert (dead.id, dead.last_error) == (d.id, "mask is not a PNG")
            assert await q.replay([d.id]) == 1
            assert await q.dead_letters() == []
            [again] = await q.claim(1, 5, 1)
            assert again.delivery == d and again.attempts == 1
            await q.ack(again)
            assert await q.replay(None) == 0

        self.run(tmp_path, scenario)

    def test_release_makes_the_delivery_visible_without_costing_an_attempt(self, tmp_path: Path) -> None:
        async def scenario(q: Queue) -> None:
            await q.enqueue(delivery("a"))
            [lease] = await q.claim(1, 60, 1)
            await q.release(lease)
            [again] = await q.claim(1, 60, 1)
            assert again.attempts == 1

        self.run(tmp_path, scenario)

    def test_a_delivery_that_keeps_crashing_its_worker_is_dead_lettered(self, tmp_path: Path) -> None:
        async def scenario(q: Queue) -> None:
            await q.enqueue(delivery("a"))
            lease = None
            for _ in range(4):  # claims whose worker "died": never acked, lease just ran out
                [lease] = await q.claim(1, lease_seconds=0.05, wait_seconds=1)
                await asyncio.sleep(0.06)
            assert lease is not None and lease.attempts == 4
            assert await q.check_attempts(lease) is False
            [dead] = await q.dead_letters()
            assert "worker crashed" in (dead.last_error or "")

        self.run(tmp_path, scenario)

    def test_batch_claim_takes_several(self, tmp_path: Path) -> None:
        async def scenario(q: Queue) -> None:
            for i in range(5):
                await q.enqueue(delivery(f"k{i}"))
            leases = await q.claim(3, 5, 1)
            assert len(leases) == 3 and len({x.delivery.id for x in leases}) == 3
            assert len(await q.claim(10, 5, 1)) == 2

        self.run(tmp_path, scenario)


class TestSQLiteQueue(QueueContract):
    def make_queue(self, tmp_path: Path) -> Queue:
        return SQLiteQueue(str(tmp_path / "queue.db"), self.policy, poll_seconds=0.02)

    def test_enqueued_delivery_survives_reopening(self, tmp_path: Path) -> None:
        d = delivery("a")

        async def first() -> None:
            q = self.make_queue(tmp_path)
            await q.enqueue(d)
            await q.close()

        async def second() -> list[Any]:
            q = self.make_queue(tmp_path)
            try:
                return await q.claim(1, 5, 1)
            finally:
                await q.close()

        asyncio.run(first())
        [lease] = asyncio.run(second())
        assert lease.delivery == d

    def test_stored_returns_the_delivery_with_its_meta_until_the_body_retention(self, tmp_path: Path) -> None:
        from dataclasses import replace

        from processors.queue.base import Retention

        d = replace(delivery("kept"), meta={"headers": {"user-agent": "Vendor/1", "x-sig": "(redacted)"}})

        async def scenario(q: Queue) -> None:
            await q.enqueue(d)
            assert await q.stored(d.id) == d  # indexed on demand: the journal record is found too
            assert await q.stored("0" * 32) is None
            [lease] = await q.claim(1, 5, 1)
            await q.ack(lease)
            assert await q.stored(d.id) == d  # done, within the retention: still there

        self.run(tmp_path, scenario)

        async def after_retention() -> Delivery | None:
            q = SQLiteQueue(str(tmp_path / "queue.db"), self.policy, retention=Retention(1, 10**6))
            try:
                assert (await q.prune(now=time.time() + 60)).bodies == 1
                return await q.stored(d.id)
            finally:
                await q.close()

        assert asyncio.run(after_retention()) is None

    def test_unwritable_location_is_unavailable_not_a_crash(self, tmp_path: Path) -> None:
        blocker = tmp_path / "file"
        blocker.write_text("not a directory")
        with pytest.raises(QueueUnavailable):
            SQLiteQueue(str(blocker / "queue.db"))
