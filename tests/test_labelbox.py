"""Labelbox bad input and edge cases end to end (the conformance cases: tests/conformance/).

Bad or missing signatures, review events, an expired mask URL, corrupt or mismatched masks, failed or
empty exports, a slow export task, options, video frames and the adapter's id rules.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from processors.errors import Permanent
from processors.jobs import JobBook
from processors.store import open_store
from processors.vendors.labelbox.export import label_frames
from tests.conformance.test_labelbox_conformance import (
    API_KEY,
    DATA_ROW,
    LABEL,
    MASK_PATH,
    PROJECT,
    check_output_set,
    dead_letters,
    env,
    export_row,
    job_dir,
    post,
    serve,
    signatures,
    start,
    wait_manifest,
    webhook_v1,
)
from tests.fakes.labelbox import FakeLabelbox
from tests.support import LiveServer, loopback_origins, wait_for

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


@pytest.fixture
def fake() -> Iterator[tuple[FakeLabelbox, LiveServer, LiveServer]]:
    """As in the conformance module: one fake on two origins (API, files)."""
    vendor = FakeLabelbox(api_key=API_KEY, polls_until_complete=0)
    with LiveServer(vendor.app) as api, LiveServer(vendor.app) as files:
        vendor.files_url = files.url
        yield vendor, api, files


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
    vendor, api, files = fake
    serve(vendor, api)
    vendor.add_mask(MASK_PATH, b"Forbidden", status=403)
    settings = make_settings(
        **env(api.url, tmp_path, LABELHOOK_LABELBOX_FETCH_ALLOW=loopback_origins(files.url))
    )
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
    vendor, api, files = fake
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
    settings = make_settings(
        **env(api.url, tmp_path, LABELHOOK_LABELBOX_FETCH_ALLOW=loopback_origins(files.url))
    )
    with start(settings) as live:
        assert post(live.url, webhook_v1(), headers=None).status_code == 202
        letters = wait_for(lambda: dead_letters(settings), what="dead letter")
    assert reason in letters[LABEL], letters[LABEL]
    assert not (job_dir(tmp_path) / "manifest.json").exists()


def test_export_task_in_progress_is_polled_until_complete(
    fake: tuple[FakeLabelbox, LiveServer, LiveServer], tmp_path: Path, make_settings: Any
) -> None:
    vendor, api, files = fake
    vendor.polls_until_complete = 1  # one IN_PROGRESS answer: the worker waits the SDK's 2 s minimum
    row, truth, _ = serve(vendor, api)
    settings = make_settings(
        **env(api.url, tmp_path, LABELHOOK_LABELBOX_FETCH_ALLOW=loopback_origins(files.url))
    )
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
