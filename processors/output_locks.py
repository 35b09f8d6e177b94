"""`OutputLocks`: one delivery at a time writes a given output set in this worker process."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class OutputLocks:
    """An `asyncio.Lock` per output-set key (`Delivery.output_prefix`), made on demand.

    Two deliveries for one job (Label Studio's two posts for one save, two CVAT updates) claimed at
    the same moment would otherwise write the same files from two threads, and the manifest of one
    could name bytes the other wrote. Waiters go in claim order (asyncio locks are FIFO), so the
    later delivery's output set is the one left. A lock is forgotten once nobody holds or awaits it,
    so the table stays as small as the work in hand. Event-loop-only: not for other threads.
    """

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    def __len__(self) -> int:
        return len(self._locks)

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        """Hold ``key``'s lock for the block; a cancellation while waiting leaves no trace."""
        lock, users = self._locks.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._locks[key]
