"""Per-request cost of recording a callback's headers (issue 22): recorder plus the larger queue record.

Side by side in one run: `Delivery.to_record` of a Standard Webhooks callback without and with
``meta["headers"]`` (12 headers, as Svix sends them through a proxy).
Run: `.venv/bin/python bench/header_record.py`.
"""

from __future__ import annotations

import json
import timeit

from processors.delivery import Delivery
from receiver.header_record import HeaderRecorder

HEADERS = {
    "host": "hooks.example.com",
    "user-agent": "Svix-Webhooks/1.24",
    "content-type": "application/json",
    "content-length": "412",
    "accept": "*/*",
    "accept-encoding": "gzip",
    "webhook-id": "msg_2Wq8Rrx1bY3zZ",
    "webhook-timestamp": "1700000000",
    "webhook-signature": "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=",
    "x-forwarded-for": "203.0.113.9",
    "x-forwarded-proto": "https",
    "x-request-id": "2b1f6c1e-5d7a-4d8e-9a0c-8f3e2d1c0b9a",
}
BODY = json.dumps({"type": "job.completed", "data": {"job_id": "street-0001", "note": "y" * 300}}).encode()
RECORDER = HeaderRecorder({"webhook-signature", "svix-signature"})


def record(headers: bool) -> bytes:
    meta: dict[str, object] = {"job_state": "open"}
    if headers:
        meta["headers"] = RECORDER(HEADERS)
    delivery = Delivery(
        id="0" * 32, source="acme", vendor="standard", dedupe_key="acme:msg_2Wq8Rrx1bY3zZ",
        job_id="street-0001", project="p", body=BODY, received_at=1_700_000_000.5, meta=meta,
    )  # fmt: skip
    return delivery.to_record()


def main() -> None:
    runs = 50_000
    for _ in range(2):
        bare = min(timeit.repeat(lambda: record(False), number=runs, repeat=5)) / runs
        full = min(timeit.repeat(lambda: record(True), number=runs, repeat=5)) / runs
        alone = min(timeit.repeat(lambda: RECORDER(HEADERS), number=runs, repeat=5)) / runs
        print(
            f"to_record without headers {bare * 1e6:.2f} µs, with {full * 1e6:.2f} µs"
            f" (+{(full - bare) * 1e6:.2f} µs, of which the recorder {alone * 1e6:.2f} µs);"
            f" record {len(record(False))} -> {len(record(True))} bytes"
        )


if __name__ == "__main__":
    main()
