"""Label Studio end to end: webhooks into the real receiver and worker, a fake Label Studio, files out.

The conformance cases are built from Label Studio's own published data (tests/conformance/README.md):
the docs' webhook envelope carrying annotations from the SDK's export test data and the editor's
examples, served back by the fake API. Pixels are checked against slow references written here
(PNPOLY on pixel centres of the SDK's rectangle corners; the SDK's RLE decoder transcribed).
"""

from __future__ import annotations

import asyncio
import copy
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

from processors.config import ConfigError, load_settings
from processors.errors import Permanent
from processors.fetch import Fetcher
from processors.queue import open_queue
from processors.store import open_store
from processors.vendors.labelstudio.api import LabelStudioClient
from processors.vendors.labelstudio.regions import rectangle_corners
from processors.worker import Worker
from receiver.app import create_app
from receiver.errors import BadRequest, Unauthorized
from receiver.vendors import IncomingRequest
from receiver.vendors.labelstudio import LabelStudioAdapter
from tests.fakes.labelstudio import FakeLabelStudio, build_app, make_jwt
from tests.support import LiveServer, loopback_origins, wait_for
from tests.test_labelstudio_masks import inside, load, reference_decode

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")
DATA = Path(__file__).parent / "conformance" / "payloads" / "labelstudio"
TOKEN = "ls-webhook-token-3f9a"
ENVELOPE = json.loads((DATA / "webhook_annotation_created.docs.json").read_text())


def webhook(
    annotation: Any, task: dict[str, Any] | None, project_id: int, action: str = "ANNOTATION_CREATED"
) -> bytes:
    """The docs' envelope with another annotation in it, serialised as `requests`' ``json=`` does."""
    body = copy.deepcopy(ENVELOPE)
    body["action"] = action
    body["annotation"] = annotation
    body["project"]["id"] = project_id
    if task is not None:
        body["task"] = task
    return json.dumps(body).encode()


def obb_task() -> tuple[dict[str, Any], dict[str, Any]]:
    """Task 10959 of the SDK's OBB export test data: (task without annotations, its one annotation)."""
    task = load("task_obb.sdk_test.json")["first_task"]
    annotation = task.pop("annotations")[0]
    return task, annotation


def project(project_id: int, config: str) -> dict[str, Any]:
    return {"id": project_id, "title": f"Project {project_id}", "label_config": (DATA / config).read_text()}


def magicwand_annotation() -> dict[str, Any]:
    """The editor's magic-wand example (two regions, each a magicwand + labels pair) as an annotation."""
    return {
        "id": 901, "result": load("brush_rle_sample_magicwand.json")["result"], "was_cancelled": False,
        "ground_truth": False, "created_at": "2024-05-07T12:00:00.000000Z",
        "updated_at": "2024-05-07T12:00:00.000000Z", "lead_time": 12.5, "task": 1202, "project": 3,
        "completed_by": 1,
    }  # fmt: skip


# --- adapter ------------------------------------------------------------------------------------


def adapter(**options: str) -> LabelStudioAdapter:
    env = {
        "LABELHOOK_SOURCES": "ls",
        "LABELHOOK_LS_VENDOR": "labelstudio",
        "LABELHOOK_LS_SECRET": f"{TOKEN},old-token",
        "LABELHOOK_LS_API_URL": "https://ls.example.com",
        "LABELHOOK_LS_API_KEY": "0123456789abcdef0123456789abcdef01234567",
        **{f"LABELHOOK_LS_{k.upper()}": v for k, v in options.items()},
    }
    return LabelStudioAdapter(load_settings(env).sources["ls"])


def verify(body: bytes, query: dict[str, str] | None = None, headers: dict[str, str] | None = None) -> Any:
    return adapter().verify(
        IncomingRequest(headers or {}, {"token": TOKEN} if query is None else query, body), 0
    )


def test_docs_examples_are_accepted_and_keyed_on_annotation_and_update_time() -> None:
    created = verify((DATA / "webhook_annotation_created.docs.json").read_bytes())
    assert (created.job_id, created.project, created.kind) == ("19", "2", "callback")
    assert created.dedupe_key == "ls:annotation:17:2021-08-17T13:52:48.536370Z"
    updated = json.loads((DATA / "webhook_annotation_updated.docs.json").read_text())
    cb = verify(json.dumps(updated).encode())
    assert (
        cb.dedupe_key == f"ls:annotation:{updated['annotation']['id']}:{updated['annotation']['updated_at']}"
    )
    # The same save arriving twice (Label Studio posts for the PUT and for the PATCH): one key.
    assert verify(json.dumps(updated).encode()).dedupe_key == cb.dedupe_key
    # A later edit: a new key, hence a new version of the output set.
    updated["annotation"]["updated_at"] = "2031-01-01T00:00:00.000000Z"
    assert verify(json.dumps(updated).encode()).dedupe_key != cb.dedupe_key


