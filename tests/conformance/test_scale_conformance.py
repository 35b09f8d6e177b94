"""Scale conformance: its callback layouts through real HTTP intake, decoded by index, pixel-checked.

Real uvicorn for labelhook, for the fake Scale API and for its public results bucket (two origins).
The payloads are in payloads/scale/ (provenance in README.md); the helpers here are shared with
tests/test_scale.py, which holds the bad-input cases.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from processors.config import Settings
from processors.queue import open_queue
from processors.store import open_store
from processors.worker import Worker
from receiver.app import create_app
from tests.fakes.scale import FakeScale
from tests.support import LiveServer, loopback_origins, wait_for

AUTH_KEY = "scale-live-callback-auth-key-0123"
API_KEY = "live_test_key"
CONFORMANCE = Path(__file__).parent / "payloads" / "scale"
TASK_ID = "5774cc78b01249ab09f089dd"
H, W = 8, 12
PHOTO = "attachment-kitchen.jpg"
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


@pytest.fixture
def fake() -> Iterator[tuple[FakeScale, LiveServer, LiveServer]]:
    """One fake, served twice: the API origin and the public results bucket (another port)."""
    vendor = FakeScale(api_key=API_KEY)
    with LiveServer(vendor.app) as api, LiveServer(vendor.app) as bucket:
        yield vendor, api, bucket


def env(api_url: str | None, tmp_path: Path, *origins: str, **extra: str) -> dict[str, str]:
    """``origins``: the fake servers' URLs, allow-listed for fetching (host:port entries)."""
    base = {
        "LABELHOOK_QUEUE": f"sqlite:///{tmp_path}/queue.db",
        "LABELHOOK_STORE": f"file://{tmp_path}/out",
        "LABELHOOK_SOURCES": "scale",
        "LABELHOOK_SCALE_SECRET": AUTH_KEY,
        "LABELHOOK_FETCH_ALLOW_HOSTS": ",".join(loopback_origins(url) for url in origins),
        "LABELHOOK_RETRY_BASE_SECONDS": "0.05",
        "LABELHOOK_LEASE_SECONDS": "5",
    }
    if api_url:
        base.update(LABELHOOK_SCALE_API_KEY=API_KEY, LABELHOOK_SCALE_API_URL=api_url)
    base.update(extra)
    return base


def start(settings: Settings) -> LiveServer:
    queue = open_queue(settings.queue_url)
    store = open_store(settings.store_url)
    return LiveServer(
        create_app(settings, queue, store, worker=Worker(settings, queue, store, drain_seconds=5))
    )


def post(url: str, body: Any, *, auth: str | None = AUTH_KEY) -> httpx.Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"content-type": "application/json"}
    if auth is not None:
        headers["scale-callback-auth"] = auth
    return httpx.post(f"{url}/hooks/scale", content=raw, headers=headers, timeout=10)


def dead_letters(settings: Settings) -> dict[str, str]:
    async def read() -> dict[str, str]:
        queue = open_queue(settings.queue_url)
        try:
            return {d.job_id: d.last_error or "" for d in await queue.dead_letters()}
        finally:
            await queue.close()

    return asyncio.run(read())


def job_dir(tmp_path: Path, job_id: str, project: str = "scale") -> Path:
    return tmp_path / "out" / "scale" / project / job_id


def wait_manifest(tmp_path: Path, job_id: str, project: str = "scale") -> dict[str, Any]:
    path = job_dir(tmp_path, job_id, project) / "manifest.json"
    raw = wait_for(lambda: path.exists() and path.read_bytes(), timeout=20, what=f"manifest of {job_id}")
    manifest: dict[str, Any] = json.loads(raw)
    return manifest


def index_truth() -> np.ndarray:
    """The index of every pixel: road 1, sky 2, two cars 3 and 4 (both drawn blue), 0 unlabeled."""
    index = np.zeros((H, W), dtype=np.uint32)
    index[0:3, :] = 2  # sky
    index[5:8, :] = 1  # road
    index[3:6, 1:4] = 3  # car #1 over the road
    index[3:6, 7:11] = 4  # car #2, same colour as car #1 in labelMapping
    return index


