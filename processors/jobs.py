"""The job book: what labelhook knows about each vendor job, kept in the store under `_jobs/`.

A record is created by `labelhook submit`, updated by callbacks that only report progress (a super.AI
job moving through states), by `labelhook poll`, and by the worker when it writes the job's outputs.
It lives in the store rather than in the queue so it works the same with SQLite + folder and with
SQS + S3, where web, worker and the CLI share nothing else. One small JSON object per job:
`_jobs/<source>/<job>.json`. Updates are read-modify-write; concurrent writers of the same job can
lose a history line, never the output location or a terminal state (those are re-derived on every
update by whoever holds the newer information).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from processors.delivery import path_segment
from processors.store import Store, dump_json

PREFIX = "_jobs"
# States after which polling stops; everything else is "open".
TERMINAL_STATES = frozenset({"completed", "failed", "cancelled", "expired"})
_HISTORY_LIMIT = 50


@dataclass
class JobRecord:
    source: str
    vendor: str
    job_id: str
    project: str
    state: str
    vendor_state: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    last_delivery: str | None = None
    output: str | None = None
    reason: str | None = None
    enqueued: bool = False
    meta: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def open(self) -> bool:
        return self.state not in TERMINAL_STATES

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobRecord:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


class JobBook:
    """Reads and writes job records in a `Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @staticmethod
    def key(source: str, job_id: str) -> str:
        return f"{PREFIX}/{path_segment(source)}/{path_segment(job_id)}.json"

    def get(self, source: str, job_id: str) -> JobRecord | None:
        try:
            return JobRecord.from_json(json.loads(self.store.get(self.key(source, job_id))))
        except KeyError:
            return None

    def put(self, record: JobRecord) -> None:
        self.store.put(
            self.key(record.source, record.job_id), dump_json(record.to_json()), "application/json"
        )

    def list(self, source: str | None = None) -> list[JobRecord]:
        prefix = f"{PREFIX}/{path_segment(source)}" if source else PREFIX
        records = []
        for key in self.store.list(prefix):
            if key.endswith(".json"):
                try:
                    records.append(JobRecord.from_json(json.loads(self.store.get(key))))
                except (KeyError, ValueError, TypeError):
                    continue  # deleted meanwhile or not ours: a listing never fails on one bad record
        return sorted(records, key=lambda r: (r.source, r.created_at, r.job_id))

    def note(
        self,
        *,
        source: str,
        vendor: str,
        job_id: str,
        project: str,
        state: str,
        vendor_state: str | None = None,
        delivery_id: str | None = None,
        output: str | None = None,
        reason: str | None = None,
        enqueued: bool | None = None,
        meta: dict[str, Any] | None = None,
        at: float | None = None,
    ) -> JobRecord:
        """Create or update a record with a new state; keeps a bounded history of state changes."""
        now = time.time() if at is None else at
        record = self.get(source, job_id) or JobRecord(
            source=source, vendor=vendor, job_id=job_id, project=project, state=state, created_at=now
        )
        # A terminal state is never downgraded by a late, out-of-order progress report.
        if not (record.state in TERMINAL_STATES and state not in TERMINAL_STATES):
            record.state = state
            record.vendor_state = vendor_state if vendor_state is not None else record.vendor_state
        if not record.history or record.history[-1].get("state") != state:
            record.history = [*record.history, {"state": state, "vendor_state": vendor_state, "at": now}][
                -_HISTORY_LIMIT:
            ]
        record.updated_at = now
        record.project = project or record.project
        if delivery_id is not None:
            record.last_delivery = delivery_id
        if output is not None:
            record.output = output
        if reason is not None:
            record.reason = reason
        if enqueued is not None:
            record.enqueued = enqueued or record.enqueued
        if meta:
            record.meta = {**record.meta, **meta}
        self.put(record)
        return record
