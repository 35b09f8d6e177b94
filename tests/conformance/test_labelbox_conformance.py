"""Labelbox conformance: its webhook layouts through real HTTP intake, the SDK's export flow, pixel-checked.

Real uvicorn for labelhook and for a fake Labelbox on two origins (API, files). The payloads are in
payloads/labelbox/ (provenance in README.md); the helpers here are shared with tests/test_labelbox.py,
which holds the bad-input cases.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
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
from processors.masks.raster import fill_polygon
from processors.queue import open_queue
from processors.store import open_store
from processors.worker import Worker
from receiver.app import create_app
from tests.fakes.labelbox import FakeLabelbox
from tests.support import LiveServer, loopback_origins, wait_for

SECRET = "lb-webhook-secret-0123456789"
API_KEY = "lb-test-key"
CONFORMANCE = Path(__file__).parent / "payloads" / "labelbox"
PROJECT, DATA_ROW, LABEL = (
    "ckproject0000000000000001",
    "ckdatarow0000000000000001",
    "cklabel00000000000000001",
)
MASK_PATH = "/api/v1/tasks/cktaskmask000000000000001/masks/ckcomposite0000000000001/index/1"
A, B, STRAY = (123, 103, 152), (142, 220, 196), (10, 20, 30)
W, H = 200, 180
PHOTO = "photo.jpg"
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


@pytest.fixture
def fake() -> Iterator[tuple[FakeLabelbox, LiveServer, LiveServer]]:
    """One fake, served twice: the API origin and the files origin (another port)."""
    vendor = FakeLabelbox(api_key=API_KEY, polls_until_complete=0)
    with LiveServer(vendor.app) as api, LiveServer(vendor.app) as files:
        vendor.files_url = files.url
        yield vendor, api, files


def env(api_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    base = {
        "LABELHOOK_QUEUE": f"sqlite:///{tmp_path}/queue.db",
        "LABELHOOK_STORE": f"file://{tmp_path}/out",
        "LABELHOOK_SOURCES": "labelbox",
        "LABELHOOK_LABELBOX_SECRET": SECRET,
        "LABELHOOK_LABELBOX_API_KEY": API_KEY,
        "LABELHOOK_LABELBOX_API_URL": api_url,
        "LABELHOOK_FETCH_ALLOW_HOSTS": loopback_origins(api_url),  # plus the files origin, per call
        "LABELHOOK_RETRY_BASE_SECONDS": "0.05",
        "LABELHOOK_LEASE_SECONDS": "10",
    }
    base.update(extra)
    return base


def start(settings: Settings) -> LiveServer:
    queue = open_queue(settings.queue_url)
    store = open_store(settings.store_url)
    return LiveServer(
        create_app(settings, queue, store, worker=Worker(settings, queue, store, drain_seconds=5))
    )


def signatures(raw: bytes, secret: str = SECRET) -> dict[str, str]:
    """Both headers as Labelbox computes them (its receiver examples: hmac over the raw body)."""
    return {
        "X-Hub-Signature": "sha1=" + hmac.new(secret.encode(), raw, hashlib.sha1).hexdigest(),
        "X-Hub-Signature-256": "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest(),
    }


def post(
    url: str,
    raw: bytes,
    *,
    event: str = "LABEL_CREATED",
    delivery: str = "dlv-1",
    headers: dict[str, str] | None,
) -> httpx.Response:
    sent = {"content-type": "application/json", "x-labelbox-event": event, "x-labelbox-id": delivery}
    sent.update(signatures(raw) if headers is None else headers)
    return httpx.post(f"{url}/hooks/labelbox", content=raw, headers=sent, timeout=10)


def webhook_v1() -> bytes:
    """The v1 webhook body of the conformance file, placeholders filled in."""
    body = json.loads((CONFORMANCE / "label_created_v1.reconstructed.json").read_bytes())["body_v1"]
    text = json.dumps(body).replace("<label id>", LABEL).replace("<data row id>", DATA_ROW)
    return text.replace("<project id>", PROJECT).encode()


def export_row(api_url: str) -> dict[str, Any]:
    """The conformance export v2 row with our ids and the composite URL on the fake's API origin."""
    document = json.loads((CONFORMANCE / "export_v2_row.reconstructed.json").read_bytes())
    text = json.dumps(document["row"])
    for placeholder, value in (
        ("<project_id>", PROJECT),
        ("<data_row_id>", DATA_ROW),
        ("<label_id>", LABEL),
        ("<second_feature_id>", "clpk3ow9u006f14vs2w5qa9m4"),
        (
            "https://api.labelbox.com/api/v1/tasks/{task_id}/masks/{composite_mask_id}/index/1",
            api_url + MASK_PATH,
        ),
    ):
        text = text.replace(placeholder, value)
    row: dict[str, Any] = json.loads(text)
    return row


