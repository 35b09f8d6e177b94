"""`labelhook run --demo`: sample callbacks sent to this very process, so outputs appear at once.

Standard Webhooks samples for the 'demo' source and, when LABELHOOK_SOURCES is unset, Playment
callbacks for the jobs of a sandbox Playment API started in-process (`load_demo_settings`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import httpx
from standardwebhooks.webhooks import Webhook

from processors.config import DEMO_SECRET, DEMO_SOURCE, Settings, SourceConfig, load_settings
from processors.vendors.playment.options import PlaymentOptions

if TYPE_CHECKING:
    from processors.store import Store

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
        if not await _wait_until_up(client, startup_timeout):
            return
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


# -- Playment sandbox --------------------------------------------------------------------------------

PLAYMENT_SOURCE = "playment"
# Public, like DEMO_SECRET: the sandbox source only exists under `run --demo` without LABELHOOK_SOURCES.
PLAYMENT_DEMO_KEY = "playment-demo-key-do-not-use"


def load_demo_settings(environ: Mapping[str, str]) -> Settings:
    """Settings for `run --demo` without LABELHOOK_SOURCES: the standard 'demo' source plus a
    'playment' source wired to a sandbox Playment API started here on 127.0.0.1 (a daemon thread).

    The sandbox's origin (both loopback names, its port) is added to LABELHOOK_FETCH_ALLOW_HOSTS, for this
    process only.
    """
    from receiver.demo.sandbox import serve_in_thread
    from receiver.demo.sandbox.playment import SANDBOX_API_KEY, SANDBOX_PROJECT, PlaymentSandbox

    sandbox = PlaymentSandbox()
    sandbox.add_samples()
    running = serve_in_thread(sandbox.app)
    env = dict(environ)
    env["LABELHOOK_SOURCES"] = f"{DEMO_SOURCE},{PLAYMENT_SOURCE}"
    env.setdefault("LABELHOOK_DEMO_VENDOR", "standard")
    public_key = not env.get("LABELHOOK_DEMO_SECRET")
    if public_key:
        env["LABELHOOK_DEMO_SECRET"] = DEMO_SECRET
    env.update(
        LABELHOOK_PLAYMENT_VENDOR="playment",
        LABELHOOK_PLAYMENT_SECRET=PLAYMENT_DEMO_KEY,
        LABELHOOK_PLAYMENT_API_KEY=SANDBOX_API_KEY,
        LABELHOOK_PLAYMENT_API_URL=running.url,
        LABELHOOK_PLAYMENT_PROJECT_ID=SANDBOX_PROJECT,
        LABELHOOK_PLAYMENT_SANDBOX="1",
    )
    hosts = [h for h in env.get("LABELHOOK_FETCH_ALLOW_HOSTS", "").split(",") if h.strip()]
    port = httpx.URL(running.url).port
    env["LABELHOOK_FETCH_ALLOW_HOSTS"] = ",".join([*hosts, f"127.0.0.1:{port}", f"localhost:{port}"])
    settings = load_settings(env)
    log.info("demo: Playment sandbox started", extra={"url": running.url})
    return dataclasses.replace(settings, demo_secret_in_use=public_key)


async def send_playment_samples(
    base_url: str, source: SourceConfig, *, startup_timeout: float = 15.0, store: Store | None = None
) -> None:
    """POST a Playment-style completion callback (`x-playment-key`) for each sandbox job.

    With ``store``, each job is first recorded as `labelhook submit` records it, with the URLs of
    the photos it was drawn on (Playment's job API does not answer them), so the demo's output sets
    hold their source images too.
    """
    from receiver.demo.sandbox.playment import INSTANCE_JOB, SAMPLE_IMAGES, SEMANTIC_JOB, VIDEO_JOB

    if store is not None and source.api_url:
        from processors.jobs import JobBook

        book = JobBook(store)
        for job_id, paths in SAMPLE_IMAGES.items():
            book.note(
                source=source.name,
                vendor=source.vendor,
                job_id=job_id,
                project=PlaymentOptions.of(source).project_id or "",
                state="open",
                meta={"image_urls": {frame: source.api_url + path for frame, path in paths.items()}},
            )

    key = source.secrets[0].reveal()
    project = PlaymentOptions.of(source).project_id or ""
    async with httpx.AsyncClient(base_url=base_url, timeout=5.0) as client:
        if not await _wait_until_up(client, startup_timeout):
            return
        for job_id in (SEMANTIC_JOB, INSTANCE_JOB, VIDEO_JOB):
            body = json.dumps(
                {
                    "data": {
                        "job_id": job_id,
                        "project_id": project,
                        "reference_id": "001",
                        "status": "completed",
                    }
                }
            ).encode()
            response = await client.post(
                f"/hooks/{source.name}",
                content=body,
                headers={"x-playment-key": key, "content-type": "application/json"},
            )
            log.info(
                "demo: Playment callback sent",
                extra={"job": job_id, "status": response.status_code, "response": response.json()},
            )


async def _wait_until_up(client: httpx.AsyncClient, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        try:
            await client.get("/healthz")
            return True
        except httpx.TransportError:
            if time.monotonic() > deadline:
                log.error("demo: server did not come up", extra={"url": str(client.base_url)})
                return False
            await asyncio.sleep(0.1)
