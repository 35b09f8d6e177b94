"""Memory budget for mask frames: what one frame costs, and a process-wide limit frames wait for.

A worker decodes frames of several jobs at once (``LABELHOOK_WORKER_CONCURRENCY`` jobs, each with up
to ``LABELHOOK_MASK_THREADS`` frames in flight). Each frame reserves its worst-case cost from one
`MemoryBudget` per process before it is decoded and gives it back when its outputs are encoded, so
the sum of frames in memory never exceeds ``LABELHOOK_MASK_MEMORY_MB`` whatever the concurrency.

The cost model (bytes per pixel, by how Pillow holds the decoded PNG) is an upper bound of peaks
measured with ``tests/hostile/test_mask_memory.py``; the default pixel limit is the largest frame
whose cost fits the whole budget, so any mask the defaults admit can be decoded within it.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar

# Bytes per pixel of the image Pillow decodes into, by PNG colour type (IHDR byte 25): grey is "L"
# (1) or 16-bit "I;16" (2; counted as 4, older Pillows widen it to "I"); RGB, grey+alpha and RGBA are
# held as 4 bytes; palette as 1.
_IMAGE_BYTES = {0: 4, 2: 4, 3: 1, 4: 4, 6: 4}
# Beyond the decoded image, per pixel: the uint16 instance map (2), the run tables of a frame at the
# run limit (`decode.PIXELS_PER_RUN`, ≤ 3) and the encoded PNGs / allocator slack (1).
_MAP_BYTES = 6
# Per frame whatever its size: one band of rows in each stage, the packer's slices, zlib's state.
FIXED_BYTES = 16 * 1024 * 1024
WORST_BYTES_PER_PIXEL = max(_IMAGE_BYTES.values()) + _MAP_BYTES


def frame_cost(data: bytes) -> int:
    """Upper bound of the memory `decode.decode_png` and the encoders need for the PNG ``data``
    (its bytes included). Data that is not a PNG header costs only its bytes: decoding rejects it."""
    if len(data) < 26 or data[12:16] != b"IHDR":
        return len(data)
    width, height = (int(v) for v in struct.unpack(">II", data[16:24]))
    per_pixel = _IMAGE_BYTES.get(data[25], 4) + _MAP_BYTES
    return width * height * per_pixel + FIXED_BYTES + len(data)


def max_pixels_for(budget_bytes: int) -> int:
    """The largest frame (pixels, any PNG kind) whose cost fits ``budget_bytes``."""
    return max(1, (budget_bytes - FIXED_BYTES) // WORST_BYTES_PER_PIXEL)


class MemoryBudget:
    """Bytes that frames in flight may hold at once; `reserve` waits until its share is free.

    A reservation larger than the whole budget (an operator raised ``LABELHOOK_MAX_PIXELS`` past
    what the budget admits) waits until nothing else is reserved and then runs alone, so it is slow
    rather than stuck.
    """

    _shared: ClassVar[dict[int, MemoryBudget]] = {}
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, limit_bytes: int) -> None:
        self.limit = limit_bytes
        self.reserved = 0
        self._changed = threading.Condition()

    @classmethod
    def shared(cls, limit_bytes: int) -> MemoryBudget:
        """The process's budget of this size: every job of a worker process draws on the same one."""
        with cls._shared_lock:
            budget = cls._shared.get(limit_bytes)
            if budget is None:
                budget = cls._shared[limit_bytes] = cls(limit_bytes)
            return budget

    @contextmanager
    def reserve(self, nbytes: int) -> Iterator[None]:
        """Hold ``nbytes`` of the budget for the duration of the block."""
        share = min(nbytes, self.limit)
        with self._changed:
            while self.reserved and self.reserved + share > self.limit:
                self._changed.wait()
            self.reserved += share
        try:
            yield
        finally:
            with self._changed:
                self.reserved -= share
                self._changed.notify_all()
