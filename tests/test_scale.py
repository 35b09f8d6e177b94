"""Scale bad input and edge cases end to end (the conformance cases: tests/conformance/).

Missing or wrong callback auth, undecodable index images, a refused secure URL, a recalled task,
unknown indexes, non-completed statuses, no API key, submit, poll and the pure parsing rules.
"""

from __future__ import annotations

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

import numpy as np
import pytest
from PIL import Image

from processors.errors import Permanent
from processors.jobs import JobBook
from processors.masks.indexed import read_index_image
from processors.store import open_store
from processors.vendors.scale.result import parse_label_mapping
from tests.conformance.test_scale_conformance import (
    API_KEY,
    AUTH_KEY,
    CONFORMANCE,
    TASK_ID,
    H,
    W,
    check_output_set,
    conformance_callback,
    dead_letters,
    env,
    extended_png,
    job_dir,
    png,
    post,
    serve_task,
    start,
    wait_manifest,
)
from tests.fakes.scale import FakeScale
from tests.support import ROOT, LiveServer, cli_env, wait_for

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


@pytest.fixture
def fake() -> Iterator[tuple[FakeScale, LiveServer, LiveServer]]:
    """As in the conformance module: one fake on two origins (API, public results bucket)."""
    vendor = FakeScale(api_key=API_KEY)
    with LiveServer(vendor.app) as api, LiveServer(vendor.app) as bucket:
        yield vendor, api, bucket


def test_without_an_api_key_the_callbacks_own_response_is_used(
    fake: tuple[FakeScale, LiveServer, LiveServer], tmp_path: Path, make_settings: Any
) -> None:
    vendor, api, bucket = fake
    body = conformance_callback(api, bucket)
    truth = serve_task(vendor, body)
    vendor.tasks.clear()  # the API is not asked
    body["response"]["annotations"]["combined"].pop("extendedIndexedImage")
    body["task"]["response"] = body["response"]
    settings = make_settings(**env(None, tmp_path, bucket.url))
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
    settings = make_settings(**env(api.url, tmp_path, bucket.url, LABELHOOK_SCALE_INDEX_IMAGE="indexed"))
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


def test_options_are_checked_at_start_up(make_settings: Any, tmp_path: Path) -> None:
    from processors.config import ConfigError
    from processors.vendors.scale.options import ScaleOptions

    with pytest.raises(ConfigError, match="INDEX_IMAGE must be one of extended, indexed"):
        make_settings(**env("http://127.0.0.1:9", tmp_path, LABELHOOK_SCALE_INDEX_IMAGE="colour"))
    with pytest.raises(ConfigError, match="INDEX_IMAGE_KIND"):
        make_settings(**env("http://127.0.0.1:9", tmp_path, LABELHOOK_SCALE_INDEX_IMAGE_KIND="x"))
    source = make_settings(**env("http://127.0.0.1:9", tmp_path, LABELHOOK_SCALE_FETCH_TASK="0")).sources[
        "scale"
    ]
    assert not ScaleOptions.of(source).fetches_task(source)
    keyless = make_settings(**env(None, tmp_path)).sources["scale"]
    assert not ScaleOptions.of(keyless).fetches_task(keyless)
    keyed = make_settings(**env("http://127.0.0.1:9", tmp_path)).sources["scale"]
    assert (
        ScaleOptions.of(keyed).fetches_task(keyed)
        and ScaleOptions.of(keyed).index_image_key == "extendedIndexedImage"
    )
