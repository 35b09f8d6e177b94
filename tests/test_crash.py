"""Crash safety with real processes: SIGKILL mid-lease, dead letters and replay, SIGTERM drain."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from processors.config import Settings
from processors.delivery import Delivery
from processors.errors import Retryable
from processors.queue.sqlite import SQLiteQueue
from processors.store import JobWriter, open_store
from processors.vendors.base import Processor
from processors.worker import Worker
from tests.support import (
    callback_body,
    cli_env,
    enqueue_deliveries,
    free_port,
    is_up,
    labelhook,
    queue_rows,
    run_cli,
    sign,
    stop,
    wait_for,
)


def enqueue_many(db: Path, count: int) -> list[Delivery]:
    return enqueue_deliveries(db, [f"m{i}" for i in range(count)], callback_body)


def manifests(out: Path) -> dict[str, dict[str, Any]]:
    return {p.parent.name: json.loads(p.read_text()) for p in out.glob("standard/acme/*/manifest.json")}


def test_worker_killed_while_holding_leases_loses_nothing(tmp_path: Path) -> None:
    db, out = tmp_path / "queue.db", tmp_path / "out"
    items = enqueue_many(db, 400)
    env = cli_env(tmp_path, LABELHOOK_LEASE_SECONDS="2", LABELHOOK_WORKER_CONCURRENCY="2")
    worker = labelhook("work", env=env, cwd=tmp_path)

    def in_flight() -> bool:
        rows = queue_rows(db).values()
        return any(s == "leased" for s, _ in rows) and sum(s == "done" for s, _ in rows) >= 10

    try:
        wait_for(in_flight, timeout=60, interval=0.005, what="worker mid-way with leases held")
    finally:
        stop(worker, signal.SIGKILL)
    at_kill = queue_rows(db)
    held = [k for k, (status, _) in at_kill.items() if status == "leased"]
    assert held, "the worker held no lease when killed"

    restarted = labelhook("work", env=env, cwd=tmp_path)
    try:
        wait_for(lambda: all(s == "done" for s, _ in queue_rows(db).values()), timeout=60, what="all done")
    finally:
        stop(restarted)
    final = queue_rows(db)
    for key in held:
        assert final[key] == ("done", 2), final[key]  # reclaimed after the lease expired, done once
    written = manifests(out)
    assert sorted(written) == sorted(d.job_id for d in items)
    for d in items:
        assert (out / "standard/acme" / d.job_id / "callback.json").read_bytes() == d.body
        assert written[d.job_id]["delivery_id"] == d.id


class AlwaysFailing(Processor):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings.sources["acme"], settings)
        self.calls = 0

    def process(self, delivery: Delivery, out: JobWriter) -> dict[str, Any]:
        self.calls += 1
        raise Retryable("vendor answered 503 Service Unavailable")


def _run_worker_until(worker: Worker, condition: Any, timeout: float = 20) -> None:
    async def main() -> None:
        task = asyncio.create_task(worker.run())
        deadline = time.monotonic() + timeout
        while not await condition():
            assert time.monotonic() < deadline, "condition not reached"
            await asyncio.sleep(0.02)
        worker.stop()
        await task

    asyncio.run(main())


def test_failing_processor_dead_letters_with_reason_then_replay_processes_it(
    make_settings: Any, tmp_path: Path
) -> None:
    settings = make_settings(LABELHOOK_MAX_ATTEMPTS="3")
    db = tmp_path / "queue.db"
    [item] = enqueue_many(db, 1)
    failing = AlwaysFailing(settings)
    queue = SQLiteQueue(str(db), poll_seconds=0.02)
    from processors.queue import RetryPolicy

    queue.policy = RetryPolicy(3, 0.02, 0.05)

    async def dead() -> bool:
        return bool(await queue.dead_letters())

    _run_worker_until(
        Worker(settings, queue, open_store(settings.store_url), processors={"acme": failing}), dead
    )
    assert failing.calls == 3
    env = cli_env(tmp_path)
    listed = run_cli("dead", "list", "--json", env=env, cwd=tmp_path)
    [row] = json.loads(listed.stdout)
    assert row["id"] == item.id and row["attempts"] == 3
    assert "gave up after 3 attempts: vendor answered 503" in row["reason"]
    replay = run_cli("dead", "replay", item.id, env=env, cwd=tmp_path)
    assert replay.returncode == 0 and "replayed 1" in replay.stdout

    async def done() -> bool:
        return (await queue.depth())["done"] == 1

    queue2 = SQLiteQueue(str(db), poll_seconds=0.02)
    _run_worker_until(Worker(settings, queue2, open_store(settings.store_url)), done)
    asyncio.run(queue2.close())
    assert (tmp_path / "out/standard/acme" / item.job_id / "manifest.json").exists()


def test_sigterm_on_run_drains_in_time_and_nothing_acked_is_lost(tmp_path: Path) -> None:
    port = free_port()
    # A backlog already durable in the queue, so the worker is busy when SIGTERM arrives.
    backlog = {d.job_id for d in enqueue_many(tmp_path / "queue.db", 1500)}
    env = cli_env(tmp_path, PORT=str(port), LABELHOOK_WORKER_CONCURRENCY="1")
    run = labelhook("run", env=env, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"

    def send(i: int) -> tuple[str, int]:
        body = callback_body(f"t{i}")
        return f"t-{i}", httpx.post(
            url + "/hooks/acme", content=body, headers=sign(body, f"t-{i}"), timeout=60
        ).status_code

    try:
        wait_for(lambda: is_up(url), timeout=60, what="labelhook run up")
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(send, range(300)))
        acked = {msg for msg, status in results if status == 202}
        assert len(acked) == 300
    except BaseException:
        stop(run, signal.SIGKILL)
        raise
    started = time.monotonic()
    stop(run, grace=30)
    elapsed = time.monotonic() - started
    assert elapsed < 25, f"run took {elapsed:.1f}s to stop after SIGTERM"
    assert run.returncode == 0
    left = [k for k, (status, _) in queue_rows(tmp_path / "queue.db").items() if status != "done"]
    print(f"queued at SIGTERM and left for the restart: {len(left)} of 1800")
    assert left, "the worker had finished everything before SIGTERM: nothing was drained"
    assert all(
        queue_rows(tmp_path / "queue.db")[k][0] == "queued" for k in left
    )  # released, not stuck leased

    worker = labelhook("work", env=env, cwd=tmp_path)
    try:
        wait_for(lambda: len(manifests(tmp_path / "out")) == 1800, timeout=90, what="the rest processed")
    finally:
        stop(worker)
    assert set(manifests(tmp_path / "out")) == acked | backlog
    assert all(s == "done" for s, _ in queue_rows(tmp_path / "queue.db").values())


def test_deliveries_acked_just_before_sigkill_of_the_web_process_are_in_the_queue(tmp_path: Path) -> None:
    """SIGKILL right after the 200th ack with ~32 requests in flight. Paced by acks, not by the clock:
    32 senders post one request after another (generous timeouts) until the kill, so a busy machine
    only makes the test slower, never makes it miss the kill."""
    port = free_port()
    env = cli_env(tmp_path, PORT=str(port))
    web = labelhook("serve", env=env, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    acked: list[str] = []
    killed = False

    async def hammer() -> None:
        nonlocal killed
        limits = httpx.Limits(max_connections=32)
        timeout = httpx.Timeout(60, pool=None)  # waiting for a pooled connection is never a failure
        async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as client:
            numbers = iter(range(100_000))

            async def sender() -> None:
                nonlocal killed
                while not killed:
                    i = next(numbers)
                    body = callback_body(f"k{i}")
                    try:
                        response = await client.post(
                            "/hooks/acme", content=body, headers=sign(body, f"k-{i}")
                        )
                    except httpx.HTTPError:
                        if killed:
                            return  # in flight when the process died: not acked, the vendor would retry
                        raise
                    if response.status_code == 202:
                        acked.append(f"acme:k-{i}")
                        if len(acked) >= 200 and not killed:
                            killed = True
                            web.send_signal(signal.SIGKILL)  # right after an ack, with ~31 in flight

            await asyncio.gather(*(sender() for _ in range(32)))

    try:
        wait_for(lambda: is_up(url), timeout=60, what="labelhook serve up")
        asyncio.run(hammer())
    finally:
        stop(web, signal.SIGKILL)
    assert killed and len(acked) >= 200
    stored = queue_rows(tmp_path / "queue.db")
    missing = [key for key in acked if key not in stored]
    assert not missing, f"{len(missing)} acked deliveries lost"
    assert len(stored) >= len(acked)  # a few may be durable without their 202 having reached us
