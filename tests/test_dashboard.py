"""The dashboard and its `/api`: token auth (bearer, basic, login cookie), CSRF, replay, job pages."""

from __future__ import annotations

import base64
import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from processors.config import Settings
from processors.delivery import Delivery
from processors.errors import Permanent
from processors.masks.segmentation import process_segmentation
from processors.queue import open_queue
from processors.store import JobWriter, open_store
from processors.vendors.base import Processor
from processors.worker import Worker
from receiver.app import create_app
from tests.support import LiveServer, callback_body, sign, wait_for

TOKEN = "dash-token-0123456789abcdef"

# A segmentation result with something for every warning: an invalid legend key, an instance that is
# absent from the frame, and (painted below) a colour that is not in the legend.
MASK_RESULT: dict[str, Any] = {
    "legend": {
        "#00c537": "car # 1",
        "#fcbe92": "car # 2",
        "#01d9fc": "pedestrian # 1",
        "#fb0379": "pedestrian # 2",
        "#fda7df": "vegetation",
        "#abc": "broken key",
    },
    "instances": [
        {"_id": "c1", "color": "#00c537", "index": 1, "value": "car # 1", "class_id": "car"},
        {"_id": "c2", "color": "#fcbe92", "index": 2, "value": "car # 2", "class_id": "car"},
        {"_id": "p1", "color": "#01d9fc", "index": 1, "value": "pedestrian # 1", "class_id": "ped"},
        {"_id": "p2", "color": "#fb0379", "index": 2, "value": "pedestrian # 2", "class_id": "ped"},
        {"_id": "v", "color": "#fda7df", "index": 0, "value": "vegetation", "class_id": "veg"},
    ],
}


def mask_frame(height: int = 48, width: int = 64) -> bytes:
    image = np.zeros((height, width, 4), dtype=np.uint8)
    for rows, cols, colour in [
        (slice(0, 16), slice(0, 64), "#fda7df"),
        (slice(20, 40), slice(4, 24), "#00c537"),
        (slice(24, 44), slice(30, 50), "#fcbe92"),
        (slice(18, 46), slice(54, 60), "#01d9fc"),
        (slice(44, 48), slice(0, 8), "#123456"),  # not in the legend
    ]:
        image[rows, cols, :3] = [int(colour[i : i + 2], 16) for i in (1, 3, 5)]
        image[rows, cols, 3] = 255
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="PNG")
    return out.getvalue()


