"""`labelhook run --demo`: signed sample callbacks sent to this very process, so outputs appear at once."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import UTC, datetime

import httpx
from standardwebhooks.webhooks import Webhook

from processors.config import SourceConfig

log = logging.getLogger("labelhook.demo")

SAMPLE_JOBS = [
    {"job_id": "street-0001", "status": "completed", "labels": [{"class": "car", "bbox": [10, 20, 40, 30]}]},
    {
        "job_id": "street-0002",
        "status": "completed",
        "labels": [{"class": "pedestrian", "bbox": [5, 6, 7, 8]}],
    },
    {"job_id": "street-0003", "status": "completed", "labels": []},
]


def signed_request(secret: str, msg_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """Standard Webhooks headers for ``body`` (also used by tests and the README's example)."""
    ts = int(time.time()) if timestamp is None else timestamp
    signature = Webhook(secret).sign(msg_id, datetime.fromtimestamp(ts, tz=UTC), body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


async def send_samples(base_url: str, source: SourceConfig, *, startup_timeout: float = 15.0) -> None:
    """POST each sample job to ``/hooks/<source>`` once the server answers; log what came back."""
    secret = source.secrets[0].reveal()
    run_id = int(time.time())
    async with httpx.AsyncClient(base_url=base_url, timeout=5.0) as client:
        deadline = time.monotonic() + startup_timeout
        while True:
            try:
                await client.get("/healthz")
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    log.error("demo: server did not come up", extra={"url": base_url})
                    return
                await asyncio.sleep(0.1)
        for i, job in enumerate(SAMPLE_JOBS, start=1):
            body = json.dumps({"type": "job.completed", "timestamp": run_id, "data": job}).encode()
            msg_id = f"demo-{run_id}-{i}"
            response = await client.post(
                f"/hooks/{source.name}", content=body, headers=signed_request(secret, msg_id, body)
            )
            log.info(
                "demo: callback sent",
                extra={"webhook_id": msg_id, "status": response.status_code, "response": response.json()},
            )
