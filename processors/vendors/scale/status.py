"""Scale task statuses → labelhook's job state (light: the receiver's adapter uses it too)."""

from __future__ import annotations

#: Scale task statuses are pending, completed, canceled and error (docs: the task object).
FAILED_STATUSES = frozenset({"canceled", "cancelled", "error"})


def job_state(status: str) -> str:
    """labelhook's view of a Scale task status: ``completed``, ``failed`` or ``open``."""
    status = status.strip().lower()
    if status == "completed":
        return "completed"
    return "failed" if status in FAILED_STATUSES else "open"
