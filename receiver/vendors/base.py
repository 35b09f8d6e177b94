"""`VendorAdapter`: the receiver-side half of a vendor — verify a callback and say what it means.

Adapters are pure: headers, query, body bytes and the current time in; a `Callback` or a
`receiver.errors.ReceiverError` out. No I/O, no clock of their own, so every rule is testable with
plain values and the receiver never blocks its event loop on them.
"""

from __future__ import annotations

import hmac
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from processors.config import Secret, SourceConfig
from receiver.bounded_json import JSONRejected, loads_bounded
from receiver.errors import BadRequest


@dataclass(frozen=True, slots=True)
class IncomingRequest:
    """What an adapter may look at: lower-cased headers, query parameters and the raw body."""

    headers: Mapping[str, str]
    query: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class Callback:
    """A verified callback and what it means.

    ``kind``: ``"callback"`` — the job is finished, process it; ``"state"`` — progress only: the worker
    records ``state`` on the job (``meta["job_state"]`` is labelhook's view: open / failed / …) and
    fetches nothing. ``enqueue`` False (a ping) means answer 200 and store nothing. ``meta`` holds
    scalars only (strings, numbers, booleans): it is copied into every queue record.
    """

    dedupe_key: str
    job_id: str
    project: str
    state: str | None = None
    kind: str = "callback"
    enqueue: bool = True
    meta: dict[str, Any] = field(default_factory=dict)
    #: The bytes the signature covers, when they are not the raw body (a vendor that signs a
    #: re-serialised form): what is stored and processed is always exactly what was verified.
    signed_body: bytes | None = None


class VendorAdapter(ABC):
    """Verifies and interprets callbacks for one configured source."""

    #: The `processors.vendors.VENDORS` name this adapter is the receiver half of.
    vendor: ClassVar[str]

    def __init__(self, source: SourceConfig) -> None:
        self.source = source

    @abstractmethod
    def verify(self, request: IncomingRequest, now: float) -> Callback:
        """Check authenticity (raise `Unauthorized`) and shape (raise `BadRequest`); never do I/O."""


def parse_json(body: bytes) -> Any:
    """Parse a verified JSON body; `BadRequest` on anything that is not valid, bounded JSON.

    Size is bounded by the body cap, nesting by `receiver.bounded_json.MAX_DEPTH` (the same for every
    vendor), so a hostile body costs at most one bounded parse and can never reach the worker.
    """
    try:
        return loads_bounded(body)
    except JSONRejected as exc:
        raise BadRequest(str(exc), code=exc.code) from None


def token_matches(given: str | None, secrets: tuple[Secret, ...]) -> bool:
    """Constant-time comparison of a presented token against every configured secret."""
    if not given:
        return False
    presented = given.encode()
    matched = False
    for secret in secrets:
        # No early exit: the time taken does not reveal which secret (if any) matched.
        matched |= hmac.compare_digest(presented, secret.reveal().encode())
    return matched
