"""The delivery page over real HTTP: a signed callback's request headers (secrets redacted) and its body,
from the queue while it keeps it, then from the job's stored `callback.json`."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx

from processors.queue import open_queue
from processors.queue.base import Retention
from tests.support import LiveServer, callback_body, sign, wait_for
from tests.test_dashboard import BEARER, TOKEN, build, status_of

SIGNED_EXTRAS = {
    "User-Agent": "Svix-Webhooks/1.24 (sender-Xy3k; +https://www.svix.com/http-sender/)",
    "X-Trace-Id": "trace-0042",
    "X-Api-Key": "key-do-not-show-0001",
    "Cookie": "session=cookie-do-not-show",
    "Referer": "https://vendor.example/app?sig=referer-do-not-show",
}


def test_a_signed_callbacks_page_shows_its_headers_redacted_and_its_body(make_settings: Any) -> None:
    settings = make_settings(LABELHOOK_DASHBOARD_TOKEN=TOKEN)
    app, _, _ = build(settings)
    with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=10) as client:
        body = callback_body("job-hdr", result_url="https://cdn.example/r.json?X-Amz-Signature=abc")
        signed = sign(body, "msg-hdr-1")
        response = client.post("/hooks/acme", content=body, headers={**signed, **SIGNED_EXTRAS})
        assert response.status_code == 202, response.text
        delivery_id = response.json()["delivery_id"]
        wait_for(lambda: status_of(client, delivery_id) == "done", what="the callback processed")

        detail = client.get(f"/api/deliveries/{delivery_id}", headers=BEARER).json()
        headers = detail["headers"]
        assert headers["webhook-id"] == "msg-hdr-1" and headers["x-trace-id"] == "trace-0042"
        assert headers["content-type"] == "application/json"
        for secret in ("webhook-signature", "x-api-key", "cookie"):
            assert headers[secret] == "(redacted)"
        assert detail["body_source"] == "queue"
        assert json.loads(detail["body_preview"])["data"]["job_id"] == "job-hdr"

        page = client.get(f"/dashboard/deliveries/{delivery_id}", headers=BEARER).text
        headers_html = page.split("<section id=headers>", 1)[1].split("</section>", 1)[0]
        assert "<code>webhook-id</code></td><td>msg-hdr-1" in headers_html
        assert "<code>webhook-signature</code></td><td>(redacted)" in headers_html
        assert "<code>referer</code></td><td>https://vendor.example/app?(query masked)" in headers_html
        body_html = page.split("<section id=body>", 1)[1]
        assert "from the queue" in body_html and "job-hdr" in body_html
        assert "(query masked)" in body_html
        for leaked in (signed["webhook-signature"], "do-not-show", "X-Amz-Signature=abc"):
            assert leaked not in page

        # Past the body retention the queue keeps the row, not the body: the preview comes from the
        # job's callback.json, which this delivery wrote; the headers went with the body.
        pruner = open_queue(settings.queue_url, retention=Retention(bodies_seconds=1, rows_seconds=10**7))
        try:
            pruned = asyncio.run(pruner.prune(now=time.time() + 60))
        finally:
            asyncio.run(pruner.close())
        assert pruned.bodies >= 1
        detail = client.get(f"/api/deliveries/{delivery_id}", headers=BEARER).json()
        assert detail["body_source"] == "job" and detail["headers"] is None
        assert json.loads(detail["body_preview"])["data"]["job_id"] == "job-hdr"
        page = client.get(f"/dashboard/deliveries/{delivery_id}", headers=BEARER).text
        assert "from the job&#x27;s stored callback.json" in page and "job-hdr" in page
        assert "not recorded" in page.split("<section id=headers>", 1)[1]


def test_past_the_retention_without_the_jobs_callback_the_preview_comes_from_the_failure_history(
    make_settings: Any, tmp_path: Path
) -> None:
    settings = make_settings(LABELHOOK_DASHBOARD_TOKEN=TOKEN, LABELHOOK_MAX_ATTEMPTS="1")
    app, _, processor = build(settings)
    with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=10) as client:
        # A callback that failed (a dead letter: so a failure history), then replayed and processed.
        body = callback_body("job-old", fail=True, note="first")
        sent = client.post("/hooks/acme", content=body, headers=sign(body, "msg-old-1"))
        delivery_id = sent.json()["delivery_id"]
        wait_for(lambda: status_of(client, delivery_id) == "dead", what="the dead letter")
        processor.healed.set()
        assert client.post("/api/replay", json={"ids": [delivery_id]}, headers=BEARER).json() == {
            "replayed": 1
        }
        wait_for(lambda: status_of(client, delivery_id) == "done", what="the replay processed")

        pruner = open_queue(settings.queue_url, retention=Retention(bodies_seconds=1, rows_seconds=10**7))
        try:
            assert asyncio.run(pruner.prune(now=time.time() + 60)).bodies == 1
        finally:
            asyncio.run(pruner.close())
        assert client.get(f"/api/deliveries/{delivery_id}", headers=BEARER).json()["body_source"] == "job"

        # The job's outputs removed (a lifecycle rule, an operator): the history's preview remains.
        [written] = (tmp_path / "out").glob("standard/acme/msg-old-1/callback.json")
        written.unlink()
        detail = client.get(f"/api/deliveries/{delivery_id}", headers=BEARER).json()
        assert detail["body_source"] == "history"
        assert json.loads(detail["body_preview"])["data"]["note"] == "first"
        page = client.get(f"/dashboard/deliveries/{delivery_id}", headers=BEARER).text
        assert "from the delivery&#x27;s failure history" in page
