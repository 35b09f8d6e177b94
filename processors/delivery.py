"""`Delivery`: one verified callback (or one poll result) on its way from the receiver to a processor.

It is what the queue stores and what processors read. It serialises to one JSON document so every queue
backend (SQLite row, SQS message body) carries the same bytes.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def new_delivery_id() -> str:
    """A fresh delivery id: a millisecond timestamp prefix and 80 random bits, so ids sort by arrival."""
    return f"{int(time.time() * 1000):012x}{uuid.uuid4().hex[:20]}"


def path_segment(value: str) -> str:
    """Make a vendor-supplied id safe as one path segment of the output layout.

    Vendor ids are attacker-influenced strings; `..`, `/` or control characters must never steer a
    write outside the job's prefix. Safe ids pass through unchanged, so layouts stay readable.
    """
    cleaned = _UNSAFE.sub("_", value.strip())[:200]
    if cleaned in ("", ".", ".."):
        cleaned = "_" + cleaned
    return cleaned


@dataclass(frozen=True)
class Delivery:
    """A durable unit of work. ``body`` is the callback exactly as received (verified bytes)."""

    id: str
    source: str
    vendor: str
    dedupe_key: str
    job_id: str
    project: str
    body: bytes
    received_at: float
    state: str | None = None
    kind: str = "callback"
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def output_prefix(self) -> str:
        """`<vendor>/<project>/<job>`: where this job's output set lives in the store."""
        return "/".join(path_segment(p) for p in (self.vendor, self.project, self.job_id))

    def to_json(self) -> bytes:
        # Spelled out rather than dataclasses.asdict: this runs once per request on the ingest hot path.
        data = {
            "id": self.id,
            "source": self.source,
            "vendor": self.vendor,
            "dedupe_key": self.dedupe_key,
            "job_id": self.job_id,
            "project": self.project,
            # Bodies are verified JSON callbacks, so UTF-8; surrogateescape keeps any byte round-trippable.
            "body": self.body.decode("utf-8", "surrogateescape"),
            "received_at": self.received_at,
            "state": self.state,
            "kind": self.kind,
            "meta": self.meta,
        }
        return json.dumps(data, separators=(",", ":"), sort_keys=True).encode("utf-8", "surrogateescape")

    @classmethod
    def from_json(cls, raw: bytes | str) -> Delivery:
        data = json.loads(raw)
        data["body"] = data["body"].encode("utf-8", "surrogateescape")
        return cls(**data)
