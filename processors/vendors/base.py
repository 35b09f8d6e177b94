"""`Processor`: the worker-side half of a vendor adapter — turn one delivery into an output set."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

    from processors.config import Settings, SourceConfig
    from processors.delivery import Delivery
    from processors.store import JobWriter


class Processor(ABC):
    """Fetches what a delivery points at and writes the job's files through ``out``.

    Runs on a worker thread. Must be idempotent (a redelivery rewrites identical bytes) and must raise
    only `processors.errors.Retryable` / `Permanent` for expected failures; the worker writes the
    manifest after `process` returns, so a crash half-way leaves no manifest behind.
    """

    def __init__(self, source: SourceConfig, settings: Settings, *, http: httpx.Client | None = None) -> None:
        self.source = source
        self.settings = settings
        self.http = http

    @abstractmethod
    def process(self, delivery: Delivery, out: JobWriter) -> dict[str, Any]:
        """Write the job's files; return extra manifest fields (JSON-serialisable, deterministic)."""
