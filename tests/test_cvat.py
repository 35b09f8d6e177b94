"""CVAT end to end: signed webhooks into the real receiver and worker, a fake CVAT over real HTTP, files out.

Pixels are checked against a slow per-pixel reference written here (PNPOLY on pixel centres, the
ellipse equation, CVAT's RLE expanded run by run, tracks interpolated by hand).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from processors.config import ConfigError, Secret, SourceConfig, load_settings
from processors.errors import Permanent
from processors.queue import open_queue
from processors.store import open_store
from processors.vendors.cvat.options import CvatOptions
from processors.worker import Worker
from receiver.app import create_app
from receiver.errors import BadRequest, Unauthorized
from receiver.vendors import IncomingRequest
from receiver.vendors.cvat import CvatAdapter
from tests.fakes.cvat import FakeCvat, FakeCvatJob, build_app, frame_jpeg
from tests.support import LiveServer, loopback_origins, wait_for

# pycocotools' Cython decode trips numpy 2's __array__(copy=) deprecation; that is its issue, not ours.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")
SECRET = "cvat-webhook-secret"
W, H = 40, 30
LABELS = [
    {"id": 5, "name": "person", "color": "#FF0000", "type": "any", "attributes": []},
    {"id": 7, "name": "car", "color": "#00ff00", "type": "any", "attributes": []},
    {"id": 9, "name": "wheel", "color": "#0000ff", "type": "ellipse", "attributes": []},
]
MASK_RUNS = [1, 3, 2, 4, 5]  # over the box left=2, top=3, right=6, bottom=5 (5x3 = 15 pixels)
POLYGON = [10.0, 2.0, 25.5, 2.0, 10.0, 17.5, 12.5, 9.5]
ROTATED = [20.0, 14.0, 30.0, 20.0]  # rotated 30°, above the polygon
ELLIPSE = [33.0, 8.0, 38.0, 4.0]  # centre (33, 8), rx 5, ry 4
TRACK_KEYS = [
    (0, [0.0, 20.0, 4.0, 24.0], False),
    (2, [4.0, 24.0, 8.0, 28.0], False),
    (3, [4.0, 24.0, 8.0, 28.0], True),
    (4, [30.0, 22.0, 36.0, 29.0], False),
]


def annotations() -> dict[str, Any]:
    return {
        "version": 3,
        "tags": [],
        "shapes": [
            {
                "id": 11, "type": "mask", "frame": 0, "label_id": 5, "group": 0, "source": "manual",
                "occluded": False, "outside": False, "z_order": 0, "rotation": 0.0, "attributes": [],
                "points": [float(v) for v in [*MASK_RUNS, 2, 3, 6, 5]], "elements": [],
            },
            {
                "id": 12, "type": "polygon", "frame": 0, "label_id": 7, "group": 0, "source": "manual",
                "occluded": False, "outside": False, "z_order": 1, "rotation": 0.0,
                "attributes": [{"spec_id": 1, "value": "red"}], "points": POLYGON, "elements": [],
            },
            {
                "id": 13, "type": "rectangle", "frame": 0, "label_id": 7, "group": 0, "source": "manual",
                "occluded": False, "outside": False, "z_order": 2, "rotation": 30.0, "attributes": [],
                "points": ROTATED, "elements": [],
            },
            {
                "id": 14, "type": "ellipse", "frame": 1, "label_id": 9, "group": 0, "source": "manual",
                "occluded": False, "outside": False, "z_order": 0, "rotation": 0.0, "attributes": [],
                "points": ELLIPSE, "elements": [],
            },
            {
                "id": 15, "type": "polyline", "frame": 0, "label_id": 7, "occluded": False, "z_order": 0,
                "rotation": 0.0, "attributes": [], "points": [0.0, 0.0, 5.0, 5.0], "outside": False,
            },
        ],
        "tracks": [
            {
                "id": 21, "frame": 0, "label_id": 5, "group": 0, "source": "manual", "attributes": [],
                "elements": [],
                "shapes": [
                    {
                        "type": "rectangle", "occluded": False, "z_order": 3, "rotation": 0.0,
                        "outside": outside, "attributes": [], "frame": frame, "points": points,
                    }
                    for frame, points, outside in TRACK_KEYS
                ],
            }
        ],
    }  # fmt: skip


def job_object(job_id: int = 42, state: str = "completed", stage: str = "acceptance") -> dict[str, Any]:
    return {
        "url": f"http://cvat.example/api/jobs/{job_id}", "id": job_id, "task_id": 8, "project_id": 3,
        "assignee": None, "dimension": "2d", "stage": stage, "state": state, "mode": "interpolation",
        "frame_count": 5, "start_frame": 0, "stop_frame": 4, "type": "annotation",
        "created_date": "2024-05-01T10:00:00.000000Z", "updated_date": "2024-05-02T11:22:33.123456Z",
    }  # fmt: skip


def webhook(job: dict[str, Any], *, before: dict[str, Any] | None = None, event: str = "update:job") -> bytes:
    payload: dict[str, Any] = {"event": event, "job": job, "webhook_id": 1, "sender": None}
    if before is not None:
        payload["before_update"] = before
    return json.dumps(payload).encode()


def signed(body: bytes, secret: str = SECRET, prefix: str = "sha256=") -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-Signature-256": prefix + digest}


# --- the independent reference -----------------------------------------------------------------


def inside_polygon(x: float, y: float, pts: list[tuple[float, float]]) -> bool:
    inside, j = False, len(pts) - 1
    for i in range(len(pts)):
        (xi, yi), (xj, yj) = pts[i], pts[j]
        if (yi > y) != (yj > y) and x < (xj - xi) * (y - yi) / (yj - yi) + xi:
            inside = not inside
        j = i
    return inside


def corners(box: list[float], degrees: float = 0.0) -> list[tuple[float, float]]:
    x0, y0, x1, y1 = box
    cx, cy, a = (x0 + x1) / 2, (y0 + y1) / 2, math.radians(degrees)
    pts = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    if not degrees:
        return pts
    return [
        (
            cx + math.cos(a) * (x - cx) - math.sin(a) * (y - cy),
            cy + math.sin(a) * (x - cx) + math.cos(a) * (y - cy),
        )
        for x, y in pts
    ]


def reference(frame: int, numbers: dict[str, int]) -> np.ndarray:
    """Instance map of ``frame`` painted bottom-up in z order, one pixel centre at a time."""
    out = np.zeros((H, W), dtype=np.uint16)
    layers: list[tuple[int, str, Any]] = []
    if frame == 0:
        box = np.zeros((3, 5), dtype=bool).reshape(-1)
        pos, value = 0, False
        for run in MASK_RUNS:
            box[pos : pos + run] = value
            pos, value = pos + run, not value
        mask_pixels = {(2 + i % 5, 3 + i // 5) for i in np.flatnonzero(box)}
        layers.append((0, "shape-11", lambda x, y: (int(x), int(y)) in mask_pixels))
        poly = list(zip(POLYGON[0::2], POLYGON[1::2], strict=True))
        layers.append((1, "shape-12", lambda x, y: inside_polygon(x, y, poly)))
        rot = corners(ROTATED, 30.0)
        layers.append((2, "shape-13", lambda x, y: inside_polygon(x, y, rot)))
    if frame == 1:
        layers.append((0, "shape-14", lambda x, y: ((x - 33) / 5) ** 2 + ((y - 8) / 4) ** 2 <= 1))
    track = {0: [0, 20, 4, 24], 1: [2, 22, 6, 26], 2: [4, 24, 8, 28], 4: [30, 22, 36, 29]}.get(frame)
    if track is not None:  # frame 3 is outside
        layers.append((3, "track-21", lambda x, y: inside_polygon(x, y, corners([float(v) for v in track]))))
    for _, key, contains in sorted(layers, key=lambda layer: layer[0]):
        for r in range(H):
            for c in range(W):
                if contains(c + 0.5, r + 0.5):
                    out[r, c] = numbers[key]
    return out


# --- the adapter, pure -----------------------------------------------------------------------------


def adapter(**options: str) -> CvatAdapter:
    return CvatAdapter(
        SourceConfig("cvat", "cvat", (Secret("old"), Secret(SECRET)), options=CvatOptions(**options))
    )


def verify(body: bytes, headers: dict[str, str], **options: str) -> Any:
    lowered = {k.lower(): v for k, v in headers.items()}
    return adapter(**options).verify(IncomingRequest(lowered, {}, body), 0.0)


def test_signature_with_or_without_prefix_in_any_case_and_rotated_keys() -> None:
    body = webhook(job_object())
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    for header in (f"sha256={digest}", digest, f"SHA256={digest.upper()}", digest.upper()):
        callback = verify(body, {"X-Signature-256": header})
        assert callback.enqueue and callback.job_id == "42" and callback.project == "3"
    assert verify(body, signed(body, "old")).enqueue
    with pytest.raises(Unauthorized) as missing:
        verify(body, {})
    assert missing.value.code == "missing_signature"
    for bad in (signed(body + b" "), signed(body, "other"), {"X-Signature-256": "sha256=zz"}):
        with pytest.raises(Unauthorized) as wrong:
            verify(body, bad)
        assert wrong.value.code == "invalid_signature"
    with pytest.raises(BadRequest):
        verify(b"[1, 2]", signed(b"[1, 2]"))


def test_completion_rules_for_both_layouts() -> None:
    def decide(body: bytes, **options: str) -> bool:
        return bool(verify(body, signed(body), **options).enqueue)

    done, open_ = job_object(), job_object(state="in progress", stage="annotation")
    assert decide(webhook(done))  # current layout: the job's state decides
    assert not decide(webhook(open_))
    assert decide(webhook(done, before={"state": "in progress", "updated_date": "x"}))
    assert not decide(webhook(done, before={"assignee": None}))  # a completed job edited otherwise
    assert not decide(webhook(open_, before={"state": "new"}))
    assert not decide(webhook(done, event="create:job"))
    ping = json.dumps({"event": "ping", "webhook": {"id": 1}, "sender": None}).encode()
    assert not decide(ping)
    accepted = job_object(state="in progress", stage="acceptance")
    assert decide(webhook(accepted), complete_on="acceptance")
    assert not decide(webhook(accepted))
    assert not decide(
        webhook(accepted, before={"stage": "acceptance", "state": "new"}), complete_on="acceptance"
    )
    # Float ids, no project: the task is the project.
    floaty = {**done, "id": 42.0, "project_id": None}
    callback = verify(webhook(floaty), signed(webhook(floaty)))
    assert (callback.job_id, callback.project) == ("42", "8")


def test_dedupe_key_is_job_state_and_update_time() -> None:
    first = verify(webhook(job_object()), signed(webhook(job_object())))
    again = {**job_object(), "updated_date": "2024-06-01T00:00:00Z"}
    second = verify(webhook(again), signed(webhook(again)))
    assert first.dedupe_key == "cvat:42:completed:2024-05-02T11:22:33.123456Z"
    assert second.dedupe_key != first.dedupe_key


def test_config_check_names_the_key(tmp_path: Path) -> None:
    env = {"LABELHOOK_SOURCES": "cvat", "LABELHOOK_CVAT_SECRET": SECRET, "LABELHOOK_CVAT_API_KEY": "k"}
    with pytest.raises(ConfigError, match="LABELHOOK_CVAT_API_URL is required"):
        load_settings(env)
    env["LABELHOOK_CVAT_API_URL"] = "https://cvat.example"
    load_settings(env)
    with pytest.raises(ConfigError, match="LABELHOOK_CVAT_EXPORT_FORMAT is required"):
        load_settings({**env, "LABELHOOK_CVAT_MODE": "export"})
    with pytest.raises(ConfigError, match="LABELHOOK_CVAT_COMPLETE_ON"):
        load_settings({**env, "LABELHOOK_CVAT_COMPLETE_ON": "validation"})


# --- end to end --------------------------------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[tuple[FakeCvat, LiveServer]]:
    cvat = FakeCvat(labels=list(LABELS))
    meta = {
        "chunk_size": 36, "size": 5, "image_quality": 70, "start_frame": 0, "stop_frame": 4,
        "frame_filter": "", "deleted_frames": [], "included_frames": None,
        "frames": [{"width": W, "height": H, "name": "video.mp4", "related_files": 0}],
    }  # fmt: skip
    cvat.jobs["42"] = FakeCvatJob(job_object(), annotations(), meta)
    with LiveServer(build_app(cvat)) as live:
        yield cvat, live


def service(make_settings: Any, api_url: str, **env: str) -> LiveServer:
    base = {
        "LABELHOOK_SOURCES": "cvat",
        "LABELHOOK_CVAT_SECRET": SECRET,
        "LABELHOOK_CVAT_API_KEY": "cvat-test-token",
        "LABELHOOK_CVAT_API_URL": api_url,
        "LABELHOOK_FETCH_ALLOW_HOSTS": loopback_origins(api_url),
        "LABELHOOK_MAX_ATTEMPTS": "3",
    }
    settings = make_settings(**{**base, **env})
    queue, store = open_queue(settings.queue_url), open_store(settings.store_url)
    return LiveServer(
        create_app(settings, queue, store, worker=Worker(settings, queue, store, drain_seconds=2))
    )


def post(url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(url + "/hooks/cvat", content=body, headers=headers, timeout=10)


def dead_reason(tmp_path: Path) -> str:
    def find() -> str | None:
        queue = open_queue(f"sqlite:///{tmp_path}/queue.db")

        async def read() -> list[Any]:
            try:
                return await queue.dead_letters()
            finally:
                await queue.close()

        dead = asyncio.run(read())
        return dead[0].last_error if dead else None

    return str(wait_for(find, timeout=20, what="a dead letter"))


def png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.array(image)


def test_completed_job_is_rasterised_like_the_reference_and_a_replay_is_a_duplicate(
    make_settings: Any, fake: tuple[FakeCvat, LiveServer], tmp_path: Path
) -> None:
    cvat, api = fake
    body = webhook(job_object())
    with service(make_settings, api.url) as live:
        assert post(live.url, body, signed(body)).status_code == 202
        job = tmp_path / "out" / "cvat" / "3" / "42"
        manifest = json.loads(
            wait_for(lambda: (job / "manifest.json").exists() and (job / "manifest.json").read_text())
        )
        replay = post(live.url, body, signed(body))
        assert replay.status_code == 200 and replay.json()["duplicate"] is True
    assert (job / "callback.json").read_bytes() == body
    assert json.loads((job / "result.json").read_text()) == annotations()
    labelmap = json.loads((job / "labelmap.json").read_text())
    assert [(e["id"], e["name"], e["color"], e["class_id"]) for e in labelmap] == [
        (0, "unlabeled", "#000000", None),
        (1, "person", "#ff0000", "5"),
        (2, "car", "#00ff00", "7"),
        (3, "wheel", "#0000ff", "9"),
    ]
    coco = json.loads((job / "annotations.json").read_text())
    numbers = {a["instance_id"]: a["instance_number"] for a in coco["annotations"]}
    assert set(numbers) == {"shape-11", "shape-12", "shape-13", "shape-14", "track-21"}
    class_of = {"shape-11": 1, "shape-12": 2, "shape-13": 2, "shape-14": 3, "track-21": 1}
    for frame in range(5):
        expected = reference(frame, numbers)
        instances = png(job / "masks" / str(frame) / "instances.png")
        assert (instances == expected).all(), f"frame {frame}"
        semantic = png(job / "masks" / str(frame) / "semantic.png")
        lookup = np.zeros(max(numbers.values()) + 1, dtype=np.uint8)
        for key, number in numbers.items():
            lookup[number] = class_of[key]
        assert (semantic == lookup[expected]).all()
    assert not (png(job / "masks" / "3" / "instances.png") == numbers["track-21"]).any()
    images = {image["id"]: image["frame_index"] for image in coco["images"]}
    for annotation in coco["annotations"]:
        decoded = coco_mask.decode(annotation["segmentation"])
        expected = reference(images[annotation["image_id"]], numbers) == annotation["instance_number"]
        assert (decoded.astype(bool) == expected).all() and annotation["area"] == int(expected.sum())
    # One output set; the duplicate wrote nothing (the manifest names the first delivery).
    assert [p.name for p in (tmp_path / "out" / "cvat" / "3").iterdir()] == ["42"]
    assert json.loads((job / "manifest.json").read_text()) == manifest
    assert manifest["cvat"]["skipped"] == {"polyline": 1}
    auth = {headers.get("authorization") for _, path, headers in cvat.seen if path.startswith("/api/")}
    assert auth == {"Token cvat-test-token"}
    # Each frame's original image, fetched from the data API, is what annotations.json names.
    assert [i["file_name"] for i in coco["images"]] == [f"images/{n}.jpg" for n in range(5)]
    for frame in range(5):
        assert (job / f"images/{frame}.jpg").read_bytes() == cvat.jobs["42"].frame_image(frame)
    assert coco["warnings"]["images_not_fetched"] == {} and coco["warnings"]["image_size_mismatch"] == []
    frame_requests = [p for _, p, _ in cvat.seen if p == "/api/jobs/42/data"]
    assert len(frame_requests) == 5


def test_fetch_images_off_names_the_frames_and_warns(
    make_settings: Any, fake: tuple[FakeCvat, LiveServer], tmp_path: Path
) -> None:
    cvat, api = fake
    cvat.jobs["42"].frames[2] = b"not an image"  # and one frame CVAT serves broken, with images on
    body = webhook(job_object())
    with service(make_settings, api.url, LABELHOOK_CVAT_FETCH_IMAGES="0") as live:
        assert post(live.url, body, signed(body)).status_code == 202
        job = tmp_path / "out" / "cvat" / "3" / "42"
        wait_for(lambda: (job / "manifest.json").exists())
    coco = json.loads((job / "annotations.json").read_text())
    assert [i["file_name"] for i in coco["images"]] == [f"images/{n}" for n in range(5)]
    assert coco["warnings"]["images_not_fetched"] == {str(n): "FETCH_IMAGES=0" for n in range(5)}
    assert not (job / "images").exists()
    assert not [p for _, p, _ in cvat.seen if p == "/api/jobs/42/data"]


def test_a_broken_frame_image_is_a_warning_not_a_failure(
    make_settings: Any, fake: tuple[FakeCvat, LiveServer], tmp_path: Path
) -> None:
    cvat, api = fake
    cvat.jobs["42"].frames[2] = b"<html>not an image</html>"
    cvat.jobs["42"].frames[3] = frame_jpeg(W + 1, H, 3)  # another size than the job's frames
    body = webhook(job_object())
    with service(make_settings, api.url) as live:
        assert post(live.url, body, signed(body)).status_code == 202
        job = tmp_path / "out" / "cvat" / "3" / "42"
        wait_for(lambda: (job / "manifest.json").exists())
    coco = json.loads((job / "annotations.json").read_text())
    assert coco["warnings"]["images_not_fetched"] == {"2": "not a JPEG, PNG, BMP or TIFF image"}
    assert coco["warnings"]["image_size_mismatch"] == [{"frame": 3, "image": [W + 1, H], "mask": [W, H]}]
    assert coco["images"][2]["file_name"] == "images/2" and not (job / "images/2.jpg").exists()
    assert len(coco["annotations"]) > 0


def test_ping_progress_and_bad_signatures_store_nothing(
    make_settings: Any, fake: tuple[FakeCvat, LiveServer], tmp_path: Path
) -> None:
    cvat, api = fake
    ping = json.dumps({"event": "ping", "webhook": {"id": 1, "url": "x"}, "sender": None}).encode()
    progress = webhook(job_object(state="in progress", stage="annotation"))
    done = webhook(job_object())
    with service(make_settings, api.url) as live:
        for body in (ping, progress):
            answer = post(live.url, body, signed(body))
            assert answer.status_code == 200 and answer.json()["queued"] is False
        wrong = post(live.url, done, signed(done, "not-the-secret"))
        assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_signature"
        missing = post(live.url, done, {"Content-Type": "application/json"})
        assert missing.status_code == 401 and missing.json()["error"] == "missing_signature"
    assert not (tmp_path / "out" / "cvat").exists()
    assert not cvat.seen


def test_throttled_api_is_retried_after_retry_after(
    make_settings: Any, fake: tuple[FakeCvat, LiveServer], tmp_path: Path
) -> None:
    cvat, api = fake
    cvat.fault("/api/jobs/42/annotations/", 429, {"Retry-After": "1"})
    cvat.fault("/api/labels", 503)
    body = webhook(job_object())
    with service(make_settings, api.url) as live:
        assert post(live.url, body, signed(body)).status_code == 202
        wait_for(lambda: (tmp_path / "out/cvat/3/42/manifest.json").exists(), timeout=20)


@pytest.mark.parametrize(
    ("key", "job", "status"), [("wrong-token", "42", "401"), ("cvat-test-token", "77", "404")]
)
def test_api_401_and_404_are_dead_letters(
    make_settings: Any, fake: tuple[FakeCvat, LiveServer], tmp_path: Path, key: str, job: str, status: str
) -> None:
    _, api = fake
    body = webhook(job_object(job_id=int(job)))
    with service(make_settings, api.url, LABELHOOK_CVAT_API_KEY=key) as live:
        assert post(live.url, body, signed(body)).status_code == 202
        reason = dead_reason(tmp_path)
    assert f"answered {status}" in reason and f"/api/jobs/{job}" in reason and key not in reason
    assert not (tmp_path / "out" / "cvat" / "3" / job / "manifest.json").exists()


def test_export_polls_until_finished_and_streams_the_archive_from_another_origin(
    make_settings: Any, fake: tuple[FakeCvat, LiveServer], tmp_path: Path
) -> None:
    cvat, api = fake
    cvat.export.polls_before_finish = 3
    cvat.export.archive = bytes(range(256)) * 300
    body = webhook(job_object())
    export = {"LABELHOOK_CVAT_MODE": "export", "LABELHOOK_CVAT_EXPORT_FORMAT": "COCO 1.0"}
    with service(make_settings, api.url, LABELHOOK_CVAT_EXPORT_POLL_SECONDS="0.05", **export) as live:
        assert post(live.url, body, signed(body)).status_code == 202
        job = tmp_path / "out" / "cvat" / "3" / "42"
        manifest = json.loads(
            wait_for(lambda: (job / "manifest.json").exists() and (job / "manifest.json").read_text())
        )
    name = "media/job-42-coco-1.0.zip"
    assert (job / name).read_bytes() == cvat.export.archive
    entry = next(f for f in manifest["files"] if f["path"] == name)
    assert entry["sha256"] == hashlib.sha256(cvat.export.archive).hexdigest()
    assert entry["size"] == len(cvat.export.archive)
    assert cvat.export.polls == 4
    bucket = [headers for _, path, headers in cvat.seen if path.startswith("/bucket/")]
    assert len(bucket) == 1 and "authorization" not in bucket[0] and bucket[0]["host"].startswith("localhost")


def test_export_result_url_on_another_origin_gets_no_token(
    make_settings: Any, fake: tuple[FakeCvat, LiveServer], tmp_path: Path
) -> None:
    """CVAT builds result_url from its own idea of its host; the key goes to the configured origin only."""
    cvat, api = fake
    seen: list[dict[str, str]] = []

    async def download(request: Request) -> Response:
        seen.append(dict(request.headers))
        return Response(cvat.export.archive, media_type="application/zip")

    cvat.export.archive = b"zip-from-elsewhere" * 100
    foreign = Starlette(routes=[Route("/api/jobs/{id}/dataset/download", download, methods=["GET"])])
    export = {"LABELHOOK_CVAT_MODE": "export", "LABELHOOK_CVAT_EXPORT_FORMAT": "COCO 1.0"}
    with LiveServer(foreign) as other:  # same host, another port: another origin
        cvat.export.result_origin = other.url
        body = webhook(job_object())
        # The other origin must be allow-listed (host:port) for this source, or the guard refuses it.
        allow = {"LABELHOOK_CVAT_FETCH_ALLOW": loopback_origins(other.url)}
        poll = {"LABELHOOK_CVAT_EXPORT_POLL_SECONDS": "0.05"}
        with service(make_settings, api.url, **poll, **allow, **export) as live:
            assert post(live.url, body, signed(body)).status_code == 202
            archive = tmp_path / "out" / "cvat" / "3" / "42" / "media" / "job-42-coco-1.0.zip"
            wait_for(lambda: (archive.parent.parent / "manifest.json").exists(), what="manifest")
    assert archive.read_bytes() == cvat.export.archive
    assert len(seen) == 1 and "authorization" not in seen[0]
    api_calls = [headers for _, path, headers in cvat.seen if path.startswith("/api/")]
    assert api_calls and all(h["authorization"] == "Token cvat-test-token" for h in api_calls)


def test_failed_export_is_a_dead_letter_with_its_message(
    make_settings: Any, fake: tuple[FakeCvat, LiveServer], tmp_path: Path
) -> None:
    cvat, api = fake
    cvat.export.fail_message = "Unsupported format: COCO 9.9"
    body = webhook(job_object())
    export = {"LABELHOOK_CVAT_MODE": "export", "LABELHOOK_CVAT_EXPORT_FORMAT": "COCO 9.9"}
    with service(make_settings, api.url, LABELHOOK_CVAT_EXPORT_POLL_SECONDS="0.05", **export) as live:
        assert post(live.url, body, signed(body)).status_code == 202
        reason = dead_reason(tmp_path)
    assert "failed: Unsupported format: COCO 9.9" in reason
    assert not list((tmp_path / "out").rglob("*.zip"))


def test_frames_and_pages_are_read_as_documented(tmp_path: Path) -> None:
    from processors.vendors.cvat.processor import job_frames

    meta = {"frames": [{"width": 4, "height": 3}, {"width": 5, "height": 6}], "deleted_frames": [11]}
    assert job_frames({"start_frame": 10, "stop_frame": 11}, meta) == [(10, 4, 3)]
    # CVAT lists a size for every image of the job's range; a ground-truth job's frames are included_frames.
    sizes = [{"width": 4 + n, "height": 3, "name": "placeholder.jpg"} for n in range(21)]
    gt = {"frames": sizes, "included_frames": [9, 3]}
    assert job_frames({"start_frame": 0, "stop_frame": 20}, gt) == [(3, 7, 3), (9, 13, 3)]
    shifted = {"frames": sizes[:5], "included_frames": [12, 14]}
    assert job_frames({"start_frame": 10, "stop_frame": 14}, shifted) == [(12, 6, 3), (14, 8, 3)]
    floats = {"frames": [{"width": 4.0, "height": 3.0}]}  # one size: a video
    assert job_frames({"start_frame": 0.0, "stop_frame": 2}, floats) == [(0, 4, 3), (1, 4, 3), (2, 4, 3)]
    for bad in (
        {"frames": sizes[:3], "included_frames": [1]},  # 3 sizes for a range of 21
        {"frames": sizes, "included_frames": [25]},  # outside the range
        {"frames": [{"width": 4.5, "height": 3}]},  # not a whole number
    ):
        with pytest.raises(Permanent):
            job_frames({"start_frame": 0, "stop_frame": 20}, bad)


def test_the_token_goes_to_the_api_origin_only() -> None:
    from processors.vendors.cvat.api import CvatClient

    client = CvatClient(None, "https://cvat.example/", "k")  # type: ignore[arg-type]
    assert client.same_origin("https://cvat.example:443/api/jobs/1/dataset/download?rq_id=x")
    assert client.same_origin("https://CVAT.example/other")
    for url in ("http://cvat.example/x", "https://cvat.example:8443/x", "https://cvat.example.evil/x"):
        assert not client.same_origin(url), url
