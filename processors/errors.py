"""The processing error hierarchy: what the worker retries and what it dead-letters.

    ProcessingError
    ├── Retryable      network failure, vendor 429/5xx, store hiccup: try again later
    └── Permanent      vendor 4xx, undecodable input, over a size or pixel limit: dead-letter now

Third-party exceptions (httpx, botocore, PIL, sqlite3) are translated into these where they are
raised, so the worker decides by type alone. ``reason`` is one line a human can act on; it ends up in
the dead-letter store and in `labelhook dead list`, so it must never contain a secret.
"""

from __future__ import annotations


class ProcessingError(Exception):
    """Base class: processing a delivery failed for ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Retryable(ProcessingError):
    """A transient failure; ``retry_after`` (seconds) is a lower bound on the next attempt."""

    def __init__(self, reason: str, *, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class Permanent(ProcessingError):
    """A failure that another attempt cannot fix; the delivery goes to dead letters at once."""
