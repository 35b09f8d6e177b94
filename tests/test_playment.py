"""Playment end to end: callbacks into a real receiver + worker, results from the sandbox API over HTTP."""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from processors.config import Settings
from processors.errors import Permanent
from processors.jobs import JobBook
from processors.polling import poll_source
from processors.queue import open_queue
from processors.store import open_store
from processors.vendors.playment.options import PlaymentOptions
from processors.vendors.playment.processor import PlaymentProcessor
from processors.vendors.playment.result import plan_result
from processors.worker import Worker
from receiver.app import create_app
from receiver.demo.sandbox.playment import (
    INSTANCE_JOB,
    INSTANCE_LEGEND,
    INSTANCES,
    RESULT_URL_BASE,
    SANDBOX_API_KEY,
    SANDBOX_PROJECT,
    SEMANTIC_JOB,
    SEMANTIC_LEGEND,
    VIDEO_JOB,
    PlaymentSandbox,
    semantic_mask,
    video_frame,
)
from tests.support import LiveServer, cli_env, free_port, index_queue, labelhook, loopback_origins, wait_for

# pycocotools' Cython decode trips numpy 2's __array__(copy=) deprecation; that is its issue, not ours.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")
KEY = "pm-callback-key-0123"
SOURCE = "pm"


@pytest.fixture
def sandbox() -> Iterator[tuple[PlaymentSandbox, LiveServer]]:
    vendor = PlaymentSandbox()
    vendor.add_samples()
    with LiveServer(vendor.app) as live:
        yield vendor, live


def pm_env(api_url: str, **extra: str) -> dict[str, str]:
    env = {
        "LABELHOOK_SOURCES": SOURCE,
        "LABELHOOK_PM_VENDOR": "playment",
        "LABELHOOK_PM_SECRET": f"old-key-xyz,{KEY}",
        "LABELHOOK_PM_API_KEY": SANDBOX_API_KEY,
        "LABELHOOK_PM_API_URL": api_url,
        "LABELHOOK_PM_PROJECT_ID": SANDBOX_PROJECT,
        "LABELHOOK_FETCH_ALLOW_HOSTS": loopback_origins(api_url),
        "LABELHOOK_MAX_ATTEMPTS": "4",
    }
    env.update(extra)
    return env


def receiver(settings: Settings) -> LiveServer:
    queue = open_queue(settings.queue_url)
    store = open_store(settings.store_url)
    return LiveServer(
        create_app(settings, queue, store, worker=Worker(settings, queue, store, drain_seconds=5))
    )


def callback(job_id: str, status: str = "completed", **extra: Any) -> bytes:
    return json.dumps(
        {"data": {"job_id": job_id, "project_id": SANDBOX_PROJECT, "status": status, **extra}}
    ).encode()


def post(url: str, body: bytes, key: str | None = KEY, query: str = "") -> httpx.Response:
    headers = {"content-type": "application/json"}
    if key is not None:
        headers["x-playment-key"] = key
    return httpx.post(f"{url}/hooks/{SOURCE}{query}", content=body, headers=headers, timeout=10)


def job_dir(tmp_path: Path, job_id: str) -> Path:
    return tmp_path / "out" / "playment" / SANDBOX_PROJECT / job_id


def wait_manifest(tmp_path: Path, job_id: str, timeout: float = 15) -> dict[str, Any]:
    path = job_dir(tmp_path, job_id) / "manifest.json"
    return json.loads(wait_for(lambda: path.exists() and path.read_bytes(), timeout=timeout, what=str(path)))


def rows(tmp_path: Path) -> list[tuple[str, str, int, str | None]]:
    index_queue(tmp_path / "queue.db")
    with sqlite3.connect(f"file:{tmp_path}/queue.db?mode=ro", uri=True, timeout=10) as conn:
        return list(
            conn.execute("SELECT job_id, status, attempts, last_error FROM deliveries ORDER BY rowid")
        )


def wait_dead(tmp_path: Path, job_id: str) -> str:
    def dead() -> str | None:
        return next((r[3] for r in rows(tmp_path) if r[0] == job_id and r[1] == "dead"), None)

    return wait_for(dead, timeout=15, what=f"dead letter for {job_id}")