def composite() -> tuple[bytes, dict[str, np.ndarray]]:
    """A composite mask (RGB, black background) and each instance's pixels, drawn independently."""
    rgb = np.zeros((H, W, 3), dtype=np.uint8)
    truth = {name: np.zeros((H, W), dtype=bool) for name in ("a", "b", "stray")}
    for (y0, y1, x0, x1), colour, name in (
        ((10, 60, 10, 90), A, "a"),
        ((120, 170, 100, 190), B, "b"),
        ((0, 2, 198, 200), STRAY, "stray"),
    ):
        rgb[y0:y1, x0:x1] = colour
        truth[name][y0:y1, x0:x1] = True
    buffer = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buffer, format="PNG")
    return buffer.getvalue(), truth


def expected_instances(row: dict[str, Any], truth: dict[str, np.ndarray]) -> np.ndarray:
    """Masks first, then the box, then the polygon on top (export order), as documented."""
    instances = np.zeros((H, W), dtype=np.uint16)
    instances[truth["a"]] = 1
    instances[truth["b"]] = 2
    instances[48:113, 58:70] = 3  # bounding_box top 48, left 58, height 65, width 12: centres inside
    objects = row["projects"][PROJECT]["labels"][0]["annotations"]["objects"]
    polygon = [(p["x"], p["y"]) for p in objects[3]["polygon"]]
    instances[fill_polygon(polygon, W, H)] = 4
    return instances


def job_dir(tmp_path: Path, job_id: str = LABEL) -> Path:
    return tmp_path / "out" / "labelbox" / PROJECT / job_id


def wait_manifest(tmp_path: Path, job_id: str = LABEL) -> dict[str, Any]:
    path = job_dir(tmp_path, job_id) / "manifest.json"
    raw = wait_for(lambda: path.exists() and path.read_bytes(), timeout=20, what=f"manifest of {job_id}")
    manifest: dict[str, Any] = json.loads(raw)
    return manifest


def dead_letters(settings: Settings) -> dict[str, str]:
    async def read() -> dict[str, str]:
        queue = open_queue(settings.queue_url)
        try:
            return {d.job_id: d.last_error or "" for d in await queue.dead_letters()}
        finally:
            await queue.close()

    return asyncio.run(read())


def serve(vendor: FakeLabelbox, api: LiveServer) -> tuple[dict[str, Any], dict[str, np.ndarray], bytes]:
    row = export_row(api.url)
    row["data_row"]["row_data"] = f"{vendor.files_url}/plain/{PHOTO}"  # the docs' example.com image, served
    vendor.add_mask(f"/plain/{PHOTO}", photo())
    vendor.add_row(PROJECT, row)
    png, truth = composite()
    vendor.add_mask(MASK_PATH, png)
    return row, truth, png


def photo() -> bytes:
    """The data row's image: a JPEG the size of the composite mask."""
    buffer = io.BytesIO()
    Image.new("RGB", (W, H), (200, 180, 160)).save(buffer, format="JPEG")
    return buffer.getvalue()


def check_output_set(out: Path, row: dict[str, Any], truth: dict[str, np.ndarray]) -> dict[str, Any]:
    labelmap = {e["name"]: e for e in json.loads((out / "labelmap.json").read_bytes())}
    assert [(e["id"], e["name"]) for e in json.loads((out / "labelmap.json").read_bytes())] == [
        (0, "unlabeled"),
        (1, "mask"),
        (2, "bbox"),
        (3, "polygon"),
    ]
    assert labelmap["mask"]["class_id"] == "clpk3nvrv05bh08ua8fwqavng"
    expected = expected_instances(row, truth)
    instances = np.array(Image.open(out / "masks" / "0" / "instances.png"))
    assert (instances == expected).all()
    semantic = np.array(Image.open(out / "masks" / "0" / "semantic.png"))
    assert (semantic == np.array([0, 1, 1, 2, 3])[expected]).all()
    coco: dict[str, Any] = json.loads((out / "annotations.json").read_bytes())
    by_number = {a["instance_number"]: a for a in coco["annotations"]}
    assert sorted(by_number) == [1, 2, 3, 4]
    for number, record in by_number.items():
        decoded = coco_mask.decode(record["segmentation"]).astype(bool)
        assert (decoded == (expected == number)).all()
        assert record["area"] == int((expected == number).sum())
    assert by_number[1]["instance_id"] == "clpk3ow9u006f14vs2w5qa9l3" and by_number[1]["color"] == "#7b6798"
    assert by_number[2]["color"] == "#8edcc4"
    assert coco["images"][0]["width"] == W and coco["images"][0]["height"] == H
    return coco