def png(array: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    (Image.fromarray(array) if mode is None else Image.fromarray(array, mode)).save(buffer, format="PNG")
    return buffer.getvalue()


def indexed_png(index: np.ndarray) -> bytes:
    return png(index.astype(np.uint8), "L")


def extended_png(index: np.ndarray) -> bytes:
    rgba = np.zeros((*index.shape, 4), dtype=np.uint8)
    rgba[..., 0] = index & 0xFF
    rgba[..., 1] = (index >> 8) & 0xFF
    rgba[..., 2] = (index >> 16) & 0xFF
    rgba[..., 3] = np.where(index > 0, 255, 0)
    return png(rgba, "RGBA")


def conformance_callback(api: LiveServer, bucket: LiveServer) -> dict[str, Any]:
    """The conformance payload with Scale's origins pointed at the fakes (paths and ids unchanged)."""
    body = json.loads((CONFORMANCE / "callback_segmentation.reconstructed.json").read_bytes())
    body.pop("_provenance")
    text = json.dumps(body)
    text = text.replace("https://scaleapi-results.s3.us-west-1.amazonaws.com/", f"{bucket.url}/results/")
    text = text.replace("https://api.scale.com/", f"{api.url}/")
    text = text.replace("https://example.com/image.png", f"{bucket.url}/results/{PHOTO}")  # params.attachment
    result: dict[str, Any] = json.loads(text)
    return result


def serve_task(vendor: FakeScale, body: dict[str, Any]) -> np.ndarray:
    truth = index_truth()
    vendor.add_task(copy.deepcopy(body["task"]))
    vendor.add_file("00000000-0000-0000-0000-000000000007", indexed_png(truth))
    vendor.add_file("00000000-0000-0000-0000-000000000008", extended_png(truth))
    vendor.add_file("00000000-0000-0000-0000-000000000006", b"colour image: never used for masks")
    vendor.add_file(PHOTO, photo())
    return truth


def photo() -> bytes:
    """The task's attachment: a JPEG the size of the index images."""
    buffer = io.BytesIO()
    Image.new("RGB", (W, H), (90, 120, 150)).save(buffer, format="JPEG")
    return buffer.getvalue()


def check_output_set(out: Path, truth: np.ndarray) -> None:
    labelmap = {e["name"]: e for e in json.loads((out / "labelmap.json").read_bytes())}
    assert [e["name"] for e in sorted(labelmap.values(), key=lambda e: e["id"])] == [
        "unlabeled",
        "road",
        "sky",
        "car",
    ]
    instances = np.array(Image.open(out / "masks" / "0" / "instances.png"))
    # Segments are numbered in labelMapping order: road 1, sky 2, car #1 (index 3) 3, car #2 (index 4) 4.
    assert (instances == truth).all()
    semantic = np.array(Image.open(out / "masks" / "0" / "semantic.png"))
    expected = np.zeros_like(semantic)
    for index, name in ((1, "road"), (2, "sky"), (3, "car"), (4, "car")):
        expected[truth == index] = labelmap[name]["id"]
    assert (semantic == expected).all()
    coco = json.loads((out / "annotations.json").read_bytes())
    by_index = {a["instance_id"]: a for a in coco["annotations"]}
    assert sorted(by_index) == ["1", "2", "3", "4"]
    for index in (1, 2, 3, 4):
        record = by_index[str(index)]
        decoded = coco_mask.decode(record["segmentation"]).astype(bool)
        assert (decoded == (truth == index)).all()
        assert record["area"] == int((truth == index).sum())
    # Two instances, one colour: told apart by index, both blue.
    assert by_index["3"]["color"] == by_index["4"]["color"] == "#0000ff"
    assert by_index["3"]["category_id"] == by_index["4"]["category_id"] == labelmap["car"]["id"]
    assert [c["name"] for c in coco["categories"]] == ["road", "sky", "car"]


def test_conformance_segmentation_callback_secure_url_end_to_end(
    fake: tuple[FakeScale, LiveServer, LiveServer], tmp_path: Path, make_settings: Any
) -> None:
    vendor, api, bucket = fake
    body = conformance_callback(api, bucket)
    truth = serve_task(vendor, body)
    settings = make_settings(**env(api.url, tmp_path, api.url, bucket.url))
    with start(settings) as live:
        first = post(live.url, body)
        second = post(live.url, body)  # Scale retries until it sees a 2xx
        assert first.status_code == 202 and first.json()["duplicate"] is False
        assert second.status_code == 200 and second.json()["duplicate"] is True
        manifest = wait_manifest(tmp_path, TASK_ID)
    out = job_dir(tmp_path, TASK_ID)
    assert json.loads((out / "callback.json").read_bytes()) == body
    assert json.loads((out / "task.json").read_bytes()) == body["task"]
    assert json.loads((out / "result.json").read_bytes()) == body["response"]
    assert (out / "media" / "extendedIndexedImage.png").read_bytes() == extended_png(truth)
    check_output_set(out, truth)
    assert manifest["scale"]["index_image"] == "extendedIndexedImage"
    assert manifest["scale"]["unknown_indexes"] == {}
    assert manifest["segmentation"]["annotations"] == 4 and manifest["segmentation"]["frames"] == 1
    assert [f["path"] for f in manifest["files"]][-1] != "manifest.json"  # manifest lists the others
    # The live key went to the API origin only (task and secure URL), as HTTP Basic with no password.
    basic = "Basic " + base64.b64encode(f"{API_KEY}:".encode()).decode()
    assert [s.headers["authorization"] for s in vendor.requests_to("/v1/task/")] == [basic, basic]
    assert {s.host for s in vendor.requests_to("/v1/task/")} == {f"127.0.0.1:{api.port}"}
    # The attachment (the customer's image) is fetched without the key; the colour image never is.
    [attachment] = vendor.requests_to("/results/")
    assert attachment.path == f"/results/{PHOTO}" and "authorization" not in attachment.headers
    assert (out / "images" / "0.jpg").read_bytes() == photo()
    coco = json.loads((out / "annotations.json").read_bytes())
    assert coco["images"][0]["file_name"] == "images/0.jpg"


def test_public_result_url_is_fetched_without_the_key(
    fake: tuple[FakeScale, LiveServer, LiveServer], tmp_path: Path, make_settings: Any
) -> None:
    vendor, api, bucket = fake
    body = conformance_callback(api, bucket)
    truth = serve_task(vendor, body)
    settings = make_settings(
        **env(api.url, tmp_path, api.url, bucket.url, LABELHOOK_SCALE_INDEX_IMAGE="indexed")
    )
    with start(settings) as live:
        assert post(live.url, body).status_code == 202
        manifest = wait_manifest(tmp_path, TASK_ID)
    assert manifest["scale"]["index_image"] == "indexedImage"
    check_output_set(job_dir(tmp_path, TASK_ID), truth)
    [fetched] = [s for s in vendor.requests_to("/results/") if s.path.endswith("-000000000007")]
    assert fetched.host == f"127.0.0.1:{bucket.port}" and "authorization" not in fetched.headers


def test_categorization_docs_callback_is_stored_without_masks(
    fake: tuple[FakeScale, LiveServer, LiveServer], tmp_path: Path, make_settings: Any
) -> None:
    vendor, api, _ = fake
    raw = (CONFORMANCE / "callback_categorization.docs.json").read_bytes()  # Scale's docs example, verbatim
    body = json.loads(raw)
    vendor.add_task(body["task"])
    settings = make_settings(**env(api.url, tmp_path, api.url))
    with start(settings) as live:
        assert post(live.url, raw).status_code == 202
        manifest = wait_manifest(tmp_path, body["task_id"])
    out = job_dir(tmp_path, body["task_id"])
    assert (out / "callback.json").read_bytes() == raw
    assert json.loads((out / "result.json").read_bytes()) == {"category": "red"}
    assert manifest["scale"] == {"task_type": "categorization", "status": "completed"}
    assert not (out / "masks").exists()
