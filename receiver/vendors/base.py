"""`VendorAdapter`: the receiver-side half of a vendor — verify a callback and say what it means.

Adapters are pure: headers, query, body bytes and the current time in; a `Callback` or a
`receiver.errors.ReceiverError` out. No I/O, no clock of their own, so every rule is testable with
plain values and the receiver never blocks its event loop on them.
"""

from __future__ import annotations

import hmac
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from processors.config import Secret, SourceConfig
from receiver.errors import BadRequest

# The C scanner `json.loads` itself uses (typeshed does not declare the decoder's attribute).
_scan: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


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
    fetches nothing. ``enqueue`` False (a ping) means answer 200 and store nothing.
    """

    dedupe_key: str
    job_id: str
    project: str
    state: str | None = None
    kind: str = "callback"
    enqueue: bool = True
    meta: dict[str, Any] = field(default_factory=dict)


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
    """Parse a JSON body; `BadRequest` on anything that is not valid JSON.

    Nesting depth is bounded by the C parser's recursion guard (a `RecursionError`, mapped to 400), and
    size by the body cap, so a hostile body costs at most one bounded parse.
    """
    # Fast path for what vendors send (a UTF-8 document, nothing around it): the C scanner straight
    # on the text, skipping `json.loads`' encoding sniffing and whitespace regexes — half the cost on
    # the ingest hot path. Anything else (BOMs, UTF-16, whitespace, trailing data, errors) goes the
    # regular way below, so what is accepted and the errors raised are exactly `json.loads`'.
    try:
        text = body.decode()
        value, end = _scan(text, 0)
        if end == len(text):
            return value
    except (UnicodeDecodeError, StopIteration, ValueError, RecursionError):
        pass
    try:
        return json.loads(body)
    except UnicodeDecodeError:
        raise BadRequest("body is not UTF-8", code="malformed_body") from None
    except (ValueError, RecursionError):
        raise BadRequest("body is not valid JSON", code="malformed_body") from None


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