# -- independent reference decoding (slow, per pixel) ------------------------------------------------


def reference_colours(png: bytes) -> list[list[str | None]]:
    """Per pixel: '#rrggbb' lower case, or None where alpha is 0."""
    image = Image.open(io.BytesIO(png)).convert("RGBA")
    out: list[list[str | None]] = []
    for y in range(image.height):
        row: list[str | None] = []
        for x in range(image.width):
            r, g, b, a = image.getpixel((x, y))  # type: ignore[misc]
            row.append(None if a == 0 else f"#{r:02x}{g:02x}{b:02x}")
        out.append(row)
    return out


def check_pixels(
    folder: Path, frame: int, png: bytes, legend: dict[str, str], class_of: dict[str, str]
) -> dict[str, int]:
    """Compare semantic.png / instances.png with a per-pixel reference; return pixel counts per colour."""
    labelmap = {entry["name"]: entry["id"] for entry in json.loads((folder / "labelmap.json").read_text())}
    valid = [k.lower() for k in legend if len(k) == 7 and all(c in "0123456789abcdefABCDEF" for c in k[1:])]
    numbers = {colour: i + 1 for i, colour in enumerate(valid)}
    semantic = np.array(Image.open(folder / "masks" / str(frame) / "semantic.png"))
    instances = np.array(Image.open(folder / "masks" / str(frame) / "instances.png"))
    counts: dict[str, int] = {}
    for y, row in enumerate(reference_colours(png)):
        for x, colour in enumerate(row):
            known = colour if colour in numbers else None
            expected_class = labelmap[class_of[legend[known]]] if known else 0
            assert semantic[y, x] == expected_class, (frame, x, y, colour)
            assert instances[y, x] == (numbers[known] if known else 0), (frame, x, y, colour)
            if colour:
                counts[colour] = counts.get(colour, 0) + 1
    return counts


def check_rle(folder: Path, frame: int, png: bytes) -> None:
    coco = json.loads((folder / "annotations.json").read_text())
    [image] = [i for i in coco["images"] if i["frame_index"] == frame]
    colours = np.array(reference_colours(png), dtype=object)
    annotations = [a for a in coco["annotations"] if a["image_id"] == image["id"]]
    assert annotations
    for annotation in annotations:
        decoded = coco_mask.decode(
            {
                "size": annotation["segmentation"]["size"],
                "counts": annotation["segmentation"]["counts"].encode(),
            }
        )
        expected = colours == annotation["color"]
        assert (decoded.astype(bool) == expected).all(), annotation["color"]
        assert annotation["area"] == int(expected.sum())
        ys, xs = np.nonzero(expected)
        assert annotation["bbox"] == [
            int(xs.min()),
            int(ys.min()),
            int(xs.max() - xs.min() + 1),
            int(ys.max() - ys.min() + 1),
        ]


def semantic_classes(legend: dict[str, str]) -> dict[str, str]:
    return {name: name for name in legend.values()}


# -- end to end ----------------------------------------------------------------------------------------


def photo(size: tuple[int, int], seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="JPEG")
    return buffer.getvalue()


def record_submitted(tmp_path: Path, job_id: str, image_urls: dict[str, str]) -> None:
    """What `labelhook submit` records: the job, with its input's image URLs (the job API omits them)."""
    JobBook(open_store(f"file://{tmp_path}/out")).note(
        source=SOURCE,
        vendor="playment",
        job_id=job_id,
        project=SANDBOX_PROJECT,
        state="open",
        meta={"image_urls": image_urls},
    )