@pytest.mark.parametrize(
    ("query", "headers"),
    [
        ({"token": "old-token"}, {}),
        ({}, {"x-labelhook-token": TOKEN}),
        ({}, {"authorization": f"Token {TOKEN}"}),
        ({}, {"authorization": f"Bearer {TOKEN}"}),
    ],
)
def test_the_token_may_come_in_the_url_or_a_custom_header(
    query: dict[str, str], headers: dict[str, str]
) -> None:
    assert verify((DATA / "webhook_annotation_created.docs.json").read_bytes(), query, headers).job_id == "19"


def test_a_configured_header_name_is_read() -> None:
    body = (DATA / "webhook_annotation_created.docs.json").read_bytes()
    request = IncomingRequest({"x-ls-secret": TOKEN}, {}, body)
    assert adapter(token_header="X-LS-Secret").verify(request, 0).job_id == "19"


@pytest.mark.parametrize(
    ("query", "code"), [({}, "missing_signature"), ({"token": "wrong"}, "invalid_signature")]
)
def test_missing_or_wrong_tokens_are_401(query: dict[str, str], code: str) -> None:
    with pytest.raises(Unauthorized) as info:
        verify((DATA / "webhook_annotation_created.docs.json").read_bytes(), query)
    assert info.value.code == code


def test_other_actions_are_acknowledged_without_queueing_and_payloadless_events_are_400() -> None:
    sample = json.loads((DATA / "action_only.json").read_text())
    project_created = verify(json.dumps(sample["test_run_webhook_body"]).encode())
    assert project_created.enqueue is False
    with pytest.raises(BadRequest, match="Send payload"):
        verify(json.dumps(sample["send_payload_false_body"]).encode())


