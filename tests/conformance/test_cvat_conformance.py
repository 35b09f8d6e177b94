"""CVAT conformance: CVAT's own test assets and webhook layouts through the real intake, a fake CVAT API
serving what CVAT's ``JobViewSet`` answers for them, and the output set checked to the pixel."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from processors.queue import open_queue
from processors.store import open_store
from processors.worker import Worker
from receiver.app import create_app
from tests.conformance.payloads import load, paint, raw
from tests.fakes.cvat import FakeCvat, FakeCvatJob, build_app
from tests.support import LiveServer, loopback_origins, wait_for

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")
SECRET = "cvat-conformance-secret"
API_KEY = "cvat-conformance-token"


def signed(body: bytes) -> dict[str, str]:
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {"content-type": "application/json", "x-signature-256": f"sha256={digest}"}


@pytest.fixture
def cvat() -> Iterator[tuple[FakeCvat, LiveServer]]:
    fake = FakeCvat(api_key=API_KEY)  # labels are served two to a page: every label list is paginated
    gt = load("cvat/update-job-28-completed.json")["job"]
    fake.jobs["28"] = FakeCvatJob(
        gt,
        load("cvat/annotations-job-28.json"),
        load("cvat/data-meta-job-28.json"),
        labels=load("cvat/labels-task-22.json"),
    )
    job14 = load("cvat/update-job-14-completed-before-update.json")["job"]
    fake.jobs["14"] = FakeCvatJob(
        job14,
        load("cvat/annotations-job-14.json"),
        load("cvat/data-meta-job-14.json"),
        labels=load("cvat/labels-project-1.json"),
    )
    with LiveServer(build_app(fake)) as live:
        yield fake, live


@pytest.fixture
def service(make_settings: Any, cvat: tuple[FakeCvat, LiveServer]) -> Iterator[LiveServer]:
    settings = make_settings(
        LABELHOOK_SOURCES="cvat",
        LABELHOOK_CVAT_SECRET=SECRET,
        LABELHOOK_CVAT_API_KEY=API_KEY,
        LABELHOOK_CVAT_API_URL=cvat[1].url,
        LABELHOOK_FETCH_ALLOW_HOSTS=loopback_origins(cvat[1].url),
        LABELHOOK_MAX_ATTEMPTS="2",
    )
    queue, store = open_queue(settings.queue_url), open_store(settings.store_url)
    worker = Worker(settings, queue, store, drain_seconds=2)
    with LiveServer(create_app(settings, queue, store, worker=worker)) as live:
        yield live


def post(url: str, body: bytes, path: str = "/hooks/cvat") -> httpx.Response:
    return httpx.post(url + path, content=body, headers=signed(body), timeout=10)


def manifest_of(folder: Path) -> dict[str, Any]:
    path = folder / "manifest.json"
    text = wait_for(lambda: path.exists() and path.read_text(), timeout=30, what=str(path))
    manifest: dict[str, Any] = json.loads(str(text))
    return manifest


def check_frames(
    folder: Path,
    shapes: list[dict[str, Any]],
    sizes: dict[int, tuple[int, int]],
    labels: list[dict[str, Any]],
) -> None:
    """Every frame's semantic map, and every shape's COCO mask, equal the reference to the pixel."""
    labelmap = json.loads((folder / "labelmap.json").read_text())
    class_of = {int(e["class_id"]): e["id"] for e in labelmap if e["class_id"] is not None}
    assert sorted(class_of) == sorted(int(label["id"]) for label in labels)
    label_of = {s["id"]: s["label_id"] for s in shapes}
    coco = json.loads((folder / "annotations.json").read_text())
    by_instance = {a["instance_id"]: a for a in coco["annotations"]}
    assert sorted(p.name for p in (folder / "masks").iterdir()) == sorted(str(f) for f in sizes)
    for frame, (width, height) in sizes.items():
        regions = paint([s for s in shapes if s["frame"] == frame], width, height)
        expected = np.zeros((height, width), dtype=np.uint8)
        for shape_id, region in regions.items():
            expected[region] = class_of[label_of[shape_id]]
        with Image.open(folder / "masks" / str(frame) / "semantic.png") as image:
            assert image.size == (width, height)
            assert np.array_equal(np.array(image), expected), f"frame {frame}"
        with Image.open(folder / "masks" / str(frame) / "instances.png") as image:
            instances = np.array(image)
        for shape_id, region in regions.items():
            annotation = by_instance[f"shape-{shape_id}"]
            decoded = coco_mask.decode(annotation["segmentation"]).astype(bool)
            assert np.array_equal(decoded, region), f"shape {shape_id}"
            assert annotation["area"] == int(region.sum())
            assert np.unique(instances[region]).tolist() == [annotation["instance_number"]]


def test_ground_truth_job_writes_masks_for_its_own_frames_only(
    cvat: tuple[FakeCvat, LiveServer], service: LiveServer, tmp_path: Path
) -> None:
    """CVAT's ground-truth job 28 (tests/python/shared/assets/jobs.json): frames 0..10 listed in data/meta,
    the job's own frames in included_frames, the others placeholders; a null sender; no before_update."""
    body = raw("cvat/update-job-28-completed.json")
    assert post(service.url, body).status_code == 202
    folder = tmp_path / "out" / "cvat" / "22" / "28"  # no project: the task id stands in
    manifest = manifest_of(folder)
    assert manifest["cvat"]["frames"] == 3 and (folder / "callback.json").read_bytes() == body
    meta = load("cvat/data-meta-job-28.json")
    sizes = {n: (meta["frames"][n]["width"], meta["frames"][n]["height"]) for n in meta["included_frames"]}
    shapes = load("cvat/annotations-job-28.json")["shapes"]
    check_frames(folder, shapes, sizes, load("cvat/labels-task-22.json"))
    label_pages = [p for _, p, _ in cvat[0].seen if p == "/api/labels"]
    assert len(label_pages) == 2  # three labels, two to a page


def test_job_with_a_frame_offset_deleted_frame_and_float_sizes(
    cvat: tuple[FakeCvat, LiveServer], service: LiveServer, tmp_path: Path
) -> None:
    """Job 14 of task 9 (frames 15..19, frame 18 deleted), the older layout with before_update and a user
    as sender, shapes with CVAT ≥ 2.4's ``score``, one frame size sent as floats."""
    body = raw("cvat/update-job-14-completed-before-update.json")
    assert post(service.url, body, "/hooks/cvat/").status_code == 202  # the trailing-slash form too
    folder = tmp_path / "out" / "cvat" / "1" / "14"
    manifest_of(folder)
    meta = load("cvat/data-meta-job-14.json")
    sizes = {15 + k: (int(f["width"]), int(f["height"])) for k, f in enumerate(meta["frames"]) if k != 3}
    shapes = load("cvat/annotations-job-14.json")["shapes"]
    check_frames(folder, shapes, sizes, load("cvat/labels-project-1.json"))
    coco = json.loads((folder / "annotations.json").read_text())
    car = next(a for a in coco["annotations"] if a["instance_id"] == "shape-42")
    assert "mazda" in json.dumps(car["attributes"])
    again = post(service.url, body)
    assert again.status_code == 200 and again.json()["duplicate"] is True


def test_ping_is_answered_and_nothing_is_stored(service: LiveServer, tmp_path: Path) -> None:
    for path in ("/hooks/cvat", "/hooks/cvat/"):
        reply = post(service.url, raw("cvat/ping.json"), path)
        assert reply.status_code == 200 and reply.json()["queued"] is False
    assert not list((tmp_path / "out").rglob("manifest.json"))