def test_conformance_label_created_end_to_end_key_only_on_the_api_origin(
    fake: tuple[FakeLabelbox, LiveServer, LiveServer], tmp_path: Path, make_settings: Any
) -> None:
    vendor, api, files = fake
    vendor.chunk_size, vendor.extra_rows = 64, 3  # several chunks, the row in the last one
    row, truth, png = serve(vendor, api)
    raw = webhook_v1()
    settings = make_settings(
        **env(api.url, tmp_path, LABELHOOK_LABELBOX_FETCH_ALLOW=loopback_origins(files.url))
    )
    with start(settings) as live:
        first = post(live.url, raw, headers=None)
        again = post(live.url, raw, headers=None)  # a redelivery: same X-Labelbox-Id
        assert first.status_code == 202 and again.status_code == 200 and again.json()["duplicate"] is True
        manifest = wait_manifest(tmp_path)
    out = job_dir(tmp_path)
    assert (out / "callback.json").read_bytes() == raw
    assert json.loads((out / "result.json").read_bytes()) == row
    assert (out / "media" / "mask-1.png").read_bytes() == png
    assert (out / "images" / "0.jpg").read_bytes() == photo()
    assert json.loads((out / "annotations.json").read_bytes())["images"][0]["file_name"] == "images/0.jpg"
    check_output_set(out, row, truth)
    assert manifest["labelbox"]["unknown_colors"] == {"#0a141e": int(truth["stray"].sum())}
    assert manifest["labelbox"]["skipped"] == {}
    assert manifest["labelbox"]["event"] == "LABEL_CREATED"
    # The SDK's operations, in order; one export task for the data row.
    operations = vendor.operations()
    assert operations[:4] == [
        "exportDataRowsInProjectPyApi",
        "GetUserPyApi",
        "GetUserCreatedTasksPyApi",
        "GetExportMetadataHeaderPyApi",
    ]
    assert operations.count("GetExportFileFromOffsetPyApi") >= 2
    # The key: on every GraphQL call and the mask (API origin); never on the export files (files origin).
    on_api = [s for s in vendor.seen if s.host == f"127.0.0.1:{api.port}"]
    on_files = [s for s in vendor.seen if s.host == f"127.0.0.1:{files.port}"]
    assert on_api and all(s.headers.get("authorization") == f"Bearer {API_KEY}" for s in on_api)
    assert on_files and all("authorization" not in s.headers for s in on_files)
    assert [s.path for s in on_api if not s.path.startswith("/graphql")] == [MASK_PATH]


def test_a_mask_url_on_another_origin_gets_no_key_and_v2_bodies_and_sha1_alone_work(
    fake: tuple[FakeLabelbox, LiveServer, LiveServer], tmp_path: Path, make_settings: Any
) -> None:
    vendor, api, files = fake
    row, truth, png = serve(vendor, api)
    foreign = copy.deepcopy(row)
    for obj in foreign["projects"][PROJECT]["labels"][0]["annotations"]["objects"][:2]:
        obj["composite_mask"]["url"] = f"{files.url}/plain/composite.png"
    vendor.add_row(PROJECT, foreign)
    vendor.add_mask("/plain/composite.png", png)
    raw = json.dumps(foreign).encode()  # the v2 webhook mimics an export row
    sha1_only = {"X-Hub-Signature": signatures(raw)["X-Hub-Signature"]}
    settings = make_settings(
        **env(api.url, tmp_path, LABELHOOK_LABELBOX_FETCH_ALLOW=loopback_origins(files.url))
    )
    with start(settings) as live:
        assert post(live.url, raw, event="LABEL_UPDATED", headers=sha1_only).status_code == 202
        wait_manifest(tmp_path)
    check_output_set(job_dir(tmp_path), foreign, truth)
    [mask] = [s for s in vendor.seen if s.path == "/plain/composite.png"]
    assert mask.host == f"127.0.0.1:{files.port}" and "authorization" not in mask.headers
