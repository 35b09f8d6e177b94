"""super.AI job states as labelhook sees them (shared by the callback adapter and the poller)."""

from __future__ import annotations

COMPLETED_STATES = frozenset({"completed"})
#: Final states that are not a success; every other state is "open".
FAILED_STATES = frozenset({"failed", "canceled", "cancelled", "expired", "rejected", "error", "deleted"})


def job_state(vendor_state: str) -> str:
    """labelhook's view of a super.AI state: ``completed``, ``failed`` or ``open`` (case-insensitive)."""
    state = vendor_state.strip().lower()
    if state in COMPLETED_STATES:
        return "completed"
    return "failed" if state in FAILED_STATES else "open"
