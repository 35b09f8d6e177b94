"""super.AI end to end: real uvicorn for labelhook and for a fake super.AI, the real worker and queue."""

from __future__ import annotations

import asyncio
import base64
import hashlib
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
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from PIL import Image
from pycocotools import mask as coco_mask

from processors.config import Settings
from processors.jobs import JobBook
from processors.queue import open_queue
from processors.store import open_store
from processors.worker import Worker
from receiver.app import create_app
from tests.fakes.superai import FakeSuperAI
from tests.support import ROOT, LiveServer, cli_env, loopback_origins, wait_for

TOKEN = "tok-superai-0123456789"
PROJECT = "proj-uuid-1"
RED, GREEN, UNKNOWN = (255, 0, 0), (0, 255, 0), (12, 34, 56)
# pycocotools' Cython decode trips numpy 2's __array__(copy=) deprecation; that is its issue, not ours.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


@pytest.fixture
def fake() -> Iterator[tuple[FakeSuperAI, LiveServer]]:
    vendor = FakeSuperAI()
    with LiveServer(vendor.app) as live:
        yield vendor, live


def env(api_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    base = {
        "LABELHOOK_QUEUE": f"sqlite:///{tmp_path}/queue.db",
        "LABELHOOK_STORE": f"file://{tmp_path}/out",
        "LABELHOOK_SOURCES": "superai",
        "LABELHOOK_SUPERAI_SECRET": TOKEN,
        "LABELHOOK_SUPERAI_API_KEY": "sai-test-key",
        "LABELHOOK_SUPERAI_API_URL": api_url,
        "LABELHOOK_SUPERAI_PROJECT_ID": PROJECT,
        "LABELHOOK_FETCH_ALLOW_HOSTS": loopback_origins(api_url),
        "LABELHOOK_RETRY_BASE_SECONDS": "0.05",
        "LABELHOOK_LEASE_SECONDS": "5",
    }
    base.update(extra)
    return base


def start(settings: Settings, *, worker: bool = True) -> LiveServer:
    queue = open_queue(settings.queue_url)
    store = open_store(settings.store_url)
    w = Worker(settings, queue, store, drain_seconds=5) if worker else None
    return LiveServer(create_app(settings, queue, store, worker=w))


def callback(url: str, body: Any, *, token: str | None = TOKEN, **headers: str) -> httpx.Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    query = f"?token={token}" if token is not None else ""
    return httpx.post(
        f"{url}/hooks/superai{query}",
        content=raw,
        headers={"content-type": "application/json", **headers},
        timeout=10,
    )


def dead_letters(settings: Settings) -> dict[str, str]:
    async def read() -> dict[str, str]:
        queue = open_queue(settings.queue_url)
        try:
            return {d.job_id: d.last_error or "" for d in await queue.dead_letters()}
        finally:
            await queue.close()

    return asyncio.run(read())


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


def mask_png() -> tuple[bytes, dict[str, np.ndarray]]:
    """A 10×8 RGBA mask and, independently, the boolean region of each colour."""
    h, w = 8, 10
    rgba = np.zeros((h, w, 4), dtype=np.uint8)
    truth = {name: np.zeros((h, w), dtype=bool) for name in ("car", "road", "unknown")}
    for (y0, y1, x0, x1), rgb, name in (
        ((0, 3, 0, 4), RED, "car"),
        ((4, 8, 0, 10), GREEN, "road"),
        ((0, 2, 8, 10), UNKNOWN, "unknown"),
    ):
        rgba[y0:y1, x0:x1, :3] = rgb
        rgba[y0:y1, x0:x1, 3] = 255
        truth[name][y0:y1, x0:x1] = True
    rgba[5, 5] = (*RED, 0)  # alpha 0 is unlabeled whatever the colour
    truth["road"][5, 5] = False
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, format="PNG")
    return buffer.getvalue(), truth


