"""Playment / TELUS conformance: seed 003's result objects (instance-aware and simple) and its job body
as the callback, through the real intake and the Playment sandbox API; output sets to the pixel.

The instance-aware case is the README's worked example of the instance-number rule: numbers follow the
legend's order (not the ``instances`` list's, nor its per-class ``index``).
"""

from __future__ import annotations

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

from processors.queue import open_queue
from processors.store import open_store
from processors.worker import Worker
from receiver.app import create_app
from receiver.demo.sandbox.playment import SANDBOX_API_KEY, SANDBOX_PROJECT, PlaymentSandbox
from tests.conformance.payloads import load, raw
from tests.support import LiveServer, loopback_origins, wait_for

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")
KEY = "pm-conformance-key"
JOB: str = load("playment/job-callback.json")["data"]["job_id"]
# Seed 003's instance-aware legend, in legend order, with the number and class each colour must get.
EXPECTED = {
    "#00c537": (1, "car"),
    "#01d9fc": (2, "pedestrian"),
    "#fac1c2": (3, "pedestrian"),
    "#fb0379": (4, "pedestrian"),
    "#fcbe92": (5, "car"),
    "#fda7df": (6, "vegetation"),
}


def stripes(colours: list[str], *, unknown: str = "#123456") -> tuple[bytes, np.ndarray]:
    """A 24×40 RGBA mask: one horizontal band per colour, an unknown colour, an alpha-0 band."""
    rgba = np.zeros((24, 40, 4), dtype=np.uint8)
    names = np.full((24, 40), "", dtype=object)
    for band, colour in enumerate([*colours, unknown]):
        rgb = tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))
        rgba[band * 3 : band * 3 + 3, :, :3] = rgb
        rgba[band * 3 : band * 3 + 3, :, 3] = 255
        names[band * 3 : band * 3 + 3, :] = colour
    rgba[-3:, :, :3] = (0x00, 0xC5, 0x37)  # a legend colour at alpha 0: unlabeled
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, format="PNG")
    return buffer.getvalue(), names


@pytest.fixture
def sandbox() -> Iterator[tuple[PlaymentSandbox, LiveServer]]:
    vendor = PlaymentSandbox()
    with LiveServer(vendor.app) as live:
        yield vendor, live


@pytest.fixture
def service(make_settings: Any, sandbox: tuple[PlaymentSandbox, LiveServer]) -> Iterator[LiveServer]:
    settings = make_settings(
        LABELHOOK_SOURCES="pm",
        LABELHOOK_PM_VENDOR="playment",
        LABELHOOK_PM_SECRET=KEY,
        LABELHOOK_PM_API_KEY=SANDBOX_API_KEY,
        LABELHOOK_PM_API_URL=sandbox[1].url,
        LABELHOOK_FETCH_ALLOW_HOSTS=loopback_origins(sandbox[1].url),
        LABELHOOK_MAX_ATTEMPTS="2",
    )
    queue, store = open_queue(settings.queue_url), open_store(settings.store_url)
    with LiveServer(create_app(settings, queue, store, worker=Worker(settings, queue, store))) as live:
        yield live


def post(url: str, body: bytes, path: str = "/hooks/pm") -> httpx.Response:
    headers = {"content-type": "application/json", "x-playment-key": KEY}
    return httpx.post(url + path, content=body, headers=headers, timeout=10)


def output(tmp_path: Path, job_id: str) -> Path:
    folder = tmp_path / "out" / "playment" / SANDBOX_PROJECT / job_id
    wait_for(lambda: (folder / "manifest.json").exists(), timeout=30, what=f"output set of {job_id}")
    return folder


def test_instance_aware_result_numbers_instances_in_legend_order(
    sandbox: tuple[PlaymentSandbox, LiveServer], service: LiveServer, tmp_path: Path
) -> None:
    vendor, _ = sandbox
    result = load("playment/instance-aware-result.json") | {"url": "mask:source.png"}
    png, names = stripes(list(EXPECTED))
    vendor.add_job(JOB, result, masks={"source.png": png})
    body = raw("playment/job-callback.json")
    assert post(service.url, body).status_code == 202
    folder = output(tmp_path, JOB)
    assert (folder / "callback.json").read_bytes() == body

    labelmap = json.loads((folder / "labelmap.json").read_text())
    assert [(e["id"], e["name"], e["color"]) for e in labelmap] == [
        (0, "unlabeled", "#000000"),
        (1, "car", "#00c537"),
        (2, "pedestrian", "#01d9fc"),
        (3, "vegetation", "#fda7df"),
    ]
    class_id = {e["name"]: e["id"] for e in labelmap}
    with Image.open(folder / "masks" / "0" / "instances.png") as image:
        instances = np.array(image)
    with Image.open(folder / "masks" / "0" / "semantic.png") as image:
        semantic = np.array(image)
    alpha_zero = np.zeros(names.shape, dtype=bool)
    alpha_zero[-3:, :] = True
    for colour, (number, name) in EXPECTED.items():
        region = (names == colour) & ~alpha_zero
        assert np.all(instances[region] == number) and np.all(semantic[region] == class_id[name]), colour
    assert np.all(instances[(names == "#123456") | alpha_zero] == 0)
    assert np.all(semantic[(names == "#123456") | alpha_zero] == 0)

    coco = json.loads((folder / "annotations.json").read_text())
    records = {r["color"]: r for r in load("playment/instance-aware-result.json")["instances"]}
    for annotation in coco["annotations"]:
        colour = annotation["color"]
        assert annotation["instance_number"] == EXPECTED[colour][0]
        assert annotation["instance_id"] == records[colour]["_id"]
        decoded = coco_mask.decode(annotation["segmentation"]).astype(bool)
        assert np.array_equal(decoded, (names == colour) & ~alpha_zero)
    assert coco["warnings"]["unknown_colors"] == {"#123456": 3 * 40}
    assert post(service.url, body, "/hooks/pm/").json()["duplicate"] is True  # same source, same job


def test_simple_result_with_the_documented_malformed_key(
    sandbox: tuple[PlaymentSandbox, LiveServer], service: LiveServer, tmp_path: Path
) -> None:
    vendor, _ = sandbox
    job_id = "5a1c2e3f-0b4d-4e6f-8a9b-1c2d3e4f5a6b"
    result = load("playment/simple-result.json") | {"url": "mask:source.png"}
    png, names = stripes(["#f23334", "#fd2d34"])
    vendor.add_job(job_id, result, masks={"source.png": png})
    body = load("playment/job-callback.json")
    body["data"]["job_id"] = job_id
    assert post(service.url, json.dumps(body).encode(), "/hooks/pm/").status_code == 202
    folder = output(tmp_path, job_id)
    coco = json.loads((folder / "annotations.json").read_text())
    assert coco["warnings"]["invalid_legend_keys"] == ["#fdffd34"]
    labelmap = {e["name"]: e["id"] for e in json.loads((folder / "labelmap.json").read_text())}
    with Image.open(folder / "masks" / "0" / "semantic.png") as image:
        semantic = np.array(image)
    alpha_zero = np.zeros(names.shape, dtype=bool)
    alpha_zero[-3:, :] = True
    assert np.all(semantic[(names == "#f23334") & ~alpha_zero] == labelmap["Sky"])
    assert np.all(semantic[(names == "#fd2d34") & ~alpha_zero] == labelmap["Tree"])
    assert "Car" not in labelmap