def test_image_job_callback_to_decoded_masks(sandbox: Any, make_settings: Any, tmp_path: Path) -> None:
    vendor, api = sandbox
    image = photo(Image.open(io.BytesIO(semantic_mask())).size)
    record_submitted(tmp_path, SEMANTIC_JOB, {"0": api.url + vendor.add_image("street.jpg", image)})
    with receiver(make_settings(**pm_env(api.url))) as live:
        body = callback(SEMANTIC_JOB)
        response = post(live.url, body)
        assert response.status_code == 202, response.text
        manifest = wait_manifest(tmp_path, SEMANTIC_JOB)
    folder = job_dir(tmp_path, SEMANTIC_JOB)
    assert (folder / "callback.json").read_bytes() == body
    assert (folder / "result.json").read_bytes() == vendor.files[f"{SEMANTIC_JOB}/result.json"][0]
    assert (folder / "media" / "0" / "vendor_mask.png").read_bytes() == semantic_mask()
    # The photo the vendor labelled, fetched from the customer's URL (without the Playment key).
    assert (folder / "images" / "0.jpg").read_bytes() == image
    fetched = vendor.requests_to("/images/")
    assert len(fetched) == 1 and "x-api-key" not in fetched[0].headers
    paths = {f["path"] for f in manifest["files"]}
    assert {"masks/0/semantic.png", "masks/0/instances.png", "labelmap.json", "annotations.json"} <= paths
    counts = check_pixels(folder, 0, semantic_mask(), SEMANTIC_LEGEND, semantic_classes(SEMANTIC_LEGEND))
    check_rle(folder, 0, semantic_mask())
    coco = json.loads((folder / "annotations.json").read_text())
    assert coco["warnings"]["unknown_colors"] == {"#123456": counts["#123456"]}
    assert [i["file_name"] for i in coco["images"]] == ["images/0.jpg"]
    assert coco["warnings"]["images_not_fetched"] == {} and coco["warnings"]["image_size_mismatch"] == []
    assert manifest["segmentation"]["frames"] == 1
    # The API key went to the API only; the signed-URL host (the other origin) never saw it.
    signed = vendor.requests_to("/signed/")
    assert signed and all("x-api-key" not in r.headers for r in signed)
    assert all(r.host.startswith("localhost:") for r in signed)
    api_calls = vendor.requests_to("/v1/")
    assert api_calls and all(r.headers.get("x-api-key") == SANDBOX_API_KEY for r in api_calls)


def test_instance_legend_with_malformed_key_is_reported(
    sandbox: Any, make_settings: Any, tmp_path: Path
) -> None:
    vendor, api = sandbox
    with receiver(make_settings(**pm_env(api.url))) as live:
        # The ?token= form instead of the header.
        assert post(live.url, callback(INSTANCE_JOB), key=None, query=f"?token={KEY}").status_code == 202
        wait_manifest(tmp_path, INSTANCE_JOB)
    folder = job_dir(tmp_path, INSTANCE_JOB)
    png = vendor.files[f"{INSTANCE_JOB}/source.png"][0]  # the sandbox's attachment name
    classes = {i["value"]: i["value"].split(" #")[0] for i in INSTANCES}
    check_pixels(folder, 0, png, INSTANCE_LEGEND, classes)
    check_rle(folder, 0, png)
    coco = json.loads((folder / "annotations.json").read_text())
    assert coco["warnings"]["invalid_legend_keys"] == ["#fdffd34"]
    assert coco["warnings"]["empty_instances"] == ["#fb0379"]
    ids = {a["color"]: a["instance_id"] for a in coco["annotations"]}
    assert ids["#00c537"] == "8037614b-b5b9-420b-8e82-d601b1a7f276"
    assert sorted(c["name"] for c in coco["categories"]) == ["car", "pedestrian", "vegetation"]


