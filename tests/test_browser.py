"""The dashboard in a real browser: Debian's chromium driven by Playwright against uvicorn + worker.

Log in through the form, open a processed mask job and see its previews load, replay a dead letter
with its button and see it processed. Set LABELHOOK_SCREENSHOT=docs/dashboard.png to refresh the
README's screenshot. Only 127.0.0.1 is contacted; the browser's background networking is off.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import LiveServer, callback_body, sign, wait_for
from tests.test_dashboard import BEARER, TOKEN, build

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM),
    reason=f"{CHROMIUM} is missing (`make test` installs Debian's chromium when run as root)",
)


def _status(url: str, delivery_id: str) -> str | None:
    rows = httpx.get(url + "/api/deliveries", headers=BEARER, timeout=5).json()
    return next((r["status"] for r in rows if r["id"] == delivery_id), None)


def test_login_mask_previews_and_replay_in_chromium(make_settings: Any, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    app, _, processor = build(make_settings(LABELHOOK_DASHBOARD_TOKEN=TOKEN, LABELHOOK_MAX_ATTEMPTS="1"))
    with LiveServer(app) as live:
        ids = {}
        for job, extra in (("street-0042", {}), ("street-0043", {"fail": True})):
            body = callback_body(job, **extra)
            response = httpx.post(live.url + "/hooks/acme", content=body, headers=sign(body, job), timeout=5)
            ids[job] = response.json()["delivery_id"]
        wait_for(lambda: _status(live.url, ids["street-0042"]) == "done", what="mask job processed")
        wait_for(lambda: _status(live.url, ids["street-0043"]) == "dead", what="dead letter")

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
            try:
                page = browser.new_page(viewport={"width": 1100, "height": 900})
                page.goto(live.url + "/dashboard/login")
                page.fill("input[name=token]", TOKEN)
                page.click("form.login button")
                page.wait_for_url(live.url + "/dashboard")
                assert page.locator("#dead td", has_text="not ready").count() == 1

                page.locator("#jobs a", has_text="street-0042").click()
                page.wait_for_url("**/dashboard/jobs/acme/street-0042")
                page.wait_for_function(
                    "() => document.images.length === 2 &&"
                    " [...document.images].every(i => i.complete && i.naturalWidth > 0)"
                )
                sizes = page.eval_on_selector_all(
                    "img", "imgs => imgs.map(i => [i.naturalWidth, i.className])"
                )
                assert sorted(sizes) == [[64, "instances"], [64, "semantic"]]
                assert page.locator("#warnings", has_text="#123456").count() == 1
                shot = page.screenshot(full_page=True)
                assert shot.startswith(b"\x89PNG")
                if os.environ.get("LABELHOOK_SCREENSHOT"):
                    Path(os.environ["LABELHOOK_SCREENSHOT"]).write_bytes(shot)

                page.goto(live.url + "/dashboard")
                processor.healed.set()
                page.click(f"button.replay[data-id='{ids['street-0043']}']")
                page.wait_for_url(live.url + "/dashboard?replayed=1#dead")
                assert "Replayed 1 dead letter" in page.locator(".flash").inner_text()
                wait_for(
                    lambda: _status(live.url, ids["street-0043"]) == "done", what="replayed and processed"
                )
                page.reload()
                assert page.locator("#dead", has_text="no dead letters").count() == 1
            finally:
                browser.close()


def test_run_demo_in_chromium_shows_the_sandbox_mask_jobs(tmp_path: Path) -> None:
    """What a newcomer does: `labelhook run --demo` with a token, log in, open a Playment demo job."""
    from playwright.sync_api import sync_playwright

    from tests.support import cli_env, free_port, labelhook

    port = free_port()
    env = cli_env(tmp_path, PORT=str(port), LABELHOOK_DASHBOARD_TOKEN=TOKEN)
    for key in [k for k in env if k.startswith(("LABELHOOK_SOURCES", "LABELHOOK_ACME"))]:
        del env[key]
    url = f"http://127.0.0.1:{port}"
    process = labelhook("run", "--demo", env=env, cwd=tmp_path)
    try:

        def playment_jobs() -> list[dict[str, Any]]:
            try:
                jobs = httpx.get(url + "/api/jobs", headers=BEARER, timeout=2).json()
            except httpx.TransportError:
                return []
            done = [j for j in jobs if j["source"] == "playment" and j["state"] == "completed"]
            return done if len(done) == 3 else []

        jobs = wait_for(playment_jobs, timeout=60, interval=0.3, what="the sandbox Playment jobs processed")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
            try:
                page = browser.new_page()
                page.goto(url + "/dashboard/login")
                page.fill("input[name=token]", TOKEN)
                page.click("form.login button")
                page.wait_for_url(url + "/dashboard")
                for job in jobs:
                    page.goto(f"{url}/dashboard/jobs/playment/{job['job_id']}")
                    page.wait_for_function(
                        "() => document.images.length >= 2 &&"
                        " [...document.images].every(i => i.complete && i.naturalWidth > 0)"
                    )
                    assert page.locator("img.semantic").count() >= 1
                    assert page.locator("img.instances").count() >= 1
            finally:
                browser.close()
    finally:
        process.terminate()
        process.wait(30)
