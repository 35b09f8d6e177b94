"""The on-call path in a real browser (Debian's chromium via Playwright, 127.0.0.1 only).

A dead letter links to its delivery page (status, every attempt with its time, reason and worker,
the request headers with credentials redacted, the masked body preview and where it came from, a
replay button that confirms; a delivery processed at once shows headers and body too); the overview
shows workers and their heartbeat, one name per status, pages of deliveries, and refreshes itself; a
job page labels its previews, has a legend and links its files. Screenshots are written to the test's
tmp dir and, with LABELHOOK_SCREENSHOT_DIR set, to that folder (the README's `docs/delivery.png`
comes from here).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from processors.delivery import Delivery
from processors.errors import Permanent, Retryable
from processors.queue import open_queue
from processors.store import JobWriter, open_store
from processors.worker import Worker
from receiver.app import create_app
from tests.support import LiveServer, callback_body, sign, wait_for
from tests.test_browser import CHROMIUM, FLAGS
from tests.test_dashboard import BEARER, TOKEN, MaskProcessor

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is missing")


class FlakyVendor(MaskProcessor):
    """Jobs with ``"flaky"``: a 502 first, then "not ready" for good, until `healed` is set."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen: dict[str, int] = {}
        self.lock = threading.Lock()

    def process(self, delivery: Delivery, out: JobWriter) -> dict[str, Any]:
        data = json.loads(delivery.body)["data"]
        if data.get("flaky") and not self.healed.is_set():
            with self.lock:
                self.seen[delivery.id] = self.seen.get(delivery.id, 0) + 1
                first = self.seen[delivery.id] == 1
            if first:
                raise Retryable("vendor answered 502 Bad Gateway")
            raise Permanent("vendor says the result is not ready")
        return super().process(delivery, out)


