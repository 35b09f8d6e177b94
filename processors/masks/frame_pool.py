"""Frames of one job on several threads: results in input order, a bounded number in flight.

Threads rather than processes: the heavy steps (Pillow's PNG decoder, numpy passes over a band,
zlib) release the GIL, and a thread shares the job's labelmap and hands back its encoded PNGs
without pickling whole frames between processes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


def ordered_map(function: Callable[[In], Out], items: Iterable[In], *, threads: int) -> Iterator[Out]:
    """``map(function, items)`` on up to ``threads`` threads, yielded in the order of ``items``.

    At most ``threads`` items are taken from ``items`` ahead of the consumer, so memory is bounded by
    that many frames however long the video. The first exception (in input order) is raised from
    the generator; items after it are cancelled or waited for, never left running.
    """
    if threads <= 1:
        yield from map(function, items)
        return
    pending: deque[Future[Out]] = deque()
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="mask-frame") as pool:
        try:
            for item in items:
                pending.append(pool.submit(function, item))
                if len(pending) >= threads:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
