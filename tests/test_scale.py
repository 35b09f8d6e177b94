"""Scale end to end: real uvicorn for labelhook, for the fake Scale API and for its results bucket.

The conformance case posts Scale's callback layout (tests/conformance/scale/) through real HTTP intake;
the worker re-reads the task from the fake API and decodes the index image by index, pixel-checked.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import io
import json
import subprocess
import sys
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
from processors.masks.indexed import read_index_image
from processors.queue import open_queue
from processors.store import open_store
from processors.vendors.scale.result import parse_label_mapping
from processors.worker import Worker
from receiver.app import create_app
from tests.fakes.scale import FakeScale
from tests.support import ROOT, LiveServer, cli_env, wait_for

AUTH_KEY = "scale-live-callback-auth-key-0123"
API_KEY = "live_test_key"
CONFORMANCE = ROOT / "tests" / "conformance" / "scale"
TASK_ID = "5774cc78b01249ab09f089dd"
H, W = 8, 12
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


@pytest.fixture
def fake() -> Iterator[tuple[FakeScale, LiveServer, LiveServer]]:
    """One fake, served twice: the API origin and the public results bucket (another port)."""
    vendor = FakeScale(api_key=API_KEY)
    with LiveServer(vendor.app) as api, LiveServer(vendor.app) as bucket:
        yield vendor, api, bucket


def env(api_url: str | None, tmp_path: Path, **extra: str) -> dict[str, str]:
    base = {
        "LABELHOOK_QUEUE": f"sqlite:///{tmp_path}/queue.db",
        "LABELHOOK_STORE": f"file://{tmp_path}/out",
        "LABELHOOK_SOURCES": "scale",
        "LABELHOOK_SCALE_SECRET": AUTH_KEY,
        "LABELHOOK_FETCH_ALLOW_HOSTS": "127.0.0.1,localhost",
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
    result: dict[str, Any] = json.loads(text)
    return result


def serve_task(vendor: FakeScale, body: dict[str, Any]) -> np.ndarray:
    truth = index_truth()
    vendor.add_task(copy.deepcopy(body["task"]))
    vendor.add_file("00000000-0000-0000-0000-000000000007", indexed_png(truth))
    vendor.add_file("00000000-0000-0000-0000-000000000008", extended_png(truth))
    vendor.add_file("00000000-0000-0000-0000-000000000006", b"colour image: never used for masks")
    return truth


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
    settings = make_settings(**env(api.url, tmp_path))
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
    assert vendor.requests_to("/results/") == []  # the colour image is never fetched


def test_public_result_url_is_fetched_without_the_key(
    fake: tuple[FakeScale, LiveServer, LiveServer], tmp_path: Path, make_settings: Any
) -> None:
    vendor, api, bucket = fake
    body = conformance_callback(api, bucket)
    truth = serve_task(vendor, body)
    settings = make_settings(**env(api.url, tmp_path, LABELHOOK_SCALE_INDEX_IMAGE="indexed"))
    with start(settings) as live:
        assert post(live.url, body).status_code == 202
        manifest = wait_manifest(tmp_path, TASK_ID)
    assert manifest["scale"]["index_image"] == "indexedImage"
    check_output_set(job_dir(tmp_path, TASK_ID), truth)
    [fetched] = vendor.requests_to("/results/")
    assert fetched.host == f"127.0.0.1:{bucket.port}" and "authorization" not in fetched.headers


def test_without_an_api_key_the_callbacks_own_response_is_used(
    fake: tuple[FakeScale, LiveServer, LiveServer], tmp_path: Path, make_settings: Any
) -> None:
    vendor, api, bucket = fake
    body = conformance_callback(api, bucket)
    truth = serve_task(vendor, body)
    vendor.tasks.clear()  # the API is not asked
    body["response"]["annotations"]["combined"].pop("extendedIndexedImage")
    body["task"]["response"] = body["response"]
    settings = make_settings(**env(None, tmp_path))
    with start(settings) as live:
        assert post(live.url, body).status_code == 202
        wait_manifest(tmp_path, TASK_ID)
    check_output_set(job_dir(tmp_path, TASK_ID), truth)
    assert vendor.requests_to("/v1/") == []
    assert not (job_dir(tmp_path, TASK_ID) / "task.json").exists()


def test_missing_or_wrong_callback_auth_is_401_and_nothing_is_queued(
    fake: tuple[FakeScale, LiveServer, LiveServer], tmp_path: Path, make_settings: Any
) -> None:
    vendor, api, bucket = fake
    body = conformance_callback(api, bucket)
    settings = make_settings(**env(api.url, tmp_path))
    with start(settings) as live:
        for auth in (None, "", "wrong-key", AUTH_KEY + "x", AUTH_KEY[:-1]):
            reply = post(live.url, body, auth=auth)
            assert reply.status_code == 401, auth
            assert set(reply.json()) == {"error", "detail"}
        reply = post(live.url, b"{not json", auth=AUTH_KEY)
        assert reply.status_code == 400 and reply.json()["error"] == "malformed_body"
        assert post(live.url, {"response": {}}, auth=AUTH_KEY).status_code == 400  # no task_id
        time.sleep(0.3)
    assert vendor.seen == []
    assert not (tmp_path / "out" / "scale").exists()


def test_categorization_docs_callback_is_stored_without_masks(
    fake: tuple[FakeScale, LiveServer, LiveServer], tmp_path: Path, make_settings: Any
) -> None:
    vendor, api, _ = fake
    raw = (CONFORMANCE / "callback_categorization.docs.json").read_bytes()  # Scale's docs example, verbatim
    body = json.loads(raw)
    vendor.add_task(body["task"])
    settings = make_settings(**env(api.url, tmp_path))
    with start(settings) as live:
        assert post(live.url, raw).status_code == 202
        manifest = wait_manifest(tmp_path, body["task_id"])
    out = job_dir(tmp_path, body["task_id"])
    assert (out / "callback.json").read_bytes() == raw
    assert json.loads((out / "result.json").read_bytes()) == {"category": "red"}
    assert manifest["scale"] == {"task_type": "categorization", "status": "completed"}
    assert not (out / "masks").exists()


@pytest.mark.parametrize(
    ("image", "reason"),
    [
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, "corrupt PNG"),
        (b"GIF89a not a png", "is not a PNG image"),
        (png(np.zeros((H, W, 3), dtype=np.uint8), "RGB"), "pixel mode RGB; expected a 1-channel PNG"),
    ],
    ids=["truncated", "not-png", "rgb-as-indexed"],
)
def test_undecodable_index_image_is_a_dead_letter_with_its_reason(
    fake: tuple[FakeScale, LiveServer, LiveServer],
    tmp_path: Path,
    make_settings: Any,
    image: bytes,
    reason: str,
) -> None:
    vendor, api, bucket = fake
    body = conformance_callback(api, bucket)
    serve_task(vendor, body)
    vendor.add_file("00000000-0000-0000-0000-000000000007", image)
    settings = make_settings(**env(api.url, tmp_path, LABELHOOK_SCALE_INDEX_IMAGE="indexed"))
    with start(settings) as live:
        assert post(live.url, body).status_code == 202
        letters = wait_for(lambda: dead_letters(settings), what="dead letter")
    assert reason in letters[TASK_ID] and "Scale indexedImage" in letters[TASK_ID]
    assert not (job_dir(tmp_path, TASK_ID) / "manifest.json").exists()


def test_refused_secure_url_and_recalled_task_are_dead_letters_with_reasons(
    fake: tuple[FakeScale, LiveServer, LiveServer], tmp_path: Path, make_settings: Any
) -> None:
    vendor, api, bucket = fake
    body = conformance_callback(api, bucket)
    serve_task(vendor, body)
    vendor.add_file("00000000-0000-0000-0000-000000000008", b"<Error/>", status=403)
    recalled = copy.deepcopy(body)
    recalled["task_id"] = recalled["task"]["task_id"] = "recalled-1"
    vendor.add_task({**copy.deepcopy(body["task"]), "task_id": "recalled-1", "status": "pending"})
    settings = make_settings(**env(api.url, tmp_path))
    with start(settings) as live:
        assert post(live.url, body).status_code == 202
        assert post(live.url, recalled).status_code == 202
        letters = wait_for(lambda: len(d := dead_letters(settings)) == 2 and d, what="two dead letters")
    assert "403" in letters[TASK_ID] and "secure result URL needs the live API key" in letters[TASK_ID]
    assert "is 'pending' now" in letters["recalled-1"]
    assert not any(API_KEY in reason for reason in letters.values())


def test_unknown_index_is_left_unlabeled_and_counted(
    fake: tuple[FakeScale, LiveServer, LiveServer], tmp_path: Path, make_settings: Any
) -> None:
    vendor, api, bucket = fake
    body = conformance_callback(api, bucket)
    truth = serve_task(vendor, body)
    odd = truth.copy()
    odd[0, 0:2] = 70000  # not in labelMapping; needs the 24-bit image
    vendor.add_file("00000000-0000-0000-0000-000000000008", extended_png(odd))
    settings = make_settings(**env(api.url, tmp_path))
    with start(settings) as live:
        assert post(live.url, body).status_code == 202
        manifest = wait_manifest(tmp_path, TASK_ID)
    assert manifest["scale"]["unknown_indexes"] == {"70000": 2}
    instances = np.array(Image.open(job_dir(tmp_path, TASK_ID) / "masks" / "0" / "instances.png"))
    assert (instances[0, 0:2] == 0).all() and (instances[0, 2:] == 2).all()


def test_non_completed_statuses_are_recorded_not_processed(
    fake: tuple[FakeScale, LiveServer, LiveServer], tmp_path: Path, make_settings: Any
) -> None:
    vendor, api, _ = fake
    settings = make_settings(**env(api.url, tmp_path))
    book = JobBook(open_store(settings.store_url))
    with start(settings) as live:
        reply = post(
            live.url, {"task_id": "t-err", "status": "error", "response": {"error": "bad attachment"}}
        )
        assert reply.status_code == 202
        assert (
            post(
                live.url, {"task_id": "t-pend", "task": {"task_id": "t-pend", "status": "pending"}}
            ).status_code
            == 202
        )
        wait_for(lambda: (r := book.get("scale", "t-err")) is not None and r.state == "failed", what="t-err")
        wait_for(
            lambda: (r := book.get("scale", "t-pend")) is not None and r.vendor_state == "pending",
            what="t-pend",
        )
    assert vendor.seen == []


def run_cli(*args: str, environ: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    full = cli_env(cwd, **environ)
    for key in ("LABELHOOK_ACME_VENDOR", "LABELHOOK_ACME_SECRET"):
        full.pop(key, None)
    return subprocess.run(
        [sys.executable, "-m", "receiver", *args],
        env=full,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_submit_creates_segmentannotation_tasks_with_the_callback_url(
    fake: tuple[FakeScale, LiveServer, LiveServer], tmp_path: Path, make_settings: Any
) -> None:
    vendor, api, _ = fake
    environ = env(api.url, tmp_path, LABELHOOK_PUBLIC_URL="https://hooks.example.org")
    payload = [
        {
            "attachment": "https://example.invalid/kitchen.png",
            "instruction": "Segment the image.",
            "labels": ["road", "sky"],
            "instance_labels": ["car"],
            "project": "kitchen",
        }
    ]
    (tmp_path / "in.json").write_text(json.dumps(payload))
    result = run_cli("submit", "scale", str(tmp_path / "in.json"), "--json", environ=environ, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    [sent] = vendor.requests_to("/v1/task/segmentannotation")
    sent_body = json.loads(sent.body)
    assert sent_body == {**payload[0], "callback_url": "https://hooks.example.org/hooks/scale"}
    assert sent.headers["authorization"] == "Basic " + base64.b64encode(f"{API_KEY}:".encode()).decode()
    [record] = JobBook(open_store(make_settings(**environ).store_url)).list("scale")
    assert record.state == "open" and record.project == "kitchen" and record.job_id in vendor.tasks

    bad = run_cli("submit", "scale", str(_write(tmp_path, {"labels": ["a"]})), environ=environ, cwd=tmp_path)
    assert bad.returncode == 2 and "'attachment'" in bad.stderr
    assert len(vendor.requests_to("/v1/task/")) == 1


def _write(tmp_path: Path, payload: Any) -> Path:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(payload))
    return path


# -- pure parts -------------------------------------------------------------------------------------


def test_label_mapping_rejects_repeated_or_invalid_indexes() -> None:
    with pytest.raises(Permanent, match="index 3 twice"):
        parse_label_mapping({"a": {"index": 3, "color": "#ff0000"}, "b": [{"index": 3, "color": "#00ff00"}]})
    with pytest.raises(Permanent, match="not an integer"):
        parse_label_mapping({"a": {"index": 0, "color": "#ff0000"}})
    with pytest.raises(Permanent, match="no labelMapping"):
        parse_label_mapping([])
    mapping = parse_label_mapping({"a": {"index": 9, "color": "red"}})
    assert mapping.labelmap.invalid_legend_keys == ("red",) and mapping.segment_of_index == {9: 1}


def test_index_images_are_read_losslessly() -> None:
    grey16 = np.array([[0, 300], [65535, 7]], dtype=np.uint16)
    assert (read_index_image(png(grey16), packed_rgb=False, max_pixels=100, what="x") == grey16).all()
    palette = Image.fromarray(np.array([[0, 5], [250, 1]], dtype=np.uint8), "P")
    palette.putpalette([255 - i % 256 for i in range(768)])
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG")
    read = read_index_image(buffer.getvalue(), packed_rgb=False, max_pixels=100, what="x")
    assert read.tolist() == [[0, 5], [250, 1]]  # palette indexes, not colours
    big = np.array([[70000, 1]], dtype=np.uint32)
    assert read_index_image(extended_png(big), packed_rgb=True, max_pixels=100, what="x").tolist() == [
        [70000, 1]
    ]
    with pytest.raises(Permanent, match="over the limit"):
        read_index_image(png(grey16), packed_rgb=False, max_pixels=3, what="x")


def test_adapter_dedupes_retries_but_not_an_audit_fix_that_changes_the_response(make_settings: Any) -> None:
    from processors.config import SourceConfig
    from receiver.vendors.base import IncomingRequest
    from receiver.vendors.scale import ScaleAdapter

    source: SourceConfig = make_settings(**env(None, Path("/nonexistent"))).sources["scale"]
    adapter = ScaleAdapter(source)
    body = json.loads((CONFORMANCE / "callback_categorization.docs.json").read_bytes())

    def verify(value: Any) -> Any:
        raw = json.dumps(value).encode()
        return adapter.verify(IncomingRequest({"scale-callback-auth": AUTH_KEY}, {}, raw), now=0.0)

    first, retry = verify(body), verify(json.loads(json.dumps(body)))
    fixed = verify({**body, "response": {"category": "blue"}})
    assert first.dedupe_key == retry.dedupe_key != fixed.dedupe_key
    assert first.dedupe_key.startswith(f"scale:{body['task_id']}:completed:")
    assert (first.job_id, first.kind, first.project) == (body["task_id"], "callback", "scale")


def test_poll_enqueues_a_completed_task_whose_callback_never_came(
    fake: tuple[FakeScale, LiveServer, LiveServer], tmp_path: Path, make_settings: Any
) -> None:
    vendor, api, bucket = fake
    body = conformance_callback(api, bucket)
    truth = serve_task(vendor, body)
    vendor.add_task({"task_id": "t-open", "status": "pending", "type": "segmentannotation"})
    environ = env(api.url, tmp_path)
    settings = make_settings(**environ)
    book = JobBook(open_store(settings.store_url))
    for job_id in (TASK_ID, "t-open"):
        book.note(source="scale", vendor="scale", job_id=job_id, project="scale", state="open")
    result = run_cli("poll", "scale", "--json", environ=environ, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["enqueued"] == 1 and json.loads(result.stdout)["open"] == 1
    with start(settings):
        manifest = wait_manifest(tmp_path, TASK_ID)
    assert manifest["segmentation"]["annotations"] == 4
    check_output_set(job_dir(tmp_path, TASK_ID), truth)
    assert not (job_dir(tmp_path, TASK_ID) / "callback.json").exists()
    assert book.get("scale", TASK_ID).state == "completed"  # type: ignore[union-attr]
    assert book.get("scale", "t-open").state == "open"  # type: ignore[union-attr]