def _shot(page: Any, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.write_bytes(page.screenshot(full_page=True))
    folder = os.environ.get("LABELHOOK_SCREENSHOT_DIR")
    if folder:
        (Path(folder) / name).write_bytes(path.read_bytes())
    return path


def test_dead_letter_to_delivery_page_replay_workers_pages_and_previews(
    make_settings: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    settings = make_settings(LABELHOOK_DASHBOARD_TOKEN=TOKEN, LABELHOOK_MAX_ATTEMPTS="3")
    queue, store = open_queue(settings.queue_url), open_store(settings.store_url)
    vendor = FlakyVendor(settings.sources["acme"], settings)
    worker = Worker(settings, queue, store, processors={"acme": vendor}, drain_seconds=5, name="web-1-4242")
    app = create_app(settings, queue, store, worker=worker)

    def status(url: str, delivery_id: str) -> str | None:
        rows = httpx.get(url + "/api/deliveries", headers=BEARER, params={"limit": 1000}, timeout=5).json()
        return next((r["status"] for r in rows if r["id"] == delivery_id), None)

    with LiveServer(app) as live:
        body = callback_body(
            "street-0099", flaky=True, result_url="https://cdn.example/r.json?X-Amz-Signature=abc"
        )
        signed = sign(body, "street-0099")
        extras = {"User-Agent": "Svix-Webhooks/1.24", "X-Request-Id": "req-7f3a", "X-Api-Key": "k-hidden-9"}
        sent = httpx.post(live.url + "/hooks/acme", content=body, headers={**signed, **extras}, timeout=5)
        dead_id = sent.json()["delivery_id"]
        for i in range(52):  # more than one page of deliveries (50 a page)
            job = f"street-{i:04}"
            ok = httpx.post(
                live.url + "/hooks/acme", content=callback_body(job), headers=sign(callback_body(job), job)
            )
            assert ok.status_code == 202
        wait_for(lambda: status(live.url, dead_id) == "dead", timeout=30, what="the dead letter")
        wait_for(lambda: worker.stats.total("processed") == 52, timeout=60, what="52 processed")

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
            try:
                page = browser.new_page(viewport={"width": 1100, "height": 900})
                page.goto(live.url + "/dashboard/login")
                page.fill("input[name=token]", TOKEN)
                page.click("form.login button")
                page.wait_for_url(live.url + "/dashboard")

                # Overview: auto-refresh, consistent status names, workers with a heartbeat, pages.
                assert page.locator("meta[http-equiv=refresh]").get_attribute("content") == "10"
                options = page.eval_on_selector_all("select[name=status] option", "os => os.map(o => o.text)")
                assert options == ["all statuses", "queued", "in flight", "done", "dead"]
                assert page.locator("select[name=source] option").first.text_content() == "all sources"
                workers = page.locator("#workers tbody tr")
                assert workers.count() == 1
                assert "web-1-4242" in workers.first.inner_text() and "up" in workers.first.inner_text()
                assert "s ago" in workers.first.inner_text()
                assert page.locator("#deliveries tbody tr").count() == 50
                page.click("a[rel=next]")
                page.wait_for_url("**page=1**")
                assert page.locator("#deliveries tbody tr").count() == 3
                assert page.locator("nav.pager", has_text="page 2").count() == 1
                page.click("a:text('stop')")
                assert page.locator("meta[http-equiv=refresh]").count() == 0
                assert "the 50 most recently updated of 52 jobs" in page.locator("#jobs").inner_text()
                _shot(page, tmp_path, "overview.png")

                # Dead letter → its delivery page, not raw JSON.
                page.goto(live.url + "/dashboard")
                page.locator("#dead a", has_text="street-0099").click()
                page.wait_for_url(f"**/dashboard/deliveries/{dead_id}")
                assert page.locator("#delivery .status.dead", has_text="dead").count() == 1
                attempts = page.locator("#attempts tbody tr")
                assert attempts.count() == 2
                first, second = attempts.nth(0).inner_text(), attempts.nth(1).inner_text()
                assert "retry" in first and "502 Bad Gateway" in first and "web-1-4242" in first
                assert "dead" in second and "not ready" in second
                assert re_time(first)
                preview = page.locator("pre.body").inner_text()
                assert "street-0099" in preview and "X-Amz-Signature" not in preview
                assert "(query masked)" in preview
                assert "from the queue" in page.locator("#body-source").inner_text()
                # The request headers, credentials redacted when the callback arrived.
                shown = dict(
                    page.eval_on_selector_all(
                        "#headers tbody tr", "rs => rs.map(r => [...r.cells].map(c => c.innerText))"
                    )
                )
                assert shown["webhook-id"] == "street-0099" and shown["x-request-id"] == "req-7f3a"
                assert shown["user-agent"] == "Svix-Webhooks/1.24"
                assert shown["webhook-signature"] == shown["x-api-key"] == "(redacted)"
                content = page.content()
                assert signed["webhook-signature"] not in content and "k-hidden-9" not in content
                _shot(page, tmp_path, "delivery.png")

                # Replay from the delivery page: it confirms, and the delivery goes through.
                vendor.healed.set()
                page.click("#replay button.replay")
                page.wait_for_url(f"**/dashboard/deliveries/{dead_id}?replayed=1")
                assert "Replayed 1 dead letter" in page.locator(".flash").inner_text()
                wait_for(lambda: status(live.url, dead_id) == "done", what="replayed and processed")
                page.reload()
                assert page.locator("#delivery .status.done").count() == 1
                assert "processed" in page.locator("#attempts tbody tr").nth(2).inner_text()

                # A delivery processed at its first attempt has its headers and body shown too.
                page.goto(live.url + "/dashboard?status=done&source=acme")
                page.locator("#deliveries tr", has_text="street-0050").locator("a").first.click()
                page.wait_for_url("**/dashboard/deliveries/**")
                assert page.locator("#headers td", has_text="street-0050").count() == 1  # webhook-id
                assert '"job_id": "street-0050"' in page.locator("pre.body").inner_text()
                page.goto(live.url + f"/dashboard/deliveries/{dead_id}")

                # Job page: labelled previews, a legend, file links that open.
                page.locator("#delivery a", has_text="street-0099").click()
                page.wait_for_url("**/dashboard/jobs/acme/street-0099")
                page.wait_for_function(
                    "() => [...document.images].length === 2 &&"
                    " [...document.images].every(i => i.complete && i.naturalWidth > 0)"
                )
                captions = page.eval_on_selector_all("#previews figcaption", "cs => cs.map(c => c.innerText)")
                assert captions[0].startswith("semantic") and captions[1].startswith("instances")
                legend = page.locator("ul.legend").inner_text()
                assert "car #00c537" in legend and "pedestrian #01d9fc" in legend  # classes, with their codes
                _shot(page, tmp_path, "job.png")
                page.click("#files a:text('labelmap.json')")
                page.wait_for_url("**/dashboard/file?**")
                labelmap = json.loads(page.locator("body").inner_text())
                assert any(entry["name"] == "car" for entry in labelmap)

                # A job with no record: an HTML page naming it, not `{"error": "unknown_job"}`.
                response = page.goto(live.url + "/dashboard/jobs/acme/never-seen")
                assert response is not None and response.status == 404
                assert "never-seen" in page.locator("main").inner_text()
            finally:
                browser.close()


def re_time(text: str) -> bool:
    import re

    return re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", text) is not None