class MaskProcessor(Processor):
    """Writes a real segmentation job for each delivery; ``"fail": true`` fails until `healed` is set."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.healed = threading.Event()

    def process(self, delivery: Delivery, out: JobWriter) -> dict[str, Any]:
        data = json.loads(delivery.body)["data"]
        if data.get("fail") and not self.healed.is_set():
            raise Permanent("vendor says the result is not ready (test)")
        out.write("callback.json", delivery.body, "application/json")

        def write(key: str, value: bytes) -> None:
            out.write(key, value, "image/png" if key.endswith(".png") else "application/json")

        summary = process_segmentation(MASK_RESULT, [(0, mask_frame())], write, max_pixels=10**6)
        return {"segmentation": summary.as_json()}


def build(settings: Settings) -> tuple[Any, Worker, MaskProcessor]:
    queue = open_queue(settings.queue_url)
    store = open_store(settings.store_url)
    processor = MaskProcessor(settings.sources["acme"], settings)
    worker = Worker(settings, queue, store, processors={"acme": processor}, drain_seconds=5)
    return create_app(settings, queue, store, worker=worker), worker, processor


@pytest.fixture
def dash(make_settings: Any) -> Iterator[tuple[httpx.Client, MaskProcessor]]:
    app, _, processor = build(make_settings(LABELHOOK_DASHBOARD_TOKEN=TOKEN, LABELHOOK_MAX_ATTEMPTS="1"))
    with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=10) as client:
        yield client, processor


BEARER = {"Authorization": f"Bearer {TOKEN}"}


def send(client: httpx.Client, job: str, **data: Any) -> str:
    body = callback_body(job, **data)
    response = client.post("/hooks/acme", content=body, headers=sign(body, job))
    assert response.status_code == 202, response.text
    delivery_id: str = response.json()["delivery_id"]
    return delivery_id


def status_of(client: httpx.Client, delivery_id: str) -> str | None:
    rows = client.get("/api/deliveries", headers=BEARER).json()
    return next((r["status"] for r in rows if r["id"] == delivery_id), None)


def login(client: httpx.Client) -> str:
    response = client.post(
        "/dashboard/login",
        data={"token": TOKEN},
        headers={"Origin": str(client.base_url).rstrip("/")},
        follow_redirects=False,
    )
    assert response.status_code == 303
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert TOKEN not in cookie
    page = client.get("/dashboard")
    assert page.status_code == 200
    csrf = page.text.split("name=csrf value='", 1)[1].split("'", 1)[0]
    return csrf


def test_everything_is_404_without_a_configured_token(make_settings: Any) -> None:
    app, _, _ = build(make_settings())
    with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=10) as client:
        check_404(client)


def check_404(client: httpx.Client) -> None:
    for path in ("/dashboard", "/dashboard/login", "/api/deliveries", "/api/jobs", "/dashboard/mask"):
        response = client.get(path, headers=BEARER)
        assert response.status_code == 404 and response.json()["error"] == "not_found", path
    assert client.post("/api/replay", json={"all": True}, headers=BEARER).status_code == 404


def test_401_json_without_or_with_a_wrong_credential(dash: tuple[httpx.Client, MaskProcessor]) -> None:
    client, _ = dash
    wrong_basic = "Basic " + base64.b64encode(b"ops:nope").decode()
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": wrong_basic}):
        for path in ("/dashboard", "/api/deliveries", "/api/jobs", "/api/dead-letters"):
            response = client.get(path, headers=headers)
            assert response.status_code == 401, (path, headers)
            assert response.json()["error"] == "unauthorized"
            assert response.headers["www-authenticate"].startswith("Bearer")
    response = client.get("/dashboard", headers={"Cookie": "labelhook_session=1-abc.deadbeef"})
    assert response.status_code == 401


def test_bearer_basic_and_login_cookie_all_work(dash: tuple[httpx.Client, MaskProcessor]) -> None:
    client, _ = dash
    assert client.get("/dashboard", headers=BEARER).status_code == 200
    basic = "Basic " + base64.b64encode(f"anyone:{TOKEN}".encode()).decode()
    assert client.get("/api/jobs", headers={"Authorization": basic}).status_code == 200
    assert client.post("/dashboard/login", data={"token": "wrong"}).status_code == 401
    login(client)
    assert client.get("/api/jobs").status_code == 200


def test_replay_needs_csrf_and_same_origin(dash: tuple[httpx.Client, MaskProcessor]) -> None:
    client, processor = dash
    delivery_id = send(client, "job-fail", fail=True)
    wait_for(lambda: status_of(client, delivery_id) == "dead", what="dead letter")
    csrf = login(client)
    form = {"id": delivery_id}
    assert client.post("/dashboard/replay", data=form, follow_redirects=False).status_code == 403
    bad = client.post("/dashboard/replay", data={**form, "csrf": "0" * 64}, follow_redirects=False)
    assert bad.status_code == 403 and bad.json()["error"] == "csrf_failed"
    cross = client.post(
        "/dashboard/replay",
        data={**form, "csrf": csrf},
        headers={"Origin": "https://evil.example"},
        follow_redirects=False,
    )
    assert cross.status_code == 403 and cross.json()["error"] == "cross_origin"
    # The cookie session must send the CSRF token to the JSON API too; a bearer caller need not.
    assert client.post("/api/replay", json={"ids": [delivery_id]}).status_code == 403
    assert status_of(client, delivery_id) == "dead"
    processor.healed.set()
    ok = client.post("/dashboard/replay", data={**form, "csrf": csrf}, follow_redirects=False)
    assert ok.status_code == 303 and ok.headers["location"] == "/dashboard?replayed=1#dead"
    wait_for(lambda: status_of(client, delivery_id) == "done", what="replayed delivery processed")


def test_replay_via_api(dash: tuple[httpx.Client, MaskProcessor]) -> None:
    client, processor = dash
    delivery_id = send(client, "job-api", fail=True)
    wait_for(lambda: status_of(client, delivery_id) == "dead", what="dead letter")
    [letter] = client.get("/api/dead-letters", headers=BEARER).json()
    assert letter["id"] == delivery_id and "not ready" in letter["last_error"]
    assert client.post("/api/replay", json={"ids": "x"}, headers=BEARER).status_code == 400
    assert client.post("/api/replay", content=b"ids=1", headers=BEARER).status_code == 415
    processor.healed.set()
    response = client.post("/api/replay", json={"ids": [delivery_id]}, headers=BEARER)
    assert response.json() == {"replayed": 1}
    wait_for(lambda: status_of(client, delivery_id) == "done", what="replayed delivery processed")
    assert client.get("/api/dead-letters", headers=BEARER).json() == []
    filtered = client.get("/api/deliveries?status=done&source=acme", headers=BEARER).json()
    assert [d["id"] for d in filtered] == [delivery_id]
    assert client.get("/api/deliveries?status=bogus", headers=BEARER).status_code == 400


def test_job_detail_areas_warnings_and_mask_previews(dash: tuple[httpx.Client, MaskProcessor]) -> None:
    client, _ = dash
    send(client, "job-masks")
    wait_for(
        lambda: any(j["state"] == "completed" for j in client.get("/api/jobs", headers=BEARER).json()),
        what="job completed",
    )
    detail = client.get("/api/jobs/acme/job-masks", headers=BEARER).json()
    assert detail["frames"] == [0]
    paths = {f["path"] for f in detail["files"]}
    assert {"masks/0/semantic.png", "masks/0/instances.png", "annotations.json", "labelmap.json"} <= paths
    areas = {a["name"]: a["area"] for a in detail["class_areas"]}
    assert sum(areas.values()) == 48 * 64 and areas["vegetation"] == 16 * 64
    assert detail["warnings"]["unknown_colors"] == {"#123456": 32}
    assert detail["warnings"]["invalid_legend_keys"] == ["#abc"]
    assert detail["warnings"]["empty_instances"] == ["#fb0379"]
    assert client.get("/api/jobs/acme/nope", headers=BEARER).status_code == 404

    query = "/dashboard/mask?source=acme&job=job-masks&frame=0&kind="
    semantic = client.get(query + "semantic", headers=BEARER)
    assert semantic.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(semantic.content)).mode == "P"
    instances = client.get(query + "instances", headers=BEARER)
    preview = Image.open(io.BytesIO(instances.content))
    assert instances.headers["content-type"] == "image/png" and preview.mode == "RGB"
    assert preview.size == (64, 48)
    assert instances.content == client.get(query + "instances", headers=BEARER).content  # deterministic
    assert np.asarray(preview)[47, 63].tolist() == [0, 0, 0]  # no instance: black
    for bad in ("semantic.png", "../manifest", "x"):
        assert client.get(query + bad, headers=BEARER).status_code == 404
    assert client.get(query.replace("frame=0", "frame=7") + "semantic", headers=BEARER).status_code == 404

    page = client.get("/dashboard/jobs/acme/job-masks", headers=BEARER)
    assert page.status_code == 200
    assert "#123456" in page.text and "#abc" in page.text and "vegetation" in page.text
    assert "kind=instances" in page.text


def test_openapi_lists_the_api_without_secrets(dash: tuple[httpx.Client, MaskProcessor]) -> None:
    client, _ = dash
    text = client.get("/openapi.json").text
    schema = json.loads(text)
    for path in (
        "/metrics",
        "/dashboard",
        "/api/deliveries",
        "/api/dead-letters",
        "/api/replay",
        "/api/jobs",
    ):
        assert path in schema["paths"], path
    assert "/api/jobs/{source}/{job}" in schema["paths"]
    assert TOKEN not in text and "whsec_" not in text


def test_demo_jobs_show_on_the_dashboard(tmp_path: Path) -> None:
    """`labelhook run --demo` with a token: its sample jobs are listed by the dashboard API."""
    from tests.support import cli_env, free_port, labelhook

    port = free_port()
    env = cli_env(tmp_path, PORT=str(port), LABELHOOK_DASHBOARD_TOKEN=TOKEN)
    for key in [k for k in env if k.startswith(("LABELHOOK_SOURCES", "LABELHOOK_ACME"))]:
        del env[key]
    process = labelhook("run", "--demo", env=env, cwd=tmp_path)
    try:

        def demo_jobs() -> list[str]:
            try:
                jobs = httpx.get(f"http://127.0.0.1:{port}/api/jobs", headers=BEARER, timeout=2).json()
            except httpx.TransportError:
                return []
            done = [j["job_id"] for j in jobs if j["state"] == "completed" and j["source"] == "demo"]
            return done if len(done) >= 3 else []

        assert len(wait_for(demo_jobs, timeout=40, interval=0.3, what="demo jobs on the dashboard")) == 3
        page = httpx.get(f"http://127.0.0.1:{port}/dashboard", headers=BEARER, timeout=5)
        assert page.status_code == 200 and "demo-" in page.text
    finally:
        process.terminate()
        process.wait(30)


def test_cli_dead_replay_all_shows_progress(tmp_path: Path) -> None:
    """`labelhook dead replay --all` advances a progress line per dead letter (plain lines off a tty)."""
    import asyncio

    from processors.queue import RetryPolicy
    from processors.queue.sqlite import SQLiteQueue
    from tests.support import cli_env, run_cli

    async def make_dead(count: int) -> None:
        queue = SQLiteQueue(str(tmp_path / "queue.db"), RetryPolicy(1))
        for i in range(count):
            delivery = Delivery(f"d{i:031d}", "acme", "standard", f"k{i}", f"j{i}", "acme", b"{}", 0.0)
            await queue.enqueue(delivery)
        for lease in await queue.claim(count, 30, 0):
            await queue.fail(lease, Permanent("broken (test)"))
        await queue.close()

    asyncio.run(make_dead(3))
    done = run_cli("dead", "replay", "--all", env=cli_env(tmp_path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "replayed 3 dead letter(s)" in done.stdout
    assert [line.split(" ", 2)[:2] for line in done.stderr.splitlines() if line.startswith("replaying")] == [
        ["replaying:", "1/3"],
        ["replaying:", "2/3"],
        ["replaying:", "3/3"],
    ]