def test_video_job_writes_one_mask_per_frame(sandbox: Any, make_settings: Any, tmp_path: Path) -> None:
    vendor, api = sandbox
    size = Image.open(io.BytesIO(video_frame(0))).size
    urls = {str(n): api.url + vendor.add_image(f"v/{n}.jpg", photo(size, n)) for n in (0, 1)}
    urls["2"] = api.url + "/images/v/gone.jpg"  # the customer deleted frame 2's image: 404
    record_submitted(tmp_path, VIDEO_JOB, urls)
    with receiver(make_settings(**pm_env(api.url))) as live:
        assert post(live.url, callback(VIDEO_JOB)).status_code == 202
        manifest = wait_manifest(tmp_path, VIDEO_JOB)
    folder = job_dir(tmp_path, VIDEO_JOB)
    coco = json.loads((folder / "annotations.json").read_text())
    assert [i["frame_index"] for i in coco["images"]] == [0, 1, 2]
    for frame in range(3):
        check_pixels(folder, frame, video_frame(frame), SEMANTIC_LEGEND, semantic_classes(SEMANTIC_LEGEND))
        check_rle(folder, frame, video_frame(frame))
    assert manifest["segmentation"]["frames"] == 3
    assert [i["file_name"] for i in coco["images"]] == ["images/0.jpg", "images/1.jpg", "images/2.jpg"]
    assert (folder / "images/1.jpg").read_bytes() == vendor.images["v/1.jpg"][0]
    assert not (folder / "images/2.jpg").exists()
    assert list(coco["warnings"]["images_not_fetched"]) == ["2"]
    assert "404" in coco["warnings"]["images_not_fetched"]["2"]


def test_fetch_images_off(sandbox: Any, make_settings: Any, tmp_path: Path) -> None:
    vendor, api = sandbox
    record_submitted(tmp_path, SEMANTIC_JOB, {"0": api.url + vendor.add_image("s.jpg", photo((8, 8)))})
    with receiver(make_settings(**pm_env(api.url, LABELHOOK_PM_FETCH_IMAGES="0"))) as live:
        assert post(live.url, callback(SEMANTIC_JOB)).status_code == 202
        wait_manifest(tmp_path, SEMANTIC_JOB)
    coco = json.loads((job_dir(tmp_path, SEMANTIC_JOB) / "annotations.json").read_text())
    assert coco["images"][0]["file_name"] == "images/0"
    assert coco["warnings"]["images_not_fetched"] == {"0": "FETCH_IMAGES=0"}
    assert not vendor.requests_to("/images/")


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("mode", ["RGB", "P"])
def test_rgb_and_palette_masks(sandbox: Any, make_settings: Any, tmp_path: Path, mode: str) -> None:
    vendor, api = sandbox
    image = Image.open(io.BytesIO(semantic_mask())).convert("RGB")
    png = _png(image if mode == "RGB" else image.convert("P", palette=Image.Palette.ADAPTIVE, colors=8))
    assert Image.open(io.BytesIO(png)).mode == mode
    vendor.add_job("job-" + mode, {"legend": SEMANTIC_LEGEND, "url": "mask:m.png"}, masks={"m.png": png})
    with receiver(make_settings(**pm_env(api.url))) as live:
        assert post(live.url, callback("job-" + mode)).status_code == 202
        wait_manifest(tmp_path, "job-" + mode)
    folder = job_dir(tmp_path, "job-" + mode)
    check_pixels(folder, 0, png, SEMANTIC_LEGEND, semantic_classes(SEMANTIC_LEGEND))
    check_rle(folder, 0, png)


