"""Bounded disk: finished deliveries lose their bodies, then their rows (the dedupe horizon);
`labelhook prune` does it on demand and sweeps temporaries that killed writers left in the store."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
from pathlib import Path

import pytest

from processors.config import ConfigError, load_settings
from processors.queue import Pruned, Retention
from processors.queue.sqlite import SQLiteQueue
from processors.store.local import LocalStore
from tests.support import acme_delivery as delivery
from tests.support import cli_env, enqueue_deliveries, run_cli

DAY = 86400.0


def _payloads(db: Path) -> dict[str, tuple[str, int]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return {
            k: (s, n)
            for k, s, n in conn.execute("SELECT dedupe_key, status, length(payload) FROM deliveries")
        }


def test_bodies_then_rows_of_finished_deliveries_are_pruned_and_the_rest_kept(tmp_path: Path) -> None:
    db = tmp_path / "queue.db"
    retention = Retention(bodies_seconds=7 * DAY, rows_seconds=30 * DAY)

    async def main() -> None:
        queue = SQLiteQueue(str(db), retention=retention)
        try:
            for job in ("done-1", "done-2", "dead", "queued"):
                await queue.enqueue(delivery(job, body=b'{"k": "' + b"x" * 500 + b'"}'))
            leases = {lease.delivery.job_id: lease for lease in await queue.claim(3, 60, 0)}
            await queue.ack(leases["done-1"])
            await queue.ack(leases["done-2"])
            await queue._dead(leases["dead"], "a reason")
            now = time.time()
            assert await queue.prune(now + DAY) == Pruned(0, 0)  # too young
            pruned = await queue.prune(now + 8 * DAY)
            assert (pruned.bodies, pruned.rows) == (2, 0)
            rows = _payloads(db)
            assert rows["acme:done-1"] == ("done", 0) and rows["acme:done-2"] == ("done", 0)
            assert rows["acme:dead"][1] > 500 and rows["acme:queued"][1] > 500  # kept, with bodies
            assert (await queue.depth())["done"] == 2
            pruned = await queue.prune(now + 31 * DAY)
            assert (pruned.bodies, pruned.rows) == (0, 2)
            assert set(_payloads(db)) == {"acme:dead", "acme:queued"}
            assert await queue.depth() == {"queued": 1, "in_flight": 0, "done": 0, "dead": 1}
        finally:
            await queue.close()

    asyncio.run(main())


def test_a_repeat_is_a_duplicate_inside_the_dedupe_horizon_and_new_after_it(tmp_path: Path) -> None:
    db = tmp_path / "queue.db"

    async def finish(job: str) -> None:
        queue = SQLiteQueue(str(db))
        try:
            await queue.enqueue(delivery(job))
            [lease] = await queue.claim(1, 60, 0)
            await queue.ack(lease)
        finally:
            await queue.close()

    async def repeat(job: str, *, prune_at: float | None = None) -> bool:
        queue = SQLiteQueue(str(db), retention=Retention(7 * DAY, 30 * DAY))
        try:
            if prune_at is not None:
                await queue.prune(prune_at)
            return (await queue.enqueue(delivery(job))).duplicate  # seeded from the table
        finally:
            await queue.close()

    asyncio.run(finish("a"))
    assert asyncio.run(repeat("a", prune_at=time.time() + 8 * DAY)) is True  # body gone, key kept
    asyncio.run(finish("b"))
    assert asyncio.run(repeat("b", prune_at=time.time() + 31 * DAY)) is False  # past the horizon


def test_pruning_works_in_chunks_across_many_rows(tmp_path: Path) -> None:
    db = tmp_path / "queue.db"
    enqueue_deliveries(db, [f"j{i}" for i in range(2500)], lambda job: b"{}")

    async def main() -> None:
        queue = SQLiteQueue(str(db), retention=Retention(1.0, 2.0))
        try:
            while leases := await queue.claim(500, 60, 0):
                await asyncio.gather(*(queue.ack(lease) for lease in leases))
            pruned = await queue.prune(time.time() + 10)
            assert (pruned.bodies, pruned.rows) == (2500, 2500)  # more than one PRUNE_CHUNK each
            assert (await queue.depth())["done"] == 0
        finally:
            await queue.close()

    asyncio.run(main())


def test_the_store_sweeps_only_old_temporaries(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put("acme/job-1/meta.json", b"{}")
    folder = tmp_path / "acme" / "job-1"
    old, fresh = folder / ".tmp-abandoned", folder / ".tmp-being-written"
    old.write_bytes(b"half")
    fresh.write_bytes(b"half")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    assert store.sweep_temporary(older_than=3600) == 1
    assert sorted(p.name for p in folder.iterdir()) == [".tmp-being-written", "meta.json"]


def test_labelhook_prune_applies_the_configured_retention_and_sweeps_the_store(tmp_path: Path) -> None:
    db = tmp_path / "queue.db"
    enqueue_deliveries(db, ["old", "new"], lambda job: b'{"body": 1}')

    async def finish() -> None:
        queue = SQLiteQueue(str(db))
        try:
            for lease in await queue.claim(2, 60, 0):
                await queue.ack(lease)
        finally:
            await queue.close()

    asyncio.run(finish())
    with sqlite3.connect(db) as conn:  # "old" finished two hours ago
        conn.execute(
            "UPDATE deliveries SET updated_at = ? WHERE dedupe_key = 'acme:old'", (time.time() - 7200,)
        )
    (tmp_path / "out" / "acme").mkdir(parents=True)
    temp = tmp_path / "out" / "acme" / ".tmp-left-by-kill-9"
    temp.write_bytes(b"partial")
    os.utime(temp, (time.time() - 7200, time.time() - 7200))
    env = cli_env(tmp_path, LABELHOOK_BODY_RETENTION_SECONDS="600", LABELHOOK_ROW_RETENTION_SECONDS="3600")
    result = run_cli("prune", "--json", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"bodies_dropped": 1, "rows_deleted": 1, "temp_files_swept": 1}
    assert set(_payloads(db)) == {"acme:new"} and not temp.exists()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LABELHOOK_BODY_RETENTION_SECONDS": "soon"}, "must be a number"),
        ({"LABELHOOK_ROW_RETENTION_SECONDS": "0"}, ">= 1.0"),
        (
            {"LABELHOOK_BODY_RETENTION_SECONDS": "100", "LABELHOOK_ROW_RETENTION_SECONDS": "10"},
            "ROW_RETENTION_SECONDS must be at least",
        ),
    ],
)
def test_retention_settings_are_validated(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(env)


def test_retention_defaults_are_a_week_of_bodies_and_a_month_of_rows() -> None:
    settings = load_settings({})
    assert (settings.body_retention_seconds, settings.row_retention_seconds) == (7 * DAY, 30 * DAY)