def test_bulk_and_skipped_and_deleted_events() -> None:
    task, annotation = obb_task()
    other = {**annotation, "id": 1553, "task": 10960}
    bulk = verify(webhook([annotation, other], None, 7, "ANNOTATIONS_CREATED"))
    assert bulk.job_id.startswith("bulk-") and bulk.meta["tasks"] == ["10959", "10960"]
    one_task = verify(webhook([annotation], [task], 7, "ANNOTATIONS_CREATED"))
    assert one_task.job_id == "10959" and "tasks" not in one_task.meta
    skipped = verify(webhook({**annotation, "was_cancelled": True}, task, 7, "ANNOTATION_UPDATED"))
    assert (skipped.kind, skipped.state, skipped.job_id) == ("state", "skipped", "10959")
    deleted = verify(json.dumps({"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 1552}]}).encode())
    assert deleted.kind == "state" and deleted.meta["annotations"] == ["1552"]


@pytest.mark.parametrize(
    "annotation",
    [
        [],
        "17",
        {"result": []},
        {"id": 17, "updated_at": "x"},
        {"id": 17, "task": 19},
        {"id": True, "task": 1},
    ],
)
def test_malformed_annotations_are_400(annotation: Any) -> None:
    body = json.dumps({"action": "ANNOTATION_CREATED", "annotation": annotation}).encode()
    with pytest.raises(BadRequest):
        verify(body)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LABELHOOK_LS_SECRET": ""}, "SECRET is required"),
        ({"LABELHOOK_LS_API_URL": ""}, "API_URL is required"),
        ({"LABELHOOK_LS_AUTH": "basic"}, "AUTH must be one of"),
        ({"LABELHOOK_LS_BRUSH_MIN_ALPHA": "256"}, "BRUSH_MIN_ALPHA"),
        ({"LABELHOOK_LS_TOKEN_HEADER": "x token"}, "TOKEN_HEADER"),
        ({"LABELHOOK_LS_BRUSH_THRESHOLD": "3"}, "BRUSH_THRESHOLD: unknown option"),
        ({"LABELHOOK_LS_BRUSH_MIN_ALPHA": "half"}, "BRUSH_MIN_ALPHA"),
    ],
)
def test_config_problems_stop_start_up_naming_the_key(env: dict[str, str], message: str) -> None:
    base = {
        "LABELHOOK_SOURCES": "ls", "LABELHOOK_LS_VENDOR": "labelstudio", "LABELHOOK_LS_SECRET": TOKEN,
        "LABELHOOK_LS_API_URL": "https://ls.example.com", "LABELHOOK_LS_API_KEY": "k",
    }  # fmt: skip
    with pytest.raises(ConfigError, match=message) as info:
        load_settings({**base, **env})
    assert str(info.value).startswith("LABELHOOK_LS_")


# --- end to end ---------------------------------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[tuple[FakeLabelStudio, LiveServer]]:
    ls = FakeLabelStudio()
    task, annotation = obb_task()
    ls.tasks["10959"] = task
    ls.annotations["10959"] = [annotation]
    ls.projects["7"] = project(7, "label_config_obb.sdk_test.xml")
    photo = io.BytesIO()
    Image.new("RGB", (597, 768), (40, 90, 30)).save(photo, "JPEG")
    ls.files["/image1"] = photo.getvalue()  # the SDK task's data: {"image": "/image1"}, on the server
    polygons = load("task_polygons.sdk_test.json")["first_task"]
    ls.annotations["68501"] = polygons.pop("annotations")
    ls.tasks["68501"] = polygons
    ls.projects["132"] = project(132, "label_config_polygons.sdk_test.xml")
    ls.annotations["1202"] = [magicwand_annotation()]
    ls.projects["3"] = project(3, "label_config_magicwand.frontend.xml")
    with LiveServer(build_app(ls)) as live:
        yield ls, live


def service(make_settings: Any, api_url: str, api_key: str, **env: str) -> LiveServer:
    base = {
        "LABELHOOK_SOURCES": "ls",
        "LABELHOOK_LS_VENDOR": "labelstudio",
        "LABELHOOK_LS_SECRET": TOKEN,
        "LABELHOOK_LS_API_KEY": api_key,
        "LABELHOOK_LS_API_URL": api_url,
        "LABELHOOK_FETCH_ALLOW_HOSTS": loopback_origins(api_url),
        "LABELHOOK_MAX_ATTEMPTS": "3",
    }
    settings = make_settings(**{**base, **env})
    queue, store = open_queue(settings.queue_url), open_store(settings.store_url)
    return LiveServer(
        create_app(settings, queue, store, worker=Worker(settings, queue, store, drain_seconds=2))
    )


def post(url: str, body: bytes, token: str | None = TOKEN, *, slash: str = "") -> httpx.Response:
    query = f"?token={token}" if token is not None else ""
    headers = {"Content-Type": "application/json"}
    return httpx.post(f"{url}/hooks/ls{slash}{query}", content=body, headers=headers, timeout=10)


def manifest_of(job: Path, after: str | None = None) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        path = job / "manifest.json"
        if not path.exists():
            return None
        manifest = json.loads(path.read_text())
        return manifest if manifest["delivery_id"] != after else None

    return wait_for(ready, timeout=30, what=f"{job}/manifest.json")


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

    return str(wait_for(find, timeout=30, what="a dead letter"))


def png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.array(image)


def obb_reference(annotation: dict[str, Any]) -> np.ndarray:
    """Per-pixel PNPOLY over the SDK's rotated-rectangle corners, in result order (later on top)."""
    expected = np.zeros((768, 597), dtype=np.uint16)
    for number, result in enumerate(annotation["result"], start=1):
        pts = rectangle_corners(result["value"], 597, 768)
        x0, x1 = max(0, int(min(p[0] for p in pts)) - 1), min(597, int(max(p[0] for p in pts)) + 2)
        y0, y1 = max(0, int(min(p[1] for p in pts)) - 1), min(768, int(max(p[1] for p in pts)) + 2)
        for row in range(y0, y1):
            for col in range(x0, x1):
                if inside(col + 0.5, row + 0.5, pts):
                    expected[row, col] = number
    return expected


def test_conformance_rotated_rectangles_from_the_sdk_export_data(
    make_settings: Any, fake: tuple[FakeLabelStudio, LiveServer], tmp_path: Path
) -> None:
    ls, api = fake
    task, annotation = obb_task()
    body = webhook(annotation, task, 7)
    with service(make_settings, api.url, ls.legacy_token) as live:
        answer = post(live.url, body)
        assert answer.status_code == 202, answer.text
        job = tmp_path / "out" / "labelstudio" / "7" / "10959"
        manifest = manifest_of(job)
        replay = post(live.url, body, slash="/")  # the same source with a trailing slash
        assert replay.status_code == 200 and replay.json()["duplicate"] is True
    assert (job / "callback.json").read_bytes() == body
    assert json.loads((job / "result.json").read_text()) == [annotation]
    # The SDK's config names the label "butterfly"; its data says "Butterfly" (case matters in Label
    # Studio): the configured class keeps its id and colour, the used one is appended.
    labelmap = json.loads((job / "labelmap.json").read_text())
    assert [(e["id"], e["name"]) for e in labelmap] == [(0, "unlabeled"), (1, "butterfly"), (2, "Butterfly")]
    assert labelmap[1]["color"] == "#008000"
    expected = obb_reference(annotation)
    instances = png(job / "masks" / "0" / "instances.png")
    assert instances.shape == (768, 597) and (instances == expected).all()
    assert (png(job / "masks" / "0" / "semantic.png") == np.where(expected > 0, 2, 0)).all()
    coco = json.loads((job / "annotations.json").read_text())
    assert len(coco["annotations"]) == 23 == len(annotation["result"])
    for record in coco["annotations"]:
        number = record["instance_number"]
        assert record["instance_id"] == annotation["result"][number - 1]["id"]
        assert record["category_id"] == 2 and record["attributes"]["labels"] == ["Butterfly"]
        assert (coco_mask.decode(record["segmentation"]).astype(bool) == (expected == number)).all()
    assert manifest["labelstudio"]["annotation"] == 1552 and manifest["labelstudio"]["frames"] == {
        "0": "image"
    }
    assert manifest["dedupe_key"] == "ls:annotation:1552:2024-05-07T16:27:17.914777Z"
    assert (job / "images" / "0.jpg").read_bytes() == ls.files["/image1"]
    assert [(i["file_name"], i["width"], i["height"]) for i in coco["images"]] == [("images/0.jpg", 597, 768)]
    auth = {h.get("authorization") for _, _, h in ls.seen}
    assert auth == {f"Token {ls.legacy_token}"}


def test_conformance_magic_wand_brush_regions_decode_like_the_sdk(
    make_settings: Any, fake: tuple[FakeLabelStudio, LiveServer], tmp_path: Path
) -> None:
    ls, api = fake
    annotation = magicwand_annotation()
    with service(make_settings, api.url, ls.legacy_token) as live:
        assert post(live.url, webhook(annotation, None, 3)).status_code == 202
        job = tmp_path / "out" / "labelstudio" / "3" / "1202"
        manifest_of(job)
    labelmap = json.loads((job / "labelmap.json").read_text())
    names = {e["name"]: e["id"] for e in labelmap}
    assert list(names) == ["unlabeled", "Snow", "Cloud Shadow", "Haze", "Cloud", "Exclude"]
    assert labelmap[names["Cloud"]]["color"] == "#1b32de"
    # The SDK's decoder, transcribed; results sharing an id are one region; the later one on top.
    cloud, shadow = (
        reference_decode(r["value"]["rle"])[3::4].reshape(2860, 3000) > 0
        for r in annotation["result"]
        if r["type"] == "magicwand"
    )
    expected = np.zeros((2860, 3000), dtype=np.uint16)
    expected[cloud] = 1
    expected[shadow] = 2
    assert (png(job / "masks" / "0" / "instances.png") == expected).all()
    coco = json.loads((job / "annotations.json").read_text())
    areas = {r["instance_id"]: (r["area"], r["category_id"]) for r in coco["annotations"]}
    assert areas == {
        "PNCeI7jyxe": (int((expected == 1).sum()), names["Cloud"]),
        "zhJYp7Ak94": (261525, names["Cloud Shadow"]),
    }


def test_an_update_is_a_new_version_and_the_exported_annotation_is_the_latest_not_skipped(
    make_settings: Any, fake: tuple[FakeLabelStudio, LiveServer], tmp_path: Path
) -> None:
    ls, api = fake
    [annotation] = ls.annotations["68501"]
    job = tmp_path / "out" / "labelstudio" / "132" / "68501"
    with service(make_settings, api.url, ls.legacy_token) as live:
        assert post(live.url, webhook(annotation, ls.tasks["68501"], 132)).status_code == 202
        first = manifest_of(job)
        first_mask = png(job / "masks" / "0" / "instances.png")
        # The annotator moves the polygon right by 10 % and saves: two posts (PUT and PATCH), one version.
        edited = copy.deepcopy(annotation)
        edited["updated_at"] = "2023-02-01T08:00:00.000000Z"
        for point in edited["result"][0]["value"]["points"]:
            point[0] -= 10
        # A second annotator skipped the task later: never the exported one.
        skipped = {**copy.deepcopy(annotation), "id": 211900, "was_cancelled": True, "result": [],
                   "created_at": "2023-03-01T00:00:00Z"}  # fmt: skip
        ls.annotations["68501"] = [edited, skipped]
        update = webhook(edited, ls.tasks["68501"], 132, "ANNOTATION_UPDATED")
        assert post(live.url, update).status_code == 202
        assert post(live.url, update).json()["duplicate"] is True
        second = manifest_of(job, after=first["delivery_id"])
    assert second["labelstudio"]["updated_at"] == "2023-02-01T08:00:00.000000Z"
    assert second["labelstudio"]["annotation"] == 211797 and second["labelstudio"]["annotations_on_task"] == 2
    moved = png(job / "masks" / "0" / "instances.png")
    shift = round(640 * 0.10)
    assert moved.sum() > 0 and abs(int(moved.sum()) - int(first_mask.sum())) < 0.02 * first_mask.sum()
    assert (moved[:, : 640 - shift] == first_mask[:, shift:]).mean() > 0.999


def test_a_personal_access_token_is_exchanged_and_refreshed_when_refused(
    make_settings: Any, fake: tuple[FakeLabelStudio, LiveServer], tmp_path: Path
) -> None:
    ls, api = fake
    task, annotation = obb_task()
    with service(make_settings, api.url, ls.refresh_token) as live:
        assert post(live.url, webhook(annotation, task, 7)).status_code == 202
        first = manifest_of(tmp_path / "out" / "labelstudio" / "7" / "10959")
        ls.revoke_access_tokens()  # the access token we hold is no longer valid
        polygons = ls.annotations["68501"][0]
        assert post(live.url, webhook(polygons, None, 132)).status_code == 202
        manifest_of(tmp_path / "out" / "labelstudio" / "132" / "68501")
    refreshes = ls.requests_to("/api/token/refresh/")
    assert len(refreshes) == 2 and first["labelstudio"]["task"] == "10959"
    auth = [h.get("authorization", "") for _, _, h in ls.requests_to("/api/") if "/token/" not in _]
    assert auth and all(a.startswith("Bearer ") for a in auth)
    assert all(ls.refresh_token not in a for a in auth)


def test_bad_token_is_401_and_stores_nothing(
    make_settings: Any, fake: tuple[FakeLabelStudio, LiveServer], tmp_path: Path
) -> None:
    ls, api = fake
    task, annotation = obb_task()
    with service(make_settings, api.url, ls.legacy_token) as live:
        for token in (None, "nope", TOKEN + "x"):
            answer = post(live.url, webhook(annotation, task, 7), token)
            assert answer.status_code == 401 and answer.json()["error"] in (
                "missing_signature",
                "invalid_signature",
            )
    assert not (tmp_path / "out" / "labelstudio").exists()
    assert ls.seen == []


def test_malformed_rle_is_a_dead_letter_naming_the_region(
    make_settings: Any, fake: tuple[FakeLabelStudio, LiveServer], tmp_path: Path
) -> None:
    ls, api = fake
    annotation = magicwand_annotation()
    wand = next(r for r in annotation["result"] if r["type"] == "magicwand" and r["id"] == "PNCeI7jyxe")
    wand["value"]["rle"] = wand["value"]["rle"][:500]  # cut short
    ls.annotations["1202"] = [annotation]
    with service(make_settings, api.url, ls.legacy_token) as live:
        assert post(live.url, webhook(annotation, None, 3)).status_code == 202
        reason = dead_reason(tmp_path)
    assert "PNCeI7jyxe" in reason and "brush RLE ends inside" in reason
    assert not (tmp_path / "out" / "labelstudio" / "3" / "1202" / "manifest.json").exists()


def test_api_errors_are_dead_letters_without_the_key(
    make_settings: Any, fake: tuple[FakeLabelStudio, LiveServer], tmp_path: Path
) -> None:
    _, api = fake
    task, annotation = obb_task()
    with service(make_settings, api.url, "wrong-legacy-key") as live:
        assert post(live.url, webhook(annotation, task, 7)).status_code == 202
        reason = dead_reason(tmp_path)
    assert "answered 401" in reason and "/api/tasks/10959/annotations/" in reason
    assert "wrong-legacy-key" not in reason


def test_a_bulk_event_writes_one_output_set_per_task(
    make_settings: Any, fake: tuple[FakeLabelStudio, LiveServer], tmp_path: Path
) -> None:
    ls, api = fake
    _, obb = obb_task()
    [polygons] = ls.annotations["68501"]
    polygons = {**polygons, "project": 7}  # one project for the bulk (Label Studio sends per project)
    ls.annotations["68501"] = [polygons]
    body = webhook([obb, polygons], None, 7, "ANNOTATIONS_CREATED")
    with service(make_settings, api.url, ls.legacy_token) as live:
        answer = post(live.url, body)
        assert answer.status_code == 202
        root = tmp_path / "out" / "labelstudio" / "7"
        bulk = wait_for(
            lambda: next((p for p in root.glob("bulk-*") if (p / "manifest.json").exists()), None)
        )
    index = json.loads((bulk / "tasks.json").read_text())
    assert [t["task"] for t in index] == ["10959", "68501"]
    for task_id in ("10959", "68501"):
        manifest = json.loads((root / task_id / "manifest.json").read_text())
        assert manifest["job"] == task_id and {f["path"] for f in manifest["files"]} >= {
            "masks/0/instances.png", "annotations.json", "labelmap.json", "result.json", "callback.json",
        }  # fmt: skip


def test_an_old_brush_result_without_sizes_reads_the_size_from_the_image_header(
    make_settings: Any, fake: tuple[FakeLabelStudio, LiveServer], tmp_path: Path
) -> None:
    ls, api = fake
    result = load("brush_rle_sample_multiliteral.json.gz")["result"]  # the editor example: no sizes
    assert "original_width" not in result and result["source"] == "$image"
    annotation = {**magicwand_annotation(), "id": 555, "task": 555, "project": 4, "result": [result]}
    ls.annotations["555"] = [annotation]
    ls.tasks["555"] = {"id": 555, "data": {"image": "/data/upload/4/planet.png"}, "project": 4}
    ls.projects["4"] = project(4, "label_config_image_segmentation.frontend.xml")
    image = io.BytesIO()
    Image.new("RGB", (2242, 2802)).save(image, "PNG")
    ls.files["/data/upload/4/planet.png"] = image.getvalue()
    body = webhook(annotation, None, 4)
    assert len(body) > 4 * 1024 * 1024  # Label Studio posts the whole annotation: ~3.9 MB of RLE here
    with service(make_settings, api.url, ls.legacy_token) as live:
        assert post(live.url, body).status_code == 413  # over the default cap: lost (no retries)
    cap = {"LABELHOOK_MAX_BODY_BYTES": str(32 * 1024 * 1024)}
    with service(make_settings, api.url, ls.legacy_token, **cap) as live:
        assert post(live.url, body).status_code == 202
        job = tmp_path / "out" / "labelstudio" / "4" / "555"
        manifest = manifest_of(job)
    assert manifest["labelstudio"]["sizes_read_from_images"] == {"img": "/data/upload/4/planet.png"}
    instances = png(job / "masks" / "0" / "instances.png")
    expected = json.loads((DATA / "brush_rle_expected.json").read_text())["vectors"][-1]["expected"]
    ys, xs = np.nonzero(instances)
    assert instances.shape == (2802, 2242) and len(ys) == expected["alpha_nonzero_pixels"]
    assert [xs.min(), ys.min(), xs.max(), ys.max()] == expected["bbox_xyxy_inclusive"]
    # Read once for the size, once into the output set (FETCH_IMAGES=1), with the API token both times.
    downloads = ls.requests_to("/data/")
    assert [h["authorization"] for _, _, h in downloads] == [f"Token {ls.legacy_token}"] * 2
    assert (job / "images" / "0.png").read_bytes() == ls.files["/data/upload/4/planet.png"]
    coco = json.loads((job / "annotations.json").read_text())
    images = [(i["file_name"], i["width"], i["height"]) for i in coco["images"]]
    assert images == [("images/0.png", 2242, 2802)]


# --- API client ---------------------------------------------------------------------------------


@pytest.fixture
def fetcher(fake: tuple[FakeLabelStudio, LiveServer]) -> Iterator[Fetcher]:
    allow = {"LABELHOOK_FETCH_ALLOW_HOSTS": loopback_origins(fake[1].url)}
    with Fetcher.from_settings(load_settings(allow)) as f:
        yield f


def test_access_tokens_are_reused_until_a_minute_before_expiry(
    fake: tuple[FakeLabelStudio, LiveServer], fetcher: Fetcher
) -> None:
    ls, api = fake
    now = [time.time()]
    client = LabelStudioClient(fetcher, api.url, ls.refresh_token, clock=lambda: now[0])
    client.project("7")
    client.project("7")
    assert len(ls.requests_to("/api/token/refresh/")) == 1
    now[0] += ls.access_ttl - 30  # inside the last minute of the access token: refreshed first
    client.project("7")
    refreshes = ls.requests_to("/api/token/refresh/")
    assert len(refreshes) == 2 and "authorization" not in refreshes[0][2]


def test_a_refused_refresh_token_is_permanent_and_says_what_to_check(
    fake: tuple[FakeLabelStudio, LiveServer], fetcher: Fetcher
) -> None:
    ls, api = fake
    client = LabelStudioClient(fetcher, api.url, make_jwt({"token_type": "refresh", "exp": 1}))
    with pytest.raises(Permanent, match="personal access token") as info:
        client.project("7")
    assert "eyJ" not in info.value.reason
    as_is = LabelStudioClient(fetcher, api.url, f"Token {ls.legacy_token}")  # a full header: sent as-is
    assert as_is.project("7")["id"] == 7


def test_image_sizes_send_credentials_only_to_the_api_origin(
    fake: tuple[FakeLabelStudio, LiveServer], fetcher: Fetcher
) -> None:
    ls, api = fake
    image = io.BytesIO()
    Image.new("RGB", (31, 17)).save(image, "PNG")
    ls.files["/data/upload/1/a.png"] = image.getvalue()
    client = LabelStudioClient(fetcher, api.url, ls.legacy_token)
    assert client.image_size("/data/upload/1/a.png") == (31, 17)
    other = api.url.replace("127.0.0.1", "localhost")
    with pytest.raises(Permanent, match="401"):
        client.image_size(f"{other}/data/upload/1/a.png")  # another origin: no Token sent, so refused
    sent = [h.get("authorization") for _, _, h in ls.requests_to("/data/")]
    assert sent == [f"Token {ls.legacy_token}", None]


def test_the_docs_text_example_and_an_empty_image_annotation_are_output_sets_not_dead_letters(
    make_settings: Any, fake: tuple[FakeLabelStudio, LiveServer], tmp_path: Path
) -> None:
    ls, api = fake
    docs = json.loads((DATA / "webhook_annotation_created.docs.json").read_text())
    ls.annotations["19"] = [docs["annotation"]]  # a text span: the docs' NER project has no image
    ls.projects["2"] = docs["project"]
    empty = {**magicwand_annotation(), "id": 77, "task": 1203, "result": []}  # submitted with no regions
    ls.annotations["1203"] = [empty]
    ls.tasks["1203"] = {"id": 1203, "data": {"image": "/data/upload/3/sky.png"}, "project": 3}
    sky = io.BytesIO()
    Image.new("RGB", (64, 48)).save(sky, "PNG")
    ls.files["/data/upload/3/sky.png"] = sky.getvalue()
    with service(make_settings, api.url, ls.legacy_token) as live:
        assert post(live.url, (DATA / "webhook_annotation_created.docs.json").read_bytes()).status_code == 202
        assert post(live.url, webhook(empty, None, 3)).status_code == 202
        text = manifest_of(tmp_path / "out" / "labelstudio" / "2" / "19")
        image = manifest_of(tmp_path / "out" / "labelstudio" / "3" / "1203")
    assert {f["path"] for f in text["files"]} == {"callback.json", "result.json"}
    assert text["labelstudio"]["skipped"] == {"labels": 1} and text["labelstudio"]["frames"] == {}
    job = tmp_path / "out" / "labelstudio" / "3" / "1203"
    assert image["labelstudio"]["frames"] == {"0": "image_1"} and image["labelstudio"]["regions"] == 0
    assert png(job / "masks" / "0" / "instances.png").shape == (48, 64)
    assert not png(job / "masks" / "0" / "instances.png").any()
    assert json.loads((job / "annotations.json").read_text())["annotations"] == []
