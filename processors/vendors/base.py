"""`Processor`: the worker-side half of a vendor adapter — turn one delivery into an output set.

A vendor may also create jobs (`labelhook submit`) and report a job's state on request (`labelhook
poll`, the poller in `work`/`run`); those are optional capabilities with the same client and config.
"""

from __future__ import annotations

import threading
import urllib.parse
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from processors.errors import Permanent

if TYPE_CHECKING:
    from processors.config import Settings, SourceConfig
    from processors.delivery import Delivery
    from processors.fetch import Fetcher
    from processors.jobs import JobRecord
    from processors.store import JobWriter


@dataclass(frozen=True)
class Submitted:
    """A job the vendor accepted: its id, the project it belongs to, and the vendor's first state."""

    job_id: str
    project: str
    vendor_state: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PollResult:
    """A job's state as the vendor reports it.

    ``state`` is labelhook's view: ``"open"``, ``"completed"`` (enqueue it for processing, once) or
    ``"failed"`` (record ``reason``). ``body`` is what the processor will read as the delivery body.
    """

    state: str
    vendor_state: str
    reason: str | None = None
    body: bytes = b"{}"


class Processor(ABC):
    """Fetches what a delivery points at and writes the job's files through ``out``.

    Runs on a worker thread. Must be idempotent (a redelivery rewrites identical bytes) and must raise
    only `processors.errors.Retryable` / `Permanent` for expected failures; the worker writes the
    manifest after `process` returns, so a crash half-way leaves no manifest behind.
    """

    #: The callback URL needs the source's token in its query (the vendor cannot sign its callbacks).
    callback_token_in_url = False
    #: The vendor documents callback URLs ending in a slash (super.AI: "…/callbacks/").
    callback_trailing_slash = False

    def __init__(self, source: SourceConfig, settings: Settings, *, fetcher: Fetcher | None = None) -> None:
        self.source = source
        self.settings = settings
        self._fetcher = fetcher
        # Only a fetcher built here is closed here: an injected one belongs to whoever passed it.
        self._owns_fetcher = fetcher is None
        # Deliveries of one source run on several threads: without it two could each build a client
        # on first use, and the one overwritten would never be closed.
        self._fetcher_lock = threading.Lock()

    @property
    def fetcher(self) -> Fetcher:
        """The SSRF-guarded HTTP client every vendor fetch goes through (built on first use)."""
        with self._fetcher_lock:
            if self._fetcher is None:
                from processors.fetch import Fetcher

                self._fetcher = Fetcher.from_settings(self.settings, source=self.source)
            return self._fetcher

    def close(self) -> None:
        """Close the HTTP clients this processor built (its pooled sockets); idempotent.

        Called when the worker or CLI command that made the processor ends. Subclasses holding more
        clients close them too and call ``super().close()``. A later fetch builds a fresh client.
        """
        with self._fetcher_lock:
            fetcher = self._fetcher if self._owns_fetcher else None
            if fetcher is not None:
                self._fetcher = None
        if fetcher is not None:
            fetcher.close()

    def __enter__(self) -> Processor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def callback_url(self) -> str | None:
        """`LABELHOOK_PUBLIC_URL/hooks/<source>` (with a trailing slash where the vendor's docs demand
        one), plus `?token=` where the vendor cannot sign callbacks."""
        if not self.settings.public_url:
            return None
        url = f"{self.settings.public_url}/hooks/{self.source.name}"
        if self.callback_trailing_slash:
            url += "/"
        if self.callback_token_in_url and self.source.secrets:
            url += "?token=" + urllib.parse.quote(self.source.secrets[0].reveal(), safe="")
        return url

    @abstractmethod
    def process(self, delivery: Delivery, out: JobWriter) -> dict[str, Any]:
        """Write the job's files; return extra manifest fields (JSON-serialisable, deterministic)."""

    def submit(self, payload: Any, callback_url: str | None) -> list[Submitted]:
        """Create job(s) at the vendor from a user's INPUT.json; blocking.

        ``callback_url`` is `callback_url()` (None without LABELHOOK_PUBLIC_URL: then the job can only
        be polled). Validate ``payload`` before sending and raise `Permanent` naming the bad field.
        """
        raise Permanent(f"vendor {self.source.vendor!r} does not support submit")

    def prepare_submit(self, payload: Any, callback_url: str | None) -> tuple[int, Iterator[Submitted]]:
        """`submit` in two steps, so the CLI can record and show each job as the vendor accepts it.

        Validates ``payload`` now and returns how many jobs it holds and an iterator that creates them
        one by one. The default runs `submit` at once; vendors that take lists override it.
        """
        submitted = self.submit(payload, callback_url)
        return len(submitted), iter(submitted)

    def batch_jobs(self, delivery: Delivery) -> list[str]:
        """The ids of the jobs of the batch a ``kind="batch"`` delivery names; blocking.

        Batch callbacks name no job; the worker records each job and polls it once, so the finished
        ones are enqueued under their own completion key (exactly once with their own callbacks).
        """
        raise Permanent(f"vendor {self.source.vendor!r} has no batch callbacks")

    def poll(self, job: JobRecord) -> PollResult:
        """Ask the vendor for one job's state; blocking; Retryable on 429/5xx/network."""
        raise Permanent(f"vendor {self.source.vendor!r} does not support polling")

    @property
    def can_poll(self) -> bool:
        return type(self).poll is not Processor.poll