def _bomb() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 40000, 40000, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("bomb", "over the limit"),
        ("truncated", "truncated"),
        ("too_big", "LABELHOOK_FETCH_MAX_BYTES"),
        ("bad_api_key", "rejected the API key (401)"),
        ("unknown_job", "does not know job"),
        ("failed_at_vendor", "annotator gave up"),
    ],
)
def test_permanent_failures_become_dead_letters(
    sandbox: Any, make_settings: Any, tmp_path: Path, case: str, reason: str
) -> None:
    vendor, api = sandbox
    env = pm_env(api.url)
    job = SEMANTIC_JOB
    if case == "bomb":
        vendor.add_job(
            job := "bomb", {"legend": SEMANTIC_LEGEND, "url": "mask:b.png"}, masks={"b.png": _bomb()}
        )
        assert len(_bomb()) < 200
    elif case == "truncated":
        data = semantic_mask()
        vendor.add_job(
            job := "trunc",
            {"legend": SEMANTIC_LEGEND, "url": "mask:t.png"},
            masks={"t.png": data[: len(data) // 2]},
        )
    elif case == "too_big":
        env["LABELHOOK_FETCH_MAX_BYTES"] = str(len(semantic_mask()) - 1)
    elif case == "bad_api_key":
        env["LABELHOOK_PM_API_KEY"] = "wrong-key"
    elif case == "unknown_job":
        job = "no-such-job"
    else:
        vendor.add_job(job := "gaveup", None, status="FAILED", reason="annotator gave up")
    with receiver(make_settings(**env)) as live:
        assert post(live.url, callback(job)).status_code == 202
        last_error = wait_dead(tmp_path, job)
    assert reason in last_error
    assert (
        "signature=" not in last_error and SANDBOX_API_KEY not in last_error and "wrong-key" not in last_error
    )
    assert not (job_dir(tmp_path, job) / "manifest.json").exists()
    [(_, status, attempts, _)] = rows(tmp_path)
    assert (status, attempts) == ("dead", 1)  # permanent: no retries


def test_429_with_retry_after_then_success(sandbox: Any, make_settings: Any, tmp_path: Path) -> None:
    vendor, api = sandbox
    vendor.fail(f"/jobs/{SEMANTIC_JOB}", 429, retry_after="1")
    with receiver(make_settings(**pm_env(api.url))) as live:
        assert post(live.url, callback(SEMANTIC_JOB)).status_code == 202
        wait_manifest(tmp_path, SEMANTIC_JOB)
    first, second = vendor.requests_to(f"/v1/projects/{SANDBOX_PROJECT}/jobs/{SEMANTIC_JOB}")[:2]
    assert second.at - first.at >= 0.9  # Retry-After honoured, not the 0.05 s base backoff
    assert rows(tmp_path)[0][1:3] == ("done", 2)


def test_5xx_on_signed_url_then_success(sandbox: Any, make_settings: Any, tmp_path: Path) -> None:
    vendor, api = sandbox
    vendor.fail("/signed/", 503)
    with receiver(make_settings(**pm_env(api.url))) as live:
        assert post(live.url, callback(SEMANTIC_JOB)).status_code == 202
        wait_manifest(tmp_path, SEMANTIC_JOB)
    assert rows(tmp_path)[0][1:3] == ("done", 2)


@pytest.mark.parametrize(
    ("key", "query", "code"),
    [
        (None, "", "missing_signature"),
        ("wrong-key", "", "invalid_signature"),
        (None, "?token=nope", "invalid_signature"),
    ],
)
def test_callbacks_without_a_valid_key_are_401(
    sandbox: Any, make_settings: Any, tmp_path: Path, key: str | None, query: str, code: str
) -> None:
    _, api = sandbox
    with receiver(make_settings(**pm_env(api.url))) as live:
        response = post(live.url, callback(SEMANTIC_JOB), key=key, query=query)
    assert response.status_code == 401
    assert response.json()["error"] == code and set(response.json()) == {"error", "detail"}
    assert rows(tmp_path) == []


def test_duplicate_callback_gives_one_output_set(sandbox: Any, make_settings: Any, tmp_path: Path) -> None:
    vendor, api = sandbox
    with receiver(make_settings(**pm_env(api.url))) as live:
        # Same job and state, different bytes (a vendor retry may re-serialise): still one completion.
        assert post(live.url, callback(SEMANTIC_JOB)).status_code == 202
        second = post(live.url, json.dumps({"job_id": SEMANTIC_JOB, "project_id": SANDBOX_PROJECT}).encode())
        assert second.status_code == 200 and second.json()["duplicate"] is True
        wait_manifest(tmp_path, SEMANTIC_JOB)
        time.sleep(0.3)
    assert len(rows(tmp_path)) == 1
    assert len(vendor.requests_to(f"/v1/projects/{SANDBOX_PROJECT}/jobs/{SEMANTIC_JOB}")) == 1


def test_progress_callbacks_only_record_state(sandbox: Any, make_settings: Any, tmp_path: Path) -> None:
    vendor, api = sandbox
    settings = make_settings(**pm_env(api.url))
    with receiver(settings) as live:
        assert post(live.url, callback("job-open", "PENDING")).status_code == 202
        assert post(live.url, callback("job-bad", "FAILED", reason="bad image")).status_code == 202
        book = JobBook(open_store(settings.store_url))
        wait_for(lambda: book.get(SOURCE, "job-open") and book.get(SOURCE, "job-bad"), what="job records")
    assert book.get(SOURCE, "job-open").state == "open"  # type: ignore[union-attr]
    assert book.get(SOURCE, "job-bad").state == "failed"  # type: ignore[union-attr]
    assert vendor.requests_to("/v1/") == []  # nothing fetched for progress


def test_poll_pending_completed_failed(sandbox: Any, make_settings: Any, tmp_path: Path) -> None:
    vendor, api = sandbox
    vendor.add_job("pending-1", None, status="PENDING")
    vendor.add_job("failed-1", None, status="FAILED", reason="image unreadable")
    settings = make_settings(**pm_env(api.url))
    store = open_store(settings.store_url)
    book = JobBook(store)
    for job in ("pending-1", "failed-1", SEMANTIC_JOB):
        book.note(source=SOURCE, vendor="playment", job_id=job, project=SANDBOX_PROJECT, state="open")
    processor = PlaymentProcessor(settings.sources[SOURCE], settings)

    async def twice() -> list[Any]:
        queue = open_queue(settings.queue_url)
        try:
            return [await poll_source(settings, SOURCE, processor, queue, book) for _ in range(2)]
        finally:
            await queue.close()

    first, second = asyncio.run(twice())
    assert (first.checked, first.enqueued, first.still_open, first.failed) == (3, 1, 1, 1)
    assert (second.checked, second.enqueued, second.still_open) == (1, 0, 1)
    assert book.get(SOURCE, "pending-1").state == "open"  # type: ignore[union-attr]
    failed = book.get(SOURCE, "failed-1")
    assert failed is not None and failed.state == "failed" and failed.reason == "image unreadable"
    assert len(rows(tmp_path)) == 1
    # The enqueued completion is processed like a callback (without callback.json).
    with receiver(settings):
        wait_manifest(tmp_path, SEMANTIC_JOB)
    assert not (job_dir(tmp_path, SEMANTIC_JOB) / "callback.json").exists()
    assert (job_dir(tmp_path, SEMANTIC_JOB) / "masks" / "0" / "semantic.png").exists()


def test_submit_image_and_video_jobs(sandbox: Any, tmp_path: Path) -> None:
    vendor, api = sandbox
    jobs = [
        {
            "reference_id": "img-001",
            "work_flow_id": "wf-1",
            "data": {"image_url": "https://example.com/a.jpg"},
        },
        {
            "reference_id": "vid-001",
            "work_flow_id": "wf-1",
            "batch_id": "b-1",
            "data": {
                "video_data": {
                    "frames": [
                        {"frame_id": "frame1", "src": "https://example.com/1.jpg"},
                        {"frame_id": "frame2", "src": "https://example.com/2.jpg"},
                    ]
                }
            },
        },
    ]
    (tmp_path / "in.json").write_text(json.dumps(jobs))
    env = cli_env(tmp_path, **pm_env(api.url), LABELHOOK_PUBLIC_URL="https://hooks.example.com")
    proc = labelhook("submit", SOURCE, str(tmp_path / "in.json"), "--json", env=env, cwd=tmp_path)
    assert proc.wait(30) == 0, _log(tmp_path)
    assert [c["body"]["reference_id"] for c in vendor.created] == ["img-001", "vid-001"]
    for created in vendor.created:
        assert created["project_id"] == SANDBOX_PROJECT
        assert created["body"]["callback_url"] == "https://hooks.example.com/hooks/pm"
        assert "project_id" not in created["body"]
    assert len(vendor.created[1]["body"]["data"]["video_data"]["frames"]) == 2
    records = JobBook(open_store(f"file://{tmp_path}/out")).list(SOURCE)
    assert len(records) == 2 and all(r.state == "open" and r.project == SANDBOX_PROJECT for r in records)
    # The job API will not answer the input: its image URLs are kept for fetching the source images.
    assert sorted(list(r.meta["image_urls"].values()) for r in records) == sorted(
        [["https://example.com/a.jpg"], ["https://example.com/1.jpg", "https://example.com/2.jpg"]]
    )


def test_submit_invalid_input_exits_2_naming_the_field(sandbox: Any, tmp_path: Path) -> None:
    vendor, api = sandbox
    bad = {
        "reference_id": "vid-2",
        "work_flow_id": "wf-1",
        "data": {
            "video_data": {"frames": [{"frame_id": "f1", "src": "https://e.com/1.jpg"}, {"frame_id": "f2"}]}
        },
    }
    (tmp_path / "in.json").write_text(json.dumps(bad))
    env = cli_env(tmp_path, **pm_env(api.url))
    proc = labelhook("submit", SOURCE, str(tmp_path / "in.json"), env=env, cwd=tmp_path)
    assert proc.wait(30) == 2
    assert "data.video_data.frames[1].src" in _log(tmp_path)
    assert vendor.created == []


def _log(tmp_path: Path) -> str:
    return "".join(p.read_text() for p in tmp_path.glob("labelhook-*.log"))


def test_run_demo_produces_playment_outputs(tmp_path: Path) -> None:
    env = {k: v for k, v in cli_env(tmp_path).items() if not k.startswith("LABELHOOK_")}
    env["PORT"] = str(free_port())
    proc = labelhook("run", "--demo", env=env, cwd=tmp_path)
    try:
        base = tmp_path / "var" / "out" / "playment" / SANDBOX_PROJECT
        wait_for(lambda: (base / SEMANTIC_JOB / "manifest.json").exists(), timeout=20, what="demo outputs")
        wait_for(lambda: (base / VIDEO_JOB / "manifest.json").exists(), timeout=10, what="demo video")
    finally:
        proc.terminate()
        proc.wait(30)
    for name in (
        "masks/0/semantic.png",
        "masks/0/instances.png",
        "labelmap.json",
        "annotations.json",
        "result.json",
    ):
        assert (base / SEMANTIC_JOB / name).exists(), name
    assert (base / INSTANCE_JOB / "annotations.json").exists()
    assert (base / VIDEO_JOB / "masks" / "2" / "semantic.png").exists()


# -- pure pieces ---------------------------------------------------------------------------------------


def test_result_shapes_for_video() -> None:
    legend = {"#f23334": "Sky"}
    listed = plan_result([{"index": 2.0, "url": "u2", "legend": legend}, {"index": "0", "url": "u0"}])
    assert [(f.index, f.url) for f in listed.frames] == [(0, "u0"), (2, "u2")]
    assert listed.labels == {"legend": legend}
    nested = plan_result({"legend": legend, "results": [{"url": "a"}, {"url": "b"}]})
    assert [f.index for f in nested.frames] == [0, 1]
    assert plan_result({"boxes": []}).labels is None  # not a segmentation result
    with pytest.raises(Permanent, match="no mask url"):
        plan_result({"legend": legend})
    with pytest.raises(Permanent, match="frame #1"):
        plan_result({"frames": [{"url": "a"}, {"frame_index": -1, "url": "b"}]})


def test_lenient_callback_bodies() -> None:
    from processors.config import Secret, SourceConfig
    from receiver.errors import BadRequest
    from receiver.vendors import IncomingRequest
    from receiver.vendors.playment import PlaymentAdapter

    adapter = PlaymentAdapter(
        SourceConfig("pm", "playment", (Secret(KEY),), options=PlaymentOptions(project_id="p-opt"))
    )

    def verify(body: Any) -> Any:
        return adapter.verify(IncomingRequest({"x-playment-key": KEY}, {}, json.dumps(body).encode()), 0.0)

    top = verify({"id": 42.0, "status": "COMPLETED"})
    assert (top.job_id, top.project, top.kind, top.dedupe_key) == (
        "42",
        "p-opt",
        "callback",
        "pm:42:completed",
    )
    nested = verify({"data": {"job_id": "j", "project_id": "p", "status": "in_progress"}})
    assert (nested.kind, nested.meta["job_state"], nested.project) == ("state", "open", "p")
    with pytest.raises(BadRequest):
        verify({"data": {"status": "completed"}})
    assert RESULT_URL_BASE.startswith("https://")
