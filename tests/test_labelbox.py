"""Labelbox end to end: real uvicorn for labelhook and for a fake Labelbox on two origins (API, files).

The conformance case signs and posts Labelbox's webhook layout (tests/conformance/labelbox/) through
real HTTP intake; the worker runs the SDK's GraphQL export flow against the fake, downloads the
composite mask with the Bearer key (API origin only) and writes a pixel-checked output set.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import io
import json
import time
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
from processors.masks.raster import fill_polygon
from processors.queue import open_queue
from processors.store import open_store
from processors.vendors.labelbox.export import label_frames
from processors.worker import Worker
from receiver.app import create_app
from tests.fakes.labelbox import FakeLabelbox
from tests.support import ROOT, LiveServer, wait_for

SECRET = "lb-webhook-secret-0123456789"
API_KEY = "lb-test-key"
CONFORMANCE = ROOT / "tests" / "conformance" / "labelbox"
PROJECT, DATA_ROW, LABEL = (
    "ckproject0000000000000001",
    "ckdatarow0000000000000001",
    "cklabel00000000000000001",
)
MASK_PATH = "/api/v1/tasks/cktaskmask000000000000001/masks/ckcomposite0000000000001/index/1"
A, B, STRAY = (123, 103, 152), (142, 220, 196), (10, 20, 30)
W, H = 200, 180
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
        "LABELHOOK_FETCH_ALLOW_HOSTS": "127.0.0.1,localhost",
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
    vendor.add_row(PROJECT, row)
    png, truth = composite()
    vendor.add_mask(MASK_PATH, png)
    return row, truth, png


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
    settings = make_settings(**env(api.url, tmp_path))
    with start(settings) as live:
        first = post(live.url, raw, headers=None)
        again = post(live.url, raw, headers=None)  # a redelivery: same X-Labelbox-Id
        assert first.status_code == 202 and again.status_code == 200 and again.json()["duplicate"] is True
        manifest = wait_manifest(tmp_path)
    out = job_dir(tmp_path)
    assert (out / "callback.json").read_bytes() == raw
    assert json.loads((out / "result.json").read_bytes()) == row
    assert (out / "media" / "mask-1.png").read_bytes() == png
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
    settings = make_settings(**env(api.url, tmp_path))
    with start(settings) as live:
        assert post(live.url, raw, event="LABEL_UPDATED", headers=sha1_only).status_code == 202
        wait_manifest(tmp_path)
    check_output_set(job_dir(tmp_path), foreign, truth)
    [mask] = [s for s in vendor.seen if s.path == "/plain/composite.png"]
    assert mask.host == f"127.0.0.1:{files.port}" and "authorization" not in mask.headers


def test_bad_missing_or_mismatched_signatures_are_401(
    fake: tuple[FakeLabelbox, LiveServer, LiveServer], tmp_path: Path, make_settings: Any
) -> None:
    vendor, api, _ = fake
    raw = webhook_v1()
    good = signatures(raw)
    forged = signatures(raw, secret="not-the-secret")
    settings = make_settings(**env(api.url, tmp_path))
    with start(settings) as live:
        for headers in (
            {},
            forged,
            {
                "X-Hub-Signature-256": forged["X-Hub-Signature-256"],
                "X-Hub-Signature": good["X-Hub-Signature"],
            },
            {"X-Hub-Signature": "sha1=" + "0" * 40},
            {"X-Hub-Signature-256": good["X-Hub-Signature-256"][:-2]},
        ):
            reply = post(live.url, raw, headers=headers)
            assert reply.status_code == 401, headers
            assert set(reply.json()) == {"error", "detail"}
        tampered = raw.replace(LABEL.encode(), b"cklabel00000000000000002")
        assert post(live.url, tampered, headers=good).status_code == 401
        assert post(live.url, b"[1, 2", headers=signatures(b"[1, 2")).status_code == 400
        time.sleep(0.3)
    assert vendor.seen == []
    assert not (tmp_path / "out" / "labelbox").exists()


def test_review_events_are_recorded_and_unknown_events_dropped(
    fake: tuple[FakeLabelbox, LiveServer, LiveServer], tmp_path: Path, make_settings: Any
) -> None:
    vendor, api, _ = fake
    raw = webhook_v1()
    settings = make_settings(**env(api.url, tmp_path))
    book = JobBook(open_store(settings.store_url))
    with start(settings) as live:
        assert post(live.url, raw, event="REVIEW_CREATED", headers=None).status_code == 202
        ignored = post(live.url, raw, event="PROJECT_CREATED", delivery="dlv-2", headers=None)
        assert ignored.status_code == 200
        record = wait_for(lambda: book.get("labelbox", LABEL), what="job record")
    assert record.state == "open" and record.vendor_state == "REVIEW_CREATED"
    assert vendor.seen == []
    assert not list((tmp_path / "out").rglob("manifest.json"))


def test_expired_mask_url_is_a_dead_letter_that_says_masks_expire_after_30_days(
    fake: tuple[FakeLabelbox, LiveServer, LiveServer], tmp_path: Path, make_settings: Any
) -> None:
    vendor, api, _ = fake
    serve(vendor, api)
    vendor.add_mask(MASK_PATH, b"Forbidden", status=403)
    settings = make_settings(**env(api.url, tmp_path))
    with start(settings) as live:
        assert post(live.url, webhook_v1(), headers=None).status_code == 202
        letters = wait_for(lambda: dead_letters(settings), what="dead letter")
    reason = letters[LABEL]
    assert "403" in reason and "expire 30 days after the export" in reason
    assert API_KEY not in reason
    assert not (job_dir(tmp_path) / "manifest.json").exists()


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        ("corrupt-mask", "Labelbox media/mask-1.png: mask PNG is truncated"),
        ("wrong-size-mask", "is 20x10, but the data row's media is 200x180"),
        ("export-failed", "the export task failed"),
        ("label-missing", "is not in the export"),
        ("row-missing", "the export is empty"),
        ("bad-colour", "is not three bytes"),
    ],
)
def test_bad_vendor_data_is_a_dead_letter_with_its_reason(
    fake: tuple[FakeLabelbox, LiveServer, LiveServer],
    tmp_path: Path,
    make_settings: Any,
    setup: str,
    reason: str,
) -> None:
    vendor, api, _ = fake
    row, _, png = serve(vendor, api)
    objects = row["projects"][PROJECT]["labels"][0]["annotations"]["objects"]
    if setup == "corrupt-mask":
        vendor.add_mask(MASK_PATH, png[: len(png) // 2])
    elif setup == "wrong-size-mask":
        small = io.BytesIO()
        Image.new("RGB", (20, 10)).save(small, format="PNG")
        vendor.add_mask(MASK_PATH, small.getvalue())
    elif setup == "export-failed":
        vendor.fail_exports = True
    elif setup == "label-missing":
        row["projects"][PROJECT]["labels"][0]["id"] = "someone-else"
    elif setup == "row-missing":
        vendor.rows.clear()
    elif setup == "bad-colour":
        objects[1]["composite_mask"]["color_rgb"] = [142, 220, 396]
    settings = make_settings(**env(api.url, tmp_path))
    with start(settings) as live:
        assert post(live.url, webhook_v1(), headers=None).status_code == 202
        letters = wait_for(lambda: dead_letters(settings), what="dead letter")
    assert reason in letters[LABEL], letters[LABEL]
    assert not (job_dir(tmp_path) / "manifest.json").exists()


def test_export_task_in_progress_is_polled_until_complete(
    fake: tuple[FakeLabelbox, LiveServer, LiveServer], tmp_path: Path, make_settings: Any
) -> None:
    vendor, api, _ = fake
    vendor.polls_until_complete = 1  # one IN_PROGRESS answer: the worker waits the SDK's 2 s minimum
    row, truth, _ = serve(vendor, api)
    settings = make_settings(**env(api.url, tmp_path))
    with start(settings) as live:
        assert post(live.url, webhook_v1(), headers=None).status_code == 202
        wait_manifest(tmp_path)
    check_output_set(job_dir(tmp_path), row, truth)
    assert vendor.operations().count("GetUserCreatedTasksPyApi") == 2


def test_options_are_checked_at_start_up(make_settings: Any, tmp_path: Path) -> None:
    from processors.config import ConfigError

    with pytest.raises(ConfigError, match="EXPORT_POLL_SECONDS must be at least 2"):
        make_settings(**env("http://127.0.0.1:9", tmp_path, LABELHOOK_LABELBOX_EXPORT_POLL_SECONDS="0.5"))
    no_key = env("http://127.0.0.1:9", tmp_path)
    no_key.pop("LABELHOOK_LABELBOX_API_KEY")
    with pytest.raises(ConfigError, match="API_KEY is required"):
        make_settings(**no_key)


def test_video_frames_keep_each_feature_on_one_instance_number() -> None:
    url = "https://api.labelbox.com/api/v1/tasks/t/masks/m/index/{}"

    def obj(feature: str, colour: list[int], frame: int) -> dict[str, Any]:
        return {
            "feature_id": feature,
            "feature_schema_id": "schema-car",
            "name": "car",
            "annotation_kind": "VideoSegmentationMask",
            "composite_mask": {"url": url.format(frame), "color_rgb": colour},
        }

    label = {
        "id": "l",
        "annotations": {
            "frames": {
                "3": {"objects": {"f2": obj("f2", [0, 0, 255], 3)}},
                "1": {"objects": {"f1": obj("f1", [255, 0, 0], 1), "f2": obj("f2", [0, 0, 255], 1)}},
            }
        },
    }
    parsed = label_frames({}, label)
    assert list(parsed.frames) == [1, 3]
    assert [o.number for o in parsed.frames[1]] == [1, 2] and [o.number for o in parsed.frames[3]] == [2]
    assert parsed.frames[3][0].url == url.format(3)
    with pytest.raises(Permanent, match="not a frame number"):
        label_frames({}, {"annotations": {"frames": {"x": {}}}})


def test_adapter_reads_v1_and_v2_ids_and_refuses_label_events_it_cannot_fetch(make_settings: Any) -> None:
    from processors.config import SourceConfig
    from receiver.errors import BadRequest
    from receiver.vendors.base import IncomingRequest
    from receiver.vendors.labelbox import LabelboxAdapter

    def adapter(**extra: str) -> LabelboxAdapter:
        settings = make_settings(**env("http://127.0.0.1:9", Path("/nonexistent"), **extra))
        source: SourceConfig = settings.sources["labelbox"]
        return LabelboxAdapter(source)

    def verify(target: LabelboxAdapter, body: Any, event: str = "LABEL_UPDATED") -> Any:
        raw = json.dumps(body).encode()
        headers = {k.lower(): v for k, v in signatures(raw).items()} | {"x-labelbox-event": event}
        return target.verify(IncomingRequest(headers, {}, raw), now=0.0)

    v2 = export_row("https://api.labelbox.com")
    got = verify(adapter(), v2)
    assert (got.job_id, got.project, got.meta["data_row_id"], got.meta["project_id"]) == (
        LABEL,
        PROJECT,
        DATA_ROW,
        PROJECT,
    )
    assert got.meta["delivery"] == hashlib.sha256(json.dumps(v2).encode()).hexdigest()[:32]
    no_project = {"id": LABEL, "dataRow": {"id": DATA_ROW}}
    with pytest.raises(BadRequest, match="no project id"):
        verify(adapter(), no_project)
    configured = verify(adapter(LABELHOOK_LABELBOX_PROJECT_ID="proj-x"), no_project)
    assert configured.project == "proj-x" and configured.meta["project_id"] == "proj-x"
    deleted = verify(adapter(), {"id": LABEL}, event="LABEL_DELETED")
    assert deleted.kind == "state" and deleted.state == "LABEL_DELETED" and deleted.job_id == LABEL