def segmentation_job(
    vendor: FakeSuperAI, job_id: str, image_url: str = "https://example.invalid/input.jpg"
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    png, truth = mask_png()
    vendor.add_file(f"data://1/jobs/{job_id}/mask.png", png, "image/png")
    vendor.add_file(f"data://1/jobs/{job_id}/notes.txt", b"reviewed twice\n", "text/plain")
    response = {
        "id": int(job_id),
        "state": "COMPLETED",
        "input": {"imageUrl": image_url},
        "response": {
            "annotations": {
                "mask": f"data://1/jobs/{job_id}/mask.png",
                "legend": {"#FF0000": "car", "#00ff00": "road"},
            },
            "extras": [f"/v1/data/url?path=data://1/jobs/{job_id}/notes.txt"],
        },
    }
    vendor.add_job(job_id, "COMPLETED", response)
    return response, truth


def job_dir(tmp_path: Path, job_id: str) -> Path:
    return tmp_path / "out" / "superai" / PROJECT / job_id


def wait_manifest(tmp_path: Path, job_id: str, timeout: float = 15) -> dict[str, Any]:
    path = job_dir(tmp_path, job_id) / "manifest.json"
    manifest: dict[str, Any] = json.loads(
        wait_for(lambda: path.exists() and path.read_bytes(), timeout=timeout, what=f"manifest of {job_id}")
    )
    return manifest


def test_completed_job_called_back_twice_gives_one_output_set_with_media_and_decoded_masks(
    fake: tuple[FakeSuperAI, LiveServer], tmp_path: Path, make_settings: Any
) -> None:
    vendor, api = fake
    png, _ = mask_png()
    photo = io.BytesIO()
    Image.open(io.BytesIO(png)).convert("RGB").save(photo, format="JPEG")  # a photo of the mask's size
    image_path = vendor.add_public("42.jpg", photo.getvalue())
    _, truth = segmentation_job(vendor, "42", image_url=api.url + image_path)
    settings = make_settings(**env(api.url, tmp_path))
    body = {
        "id": 42,
        "uuid": "u-42",
        "state": "COMPLETED",
        "action": "done",
        "postProcessingEnabled": "false",
    }
    with start(settings) as live:
        first = callback(live.url, body)
        second = callback(live.url, body)
        assert first.status_code == 202 and first.json()["duplicate"] is False
        assert second.status_code == 200 and second.json()["duplicate"] is True
        manifest = wait_manifest(tmp_path, "42")
        time.sleep(0.5)  # room for a wrongly duplicated second processing to show up
    out = job_dir(tmp_path, "42")
    assert json.loads((out / "callback.json").read_bytes()) == body
    assert (out / "media" / "mask.png").read_bytes() == vendor.files["data://1/jobs/42/mask.png"][0]
    assert (out / "media" / "notes.txt").read_bytes() == b"reviewed twice\n"
    assert json.loads((out / "result.json").read_bytes())["response"]["annotations"]["legend"]
    listed = {f["path"]: f for f in manifest["files"]}
    for name in ("callback.json", "result.json", "media/mask.png", "media/notes.txt", "labelmap.json"):
        assert listed[name]["sha256"] == hashlib.sha256((out / name).read_bytes()).hexdigest()
    assert len(vendor.requests_to("/v1/jobs/42/response")) == 1
    # The input image (the customer's URL echoed in the response) is fetched, without the API key.
    assert (out / "images" / "0.jpg").read_bytes() == photo.getvalue()
    public = [s for s in vendor.seen if s.path == "/public/42.jpg"]
    assert len(public) == 1 and "api-key" not in public[0].headers

    labelmap = {entry["name"]: entry for entry in json.loads((out / "labelmap.json").read_bytes())}
    assert labelmap["car"]["color"] == "#ff0000" and labelmap["unlabeled"]["id"] == 0
    semantic = np.array(Image.open(out / "masks" / "0" / "semantic.png"))
    expected = np.zeros(semantic.shape, dtype=np.int64)
    expected[truth["car"]] = labelmap["car"]["id"]
    expected[truth["road"]] = labelmap["road"]["id"]
    assert (semantic == expected).all()
    annotations = json.loads((out / "annotations.json").read_bytes())
    by_color = {a["color"]: a for a in annotations["annotations"]}
    assert set(by_color) == {"#ff0000", "#00ff00"}
    for colour, name in (("#ff0000", "car"), ("#00ff00", "road")):
        decoded = coco_mask.decode(by_color[colour]["segmentation"]).astype(bool)
        assert (decoded == truth[name]).all()
        assert by_color[colour]["area"] == int(truth[name].sum())
    assert annotations["warnings"]["unknown_colors"] == {"#0c2238": int(truth["unknown"].sum())}
    assert [i["file_name"] for i in annotations["images"]] == ["images/0.jpg"]
    assert annotations["warnings"]["images_not_fetched"] == {}


def test_non_final_states_are_recorded_not_processed_and_listed_by_jobs(
    fake: tuple[FakeSuperAI, LiveServer], tmp_path: Path, make_settings: Any
) -> None:
    vendor, api = fake
    environ = env(api.url, tmp_path)
    settings = make_settings(**environ)
    book = JobBook(open_store(settings.store_url))
    with start(settings) as live:
        for state in ("SCHEDULED", "IN_PROGRESS", "IN_PROGRESS"):
            assert callback(live.url, {"id": 7, "uuid": "u7", "state": state}).status_code in (200, 202)
        assert callback(
            live.url, {"id": 8, "state": "in_progress", "postProcessingEnabled": True}
        ).status_code
        assert callback(live.url, {"id": 9, "state": "Failed"}).status_code == 202
        wait_for(lambda: (r := book.get("superai", "9")) is not None and r.state == "failed", what="job 9")
        wait_for(lambda: (r := book.get("superai", "7")) and r.vendor_state == "IN_PROGRESS", what="job 7")
        wait_for(lambda: book.get("superai", "8"), what="job 8")
    result = run_cli("jobs", "--source", "superai", "--json", environ=environ, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    jobs = {j["job_id"]: j for j in json.loads(result.stdout)}
    assert (jobs["7"]["state"], jobs["7"]["vendor_state"]) == ("open", "IN_PROGRESS")
    assert (jobs["8"]["state"], jobs["9"]["state"], jobs["9"]["vendor_state"]) == ("open", "failed", "Failed")
    assert not [s for s in vendor.seen if s.path.endswith("/response")]
    assert not list((tmp_path / "out").rglob("manifest.json"))


def test_expired_signed_url_is_resolved_again(
    fake: tuple[FakeSuperAI, LiveServer], tmp_path: Path, make_settings: Any
) -> None:
    vendor, api = fake
    vendor.add_file("data://1/jobs/5/out.json", b'{"answer": 42}', "application/json")
    vendor.add_job("5", "COMPLETED", {"output": {"file": "data://1/jobs/5/out.json"}})
    vendor.expire_next = 1
    with start(make_settings(**env(api.url, tmp_path))) as live:
        assert callback(live.url, {"id": 5, "state": "COMPLETED"}).status_code == 202
        wait_manifest(tmp_path, "5")
    assert (job_dir(tmp_path, "5") / "media" / "out.json").read_bytes() == b'{"answer": 42}'
    assert len(vendor.requests_to("/v1/data/url")) == 2
    downloads = [s for s in vendor.seen if s.path.startswith("/signed/")]
    assert len(downloads) == 2
    # The signed-URL host is another origin: the API key is never sent there.
    assert all("api-key" not in s.headers for s in downloads)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _sign_raw(key: ec.EllipticCurvePrivateKey, body: dict[str, Any]) -> str:
    """As super.AI describes it: keys sorted, ECDSA P-256/SHA-256, raw r||s; hex here."""
    message = json.dumps(body, sort_keys=True).encode()
    r, s = decode_dss_signature(key.sign(message, ec.ECDSA(hashes.SHA256())))
    return (r.to_bytes(32, "big") + s.to_bytes(32, "big")).hex()


def test_signature_mode_accepts_super_ai_signatures_and_refuses_forged_or_missing_ones(
    fake: tuple[FakeSuperAI, LiveServer], tmp_path: Path, make_settings: Any
) -> None:
    _, api = fake
    key, other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    settings = make_settings(
        **env(api.url, tmp_path, LABELHOOK_SUPERAI_SECRET="", LABELHOOK_SUPERAI_PUBLIC_KEY=_key_pem(key))
    )
    body = {"id": 11, "uuid": "u11", "state": "IN_PROGRESS", "postProcessingEnabled": "true"}
    header = "x-superai-webhook-signature"
    with start(settings, worker=False) as live:
        forged = callback(live.url, body, token=None, **{header: _sign_raw(other, body)})
        assert (forged.status_code, forged.json()["error"]) == (401, "invalid_signature")
        tampered = callback(
            live.url, {**body, "state": "COMPLETED"}, token=None, **{header: _sign_raw(key, body)}
        )
        assert (tampered.status_code, tampered.json()["error"]) == (401, "invalid_signature")
        missing = callback(live.url, body)  # a token is no substitute once a key is configured
        assert (missing.status_code, missing.json()["error"]) == (401, "missing_signature")
        der_b64 = base64.b64encode(key.sign(json.dumps(body).encode(), ec.ECDSA(hashes.SHA256()))).decode()
        assert callback(live.url, body, token=None, **{header: _sign_raw(key, body)}).status_code == 202
        assert callback(live.url, body, token=None, **{header: der_b64}).status_code == 200  # same job+state


def test_token_is_required_and_checked(
    fake: tuple[FakeSuperAI, LiveServer], tmp_path: Path, make_settings: Any
) -> None:
    _, api = fake
    body = {"id": 12, "state": "IN_PROGRESS"}
    with start(make_settings(**env(api.url, tmp_path)), worker=False) as live:
        missing = callback(live.url, body, token=None)
        assert (missing.status_code, missing.json()["error"]) == (401, "missing_signature")
        wrong = callback(live.url, body, token="tok-superai-0123456788")
        assert (wrong.status_code, wrong.json()["error"]) == (401, "invalid_signature")
        assert callback(live.url, body, token=None, **{"x-labelhook-token": TOKEN}).status_code == 202
        malformed = callback(live.url, {"id": 12})
        assert (malformed.status_code, malformed.json()["error"]) == (400, "malformed_body")
        batch = callback(live.url, [{"id": 13, "state": "COMPLETED"}, {"id": 14, "state": "COMPLETED"}])
        assert batch.status_code == 202  # recorded (jobs listed), processed via polling


def test_api_401_404_and_malformed_json_end_in_dead_letters_with_reasons(
    fake: tuple[FakeSuperAI, LiveServer], tmp_path: Path, make_settings: Any
) -> None:
    vendor, api = fake
    vendor.add_job("21", "COMPLETED", {"ok": True})
    vendor.add_job("23", "COMPLETED", b'{"response": {"mask": "data://1/x.png"')
    settings = make_settings(**env(api.url, tmp_path))
    with start(settings) as live:
        assert callback(live.url, {"id": 22, "state": "COMPLETED"}).status_code == 202  # unknown: 404
        assert callback(live.url, {"id": 23, "state": "COMPLETED"}).status_code == 202
        wait_for(lambda: {"22", "23"} <= set(dead_letters(settings)), what="dead letters 22, 23")
        vendor.api_key = "rotated-key"  # labelhook's key is now wrong: 401
        assert callback(live.url, {"id": 21, "state": "COMPLETED"}).status_code == 202
        reasons = wait_for(lambda: (d := dead_letters(settings)) and "21" in d and d, what="dead letter 21")
    assert "401" in reasons["21"] and "super.AI job 21 response" in reasons["21"]
    assert "404" in reasons["22"]
    assert "malformed JSON" in reasons["23"]
    assert not any("sai-test-key" in r for r in reasons.values())
    assert not list((tmp_path / "out").rglob("manifest.json"))


def test_429_with_retry_after_then_5xx_then_success(
    fake: tuple[FakeSuperAI, LiveServer], tmp_path: Path, make_settings: Any
) -> None:
    vendor, api = fake
    vendor.add_file("data://1/jobs/31/a.bin", b"\x00\x01" * 1000)
    vendor.add_job("31", "COMPLETED", {"files": ["data://1/jobs/31/a.bin"]})
    vendor.fail("/v1/jobs/31/response", 429, headers={"Retry-After": "1"})
    vendor.fail("/v1/jobs/31/response", 503)
    with start(make_settings(**env(api.url, tmp_path))) as live:
        assert callback(live.url, {"id": 31, "state": "completed"}).status_code == 202
        manifest = wait_manifest(tmp_path, "31")
    calls = vendor.requests_to("/v1/jobs/31/response")
    assert len(calls) == 3
    assert calls[1].at - calls[0].at >= 0.9  # Retry-After: 1 was honoured
    entry = next(f for f in manifest["files"] if f["path"] == "media/a.bin")
    assert entry["size"] == 2000 and entry["sha256"] == hashlib.sha256(b"\x00\x01" * 1000).hexdigest()
    assert manifest["media"] == [{"ref": "data://1/jobs/31/a.bin", "path": "media/a.bin"}]


def test_submit_over_4_mb_exits_2_before_sending(
    fake: tuple[FakeSuperAI, LiveServer], tmp_path: Path
) -> None:
    vendor, api = fake
    big = tmp_path / "big.json"
    big.write_text(json.dumps([{"text": "x" * 1_000_000} for _ in range(5)]))
    environ = env(api.url, tmp_path, LABELHOOK_SUPERAI_APP_ID="app-1", LABELHOOK_PUBLIC_URL="https://lh.test")
    result = run_cli("submit", "superai", str(big), environ=environ, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "4 MB" in result.stderr
    assert vendor.seen == []


def test_submit_records_jobs_and_registers_the_tokenised_callback_url(
    fake: tuple[FakeSuperAI, LiveServer], tmp_path: Path, make_settings: Any
) -> None:
    vendor, api = fake
    settings = make_settings(**env(api.url, tmp_path))
    with start(settings, worker=False) as live:
        environ = env(api.url, tmp_path, LABELHOOK_SUPERAI_APP_ID="app-1", LABELHOOK_PUBLIC_URL=live.url)
        payload = {
            "inputs": [
                {"imageUrl": "https://example.invalid/a.jpg"},
                {"imageUrl": "https://example.invalid/b.jpg"},
            ],
            "metadata": {"id": "my-1"},
            "tags": ["batch-7"],
        }
        (tmp_path / "in.json").write_text(json.dumps(payload))
        result = run_cli(
            "submit", "superai", str(tmp_path / "in.json"), "--json", environ=environ, cwd=tmp_path
        )
        assert result.returncode == 0, result.stderr
        [sent] = vendor.requests_to("/v1/apps/app-1/jobs", "POST")
        body = json.loads(sent.body)
        # super.AI's callback docs: the URL "must … end with a trailing slash".
        assert body["callbackUrl"] == f"{live.url}/hooks/superai/?token={TOKEN}"
        assert (body["inputs"], body["metadata"], body["tags"]) == (
            payload["inputs"],
            payload["metadata"],
            payload["tags"],
        )
        assert sent.headers["api-key"] == "sai-test-key"
        ids = sorted(j["job"] for j in json.loads(result.stdout))
        assert len(ids) == 2
        records = {r.job_id: r for r in JobBook(open_store(settings.store_url)).list("superai")}
        assert sorted(records) == ids and all(r.state == "open" for r in records.values())
        # The URL super.AI received is one labelhook accepts.
        reply = httpx.post(body["callbackUrl"], json={"id": int(ids[0]), "state": "IN_PROGRESS"}, timeout=10)
        assert reply.status_code == 202


def test_poll_picks_up_a_completed_job_whose_callback_never_came_exactly_once(
    fake: tuple[FakeSuperAI, LiveServer], tmp_path: Path, make_settings: Any
) -> None:
    vendor, api = fake
    vendor.add_file("data://1/jobs/50/r.txt", b"result 50")
    vendor.add_job("50", "COMPLETED", {"file": "data://1/jobs/50/r.txt"})
    vendor.add_job("51", "IN_PROGRESS", {})
    environ = env(api.url, tmp_path)
    settings = make_settings(**environ)
    book = JobBook(open_store(settings.store_url))
    for job_id in ("50", "51"):
        book.note(source="superai", vendor="superai", job_id=job_id, project=PROJECT, state="open")
    first = run_cli("poll", "superai", "--json", environ=environ, cwd=tmp_path)
    second = run_cli("poll", "superai", "--json", environ=environ, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["enqueued"] == 1 and json.loads(first.stdout)["open"] == 1
    assert json.loads(second.stdout)["enqueued"] == 0
    with start(settings) as live:
        wait_manifest(tmp_path, "50")
        late = callback(live.url, {"id": 50, "state": "COMPLETED"})
        assert late.status_code == 200 and late.json()["duplicate"] is True
        time.sleep(0.5)
    assert len(vendor.requests_to("/v1/jobs/50/response")) == 1
    assert (job_dir(tmp_path, "50") / "job.json").exists()
    assert (job_dir(tmp_path, "50") / "media" / "r.txt").read_bytes() == b"result 50"
    assert book.get("superai", "50").state == "completed"  # type: ignore[union-attr]
    assert book.get("superai", "51").state == "open"  # type: ignore[union-attr]


def test_v2_bodies_are_parsed_strictly() -> None:
    from processors.config import Secret, SourceConfig
    from receiver.errors import BadRequest
    from receiver.vendors import IncomingRequest
    from receiver.vendors.superai import SuperAIAdapter

    adapter = SuperAIAdapter(SourceConfig("superai", "superai", (Secret(TOKEN),)))

    def verify(body: dict[str, Any]) -> Any:
        request = IncomingRequest({}, {"token": TOKEN}, json.dumps(body).encode())
        return adapter.verify(request, 0.0)

    batch = {"version": "2", "entityType": "batch", "entityId": "b-1", "state": "COMPLETED", "appId": "a-1"}
    callback = verify(batch)
    assert (callback.kind, callback.job_id, callback.project, callback.dedupe_key) == (
        "batch",
        "b-1",
        "a-1",
        "superai:batch:b-1:completed",
    )
    assert verify({**batch, "version": 2}).kind == "batch"  # a number is the same version
    for bad in ({**batch, "version": "3"}, {**batch, "entityId": ""}, {**batch, "state": None}):
        with pytest.raises(BadRequest):
            verify(bad)
