"""`Readiness`: the queue's and store's state, refreshed in the background for `/readyz` and `/metrics`.

Why cached: a probe that reads the backends on every request makes each scrape or health check pay
for SQLite reads (and, before, a write lock) or an S3 round trip, and lets a slow backend hold up
the probe. Here one task reads them once a `interval`, off the event loop and with a deadline; the
endpoints read the figures it left. Figures older than a few intervals count as a failure: a
refresher that hangs must not keep reporting the last good state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from processors.queue import Gauges, Queue
from processors.store import Store, StoreError

log = logging.getLogger("labelhook.receiver")


class Readiness:
    """Cached readiness of ``queue`` and ``store``; `run` keeps it fresh, `report` reads it."""

    def __init__(
        self,
        queue: Queue,
        store: Store,
        *,
        interval: float = 1.0,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.queue = queue
        self.store = store
        self.interval = interval
        self.timeout = timeout
        self.clock = clock
        self.gauges: Gauges | None = None
        self.store_problem: str | None = "not checked yet"
        self.refreshed_at: float | None = None

    async def refresh(self) -> None:
        """Read the backends once (each within `timeout`)."""
        try:
            self.gauges = await asyncio.wait_for(self.queue.gauges(), self.timeout)
        except TimeoutError:
            self.gauges = Gauges({}, problem=f"queue did not answer within {self.timeout:g} s")
        except Exception as exc:  # a backend bug must show as not ready, not kill the refresher
            log.exception("queue gauges failed")
            self.gauges = Gauges({}, problem=f"{type(exc).__name__}: {exc}")
        try:
            await asyncio.wait_for(asyncio.to_thread(self.store.ping), self.timeout)
            self.store_problem = None
        except TimeoutError:
            self.store_problem = f"store did not answer within {self.timeout:g} s"
        except StoreError as exc:
            self.store_problem = exc.reason
        self.refreshed_at = self.clock()

    async def run(self) -> None:
        """Refresh every `interval` until cancelled."""
        while True:
            with contextlib.suppress(Exception):
                await self.refresh()
            await asyncio.sleep(self.interval)

    def report(self) -> tuple[bool, dict[str, Any]]:
        """Whether the receiver is ready, and the checks behind it (no backend is read here)."""
        gauges = self.gauges
        if gauges is None or self.refreshed_at is None:
            return False, {"queue": "not checked yet", "store": "not checked yet"}
        age = self.clock() - self.refreshed_at
        checks: dict[str, Any] = {
            "queue": gauges.problem or "ok",
            "store": self.store_problem or "ok",
            "checked_seconds_ago": round(age, 3),
        }
        if gauges.depth:
            checks["depth"] = gauges.depth
        if gauges.disk_bytes is not None:
            checks["disk_bytes"] = gauges.disk_bytes
        stale = age > 3 * self.interval + 2 * self.timeout
        if stale:
            checks["queue"] = f"figures are {age:.0f} s old: the refresher is stuck"
        return gauges.problem is None and self.store_problem is None and not stale, checks
