"""TechForge (seed 001) end to end: submit, poll, stream results, against a fake vendor over real HTTP."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from processors.config import ConfigError, Settings
from processors.errors import Permanent
from processors.jobs import JobBook
from processors.polling import completion_key, poll_source
from processors.queue import RetryPolicy, open_queue
from processors.store import Store, open_store
from processors.store.s3 import S3Store
from processors.vendors.techforge import api
from processors.vendors.techforge.processor import TechForgeProcessor
from processors.worker import Worker
from receiver.app import create_app
from tests.fakes.techforge import API_KEY, FakeTechForge
from tests.support import ROOT, LiveServer, loopback_origins, queue_rows, wait_for

MB = 1024 * 1024
TEMPLATE = "tpl-brand-1"


@pytest.fixture
def vendor() -> Iterator[FakeTechForge]:
    fake = FakeTechForge()
    with LiveServer(fake.app) as server:
        fake.bind(server.port)
        yield fake


def tf_env(fake: FakeTechForge, **extra: str) -> dict[str, str]:
    return {
        "LABELHOOK_SOURCES": "tf",
        "LABELHOOK_TF_VENDOR": "techforge",
        "LABELHOOK_TF_API_KEY": API_KEY,
        "LABELHOOK_TF_API_URL": fake.api_origin,
        "LABELHOOK_TF_POLL_INTERVAL_SECONDS": "0.1",
        "LABELHOOK_FETCH_ALLOW_HOSTS": loopback_origins(fake.api_origin),
        **extra,
    }


def video_job(**extra: Any) -> dict[str, Any]:
    return {
        "job_type": "video",
        "template_id": TEMPLATE,
        "version": 2,
        "session_id": "s-1",
        "values": {"headline": "Autumn sale", "logo": {"image_url": "https://cdn.example/logo.png"}},
        "background_music": None,
        "background_volume": 0.4,
        "background_start": 0,
        **extra,
    }


def expected_bytes_sha256(name: str, size: int) -> str:
    """Independent reference for the fake's file content: sha256(name) repeated, cut to ``size``."""
    seed = hashlib.sha256(name.encode()).digest()
    digest = hashlib.sha256()
    block = seed * (MB // len(seed))
    full, rest = divmod(size, len(block))
    for _ in range(full):
        digest.update(block)
    digest.update(block[:rest])
    return digest.hexdigest()


def open_job(settings: Settings, store: Store, fake: FakeTechForge, script: list[str], **kw: Any) -> str:
    """A job the vendor knows and the job book records as open, as `labelhook submit` leaves it."""
    job_id = fake.add_job(script, **kw)
    JobBook(store).note(
        source="tf", vendor="techforge", job_id=job_id, project=TEMPLATE, state="open", vendor_state="QUEUED"
    )
    return job_id


@pytest.fixture
def make_processor() -> Iterator[Callable[[Settings], TechForgeProcessor]]:
    """Processors built by a test, closed after it (their HTTP clients hold pooled sockets)."""
    made: list[TechForgeProcessor] = []

    def make(settings: Settings) -> TechForgeProcessor:
        made.append(TechForgeProcessor(settings.sources["tf"], settings))
        return made[-1]

    yield make
    for processor in made:
        processor.close()


def start_worker(settings: Settings, store: Store | None = None) -> tuple[LiveServer, Worker, Any]:
    queue = open_queue(settings.queue_url, RetryPolicy(settings.max_attempts, 0.05, 1.0))
    store = store or open_store(settings.store_url)
    worker = Worker(settings, queue, store, drain_seconds=2)
    return LiveServer(create_app(settings, queue, store, worker=worker)), worker, queue


def run_cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "receiver", *args],
        env={**env, "PYTHONPATH": str(ROOT)},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def cli_environ(tmp_path: Path, fake: FakeTechForge) -> dict[str, str]:
    import os

    base = {k: v for k, v in os.environ.items() if not k.startswith(("LABELHOOK_", "AWS_"))}
    return {
        **base,
        "LABELHOOK_QUEUE": f"sqlite:///{tmp_path}/queue.db",
        "LABELHOOK_STORE": f"file://{tmp_path}/out",
        **tf_env(fake),
    }


# --- submit -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"job_type": "hologram"}, "job_type"),
        ({"job_type": None}, "job_type"),
        ({"template_id": None}, "template_id"),
        ({"values": {"headline": 12}}, "values.headline"),
        ({"values": {"logo": {"effects": []}}}, "values.logo"),
        ({"background_volume": 1.5}, "background_volume"),
        ({"background_volume": "loud"}, "background_volume"),
        ({"background_start": -2}, "background_start"),
        ({"version": "two"}, "version"),
        ({"job_type": "tts", "background_volume": 0.5}, "background_volume"),
    ],
)
def test_submit_validation_names_the_field_and_sends_nothing(
    make_processor: Any, vendor: FakeTechForge, make_settings: Any, change: dict[str, Any], field: str
) -> None:
    settings = make_settings(**tf_env(vendor))
    processor = make_processor(settings)
    body = {k: v for k, v in {**video_job(), **change}.items() if v is not None or k == "background_music"}
    with pytest.raises(Permanent) as caught:
        processor.prepare_submit([video_job(), body], None)
    assert f"jobs[1].{field}" in caught.value.reason
    assert vendor.calls("/api/provider/jobs") == []


def test_liberal_inputs_are_accepted(make_processor: Any, vendor: FakeTechForge, make_settings: Any) -> None:
    settings = make_settings(**tf_env(vendor))
    processor = make_processor(settings)
    jobs = [
        video_job(background_volume="0.5", version="2"),
        {
            "job_type": "TTS",
            "project_id": "proj-7",
            "values": {"voice": {"audio_url": "u", "effects": ["echo"]}},
        },
        {"job_type": "ai_image_generation", "project_id": "proj-7"},
    ]
    submitted = processor.submit({"jobs": jobs}, None)
    assert [s.vendor_state for s in submitted] == ["QUEUED"] * 3
    assert [s.project for s in submitted] == [TEMPLATE, "proj-7", "proj-7"]
    sent = [json.loads(json.dumps(job)) for job in jobs]
    assert [vendor.jobs[s.job_id].body for s in submitted] == sent  # the body goes as written


def test_cli_submit_records_each_job_with_plain_progress_lines(vendor: FakeTechForge, tmp_path: Path) -> None:
    env = cli_environ(tmp_path, vendor)
    (tmp_path / "jobs.json").write_text(json.dumps([video_job(), video_job(job_type="ai_talking_video")]))
    result = run_cli("submit", "tf", str(tmp_path / "jobs.json"), "--json", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = json.loads(_without_logs(result.stdout))
    assert len(rows) == 2 and {r["vendor_state"] for r in rows} == {"QUEUED"}
    # Not a terminal: one plain line per job, not a bar.
    assert "submitting to tf: 1/2" in result.stderr and "submitting to tf: 2/2" in result.stderr
    assert "\r" not in result.stderr
    records = JobBook(open_store(f"file://{tmp_path}/out")).list("tf")
    assert {r.job_id for r in records} == {r["job"] for r in rows}
    assert all(r.state == "open" and r.vendor_state == "QUEUED" for r in records)
    for _, _, headers in vendor.calls("/api/provider/jobs"):
        assert headers["x-api-key"] == API_KEY


def test_cli_submit_with_a_bad_job_exits_2_names_the_field_and_sends_nothing(
    vendor: FakeTechForge, tmp_path: Path
) -> None:
    env = cli_environ(tmp_path, vendor)
    (tmp_path / "jobs.json").write_text(json.dumps([video_job(), video_job(background_volume=2)]))
    result = run_cli("submit", "tf", str(tmp_path / "jobs.json"), env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "jobs[1].background_volume" in result.stderr
    assert vendor.calls("/api/provider/jobs") == []


def test_submit_errors_from_the_vendor_are_permanent_and_readable(
    make_processor: Any, vendor: FakeTechForge, make_settings: Any
) -> None:
    settings = make_settings(**tf_env(vendor, LABELHOOK_TF_API_KEY="wrong-key"))
    with pytest.raises(Permanent, match="401") as caught:
        make_processor(settings).submit(video_job(), None)
    assert "wrong-key" not in caught.value.reason
    settings = make_settings(**tf_env(vendor))
    with pytest.raises(Permanent, match=r"400.*could not be resolved"):
        make_processor(settings).submit(video_job(template_id="nope"), None)


def test_config_requires_api_key_and_url(vendor: FakeTechForge, make_settings: Any) -> None:
    env = tf_env(vendor)
    del env["LABELHOOK_TF_API_KEY"]
    with pytest.raises(ConfigError, match="LABELHOOK_TF_API_KEY"):
        make_settings(**env)
    with pytest.raises(ConfigError, match="LABELHOOK_TF_DEADLINE_SECONDS"):
        make_settings(**tf_env(vendor, LABELHOOK_TF_DEADLINE_SECONDS="soon"))
    settings = make_settings(**tf_env(vendor))  # no SECRET needed: there are no callbacks to verify
    assert settings.sources["tf"].secrets == ()


# --- poll and process ---------------------------------------------------------------------------------


def test_job_goes_queued_processing_done_via_the_worker_poller_and_lands_once(
    vendor: FakeTechForge, make_settings: Any, tmp_path: Path
) -> None:
    settings = make_settings(**tf_env(vendor))
    store = open_store(settings.store_url)
    video = vendor.add_file("clip.mp4", 3 * MB + 17, "video/mp4")
    audio = vendor.add_file("voice", 200_000, "audio/mpeg")
    logo = vendor.add_file("logo.png", 1000, "image/png")
    outputs = {"output": {"video_url": video, "files": [{"url": audio}, {"url": video}]}}
    job_id = open_job(
        settings, store, vendor, ["QUEUED", "processing", "RUNNING", "done"], outputs=outputs,
        job_type="video", template_id=TEMPLATE, values={"logo": {"image_url": logo}},
    )  # fmt: skip
    out = tmp_path / "out" / "techforge" / TEMPLATE / job_id
    server, worker, _ = start_worker(settings, store)
    with server:
        manifest = json.loads(wait_for(lambda: _read(out / "manifest.json"), timeout=30, what="manifest"))
        hook = httpx.post(f"{server.url}/hooks/tf", json={"uuid": job_id, "status": "done"})
        time.sleep(0.5)  # more poller passes: the finished job must not be polled or processed again
    assert hook.status_code == 404 and hook.json()["error"] == "callbacks_not_supported"
    assert len(vendor.calls("/api/jobs-get")) == 4
    files = {f["path"]: f for f in manifest["files"]}
    assert set(files) == {"result.json", "media/clip.mp4", "media/voice.mp3"}
    assert files["media/clip.mp4"]["sha256"] == expected_bytes_sha256("clip.mp4", 3 * MB + 17)
    assert files["media/clip.mp4"]["size"] == 3 * MB + 17
    assert files["media/clip.mp4"]["content_type"] == "video/mp4"
    assert files["media/voice.mp3"]["sha256"] == expected_bytes_sha256("voice", 200_000)
    assert (
        hashlib.sha256((out / "media/clip.mp4").read_bytes()).hexdigest() == files["media/clip.mp4"]["sha256"]
    )
    assert json.loads((out / "result.json").read_bytes()) == vendor.record(vendor.jobs[job_id], "done")
    assert [m["from"] for m in manifest["media"]] == ["output.video_url", "output.files[0].url"]
    assert manifest["vendor_state"] == "done" and manifest["job_type"] == "video"
    assert vendor.calls("/api/files/logo.png") == []  # an input asset is not a result
    for _, _, headers in vendor.calls("/signed/clip.mp4"):
        assert "x-api-key" not in headers and "authorization" not in headers
    record = JobBook(store).get("tf", job_id)
    assert (
        record is not None
        and record.state == "completed"
        and record.output
        and record.output.endswith(job_id)
    )
    rows = queue_rows(tmp_path / "queue.db")
    assert rows == {completion_key("tf", job_id): ("done", 1)}
    assert worker.processed == 1


def test_cli_poll_records_a_failed_job_with_the_vendor_reason(
    vendor: FakeTechForge, make_settings: Any, tmp_path: Path
) -> None:
    env = cli_environ(tmp_path, vendor)
    settings = make_settings(**tf_env(vendor))
    store = open_store(settings.store_url)
    job_id = open_job(settings, store, vendor, ["processing", "FAILED"], job_type="tts", project_id="proj-7")
    vendor.jobs[job_id].error = "Voice model unavailable for language xx"
    first = run_cli("poll", "tf", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "1 still open" in first.stdout and f"polling tf: 1/1 {job_id}" in first.stderr
    second = run_cli("poll", "tf", "--json", env=env, cwd=tmp_path)
    assert json.loads(_without_logs(second.stdout))["failed"] == 1
    record = JobBook(store).get("tf", job_id)
    assert record is not None and record.state == "failed" and record.vendor_state == "FAILED"
    assert record.reason == "Voice model unavailable for language xx"
    third = run_cli("poll", "tf", "--json", env=env, cwd=tmp_path)
    assert json.loads(_without_logs(third.stdout))["checked"] == 0  # terminal: never polled again
    assert not (tmp_path / "out" / "techforge").exists()


def test_poller_backs_off_for_retry_after_then_succeeds(
    vendor: FakeTechForge, make_settings: Any, tmp_path: Path
) -> None:
    settings = make_settings(**tf_env(vendor))
    store = open_store(settings.store_url)
    image = vendor.add_file("still.jpg", 5000, "image/jpeg")
    job_id = open_job(settings, store, vendor, ["done"], outputs={"result_url": image}, job_type="image")
    vendor.throttle = [(429, "1"), (503, None)]
    out = tmp_path / "out" / "techforge" / TEMPLATE / job_id
    server, _, _ = start_worker(settings, store)
    with server:
        wait_for(lambda: (out / "manifest.json").exists(), timeout=20, what="manifest")
    times = [t for t, _, _ in vendor.calls("/api/jobs-get")]
    assert len(times) == 3  # 429, 503, then the answer
    assert times[1] - times[0] >= 1.0  # Retry-After: 1 honoured despite a 0.1 s interval and jitter
    assert times[2] - times[1] >= 0.15  # 5xx without Retry-After: backed off beyond the interval
    assert (out / "media/still.jpg").stat().st_size == 5000


def test_two_poll_passes_enqueue_a_finished_job_once(
    make_processor: Any, vendor: FakeTechForge, make_settings: Any, tmp_path: Path
) -> None:
    settings = make_settings(**tf_env(vendor))
    store = open_store(settings.store_url)
    job_id = open_job(settings, store, vendor, ["done"], job_type="pdf", template_id=TEMPLATE)
    processor = make_processor(settings)

    async def two_passes() -> list[int]:
        queue = open_queue(settings.queue_url)
        book = JobBook(store)
        try:
            summaries = await asyncio.gather(
                poll_source(settings, "tf", processor, queue, book),
                poll_source(settings, "tf", processor, queue, book),
            )
            later = await poll_source(settings, "tf", processor, queue, book)
        finally:
            await queue.close()
        return [s.enqueued for s in summaries] + [later.checked]

    first, second, later_checked = asyncio.run(two_passes())
    assert first + second == 1 and later_checked == 0
    assert queue_rows(tmp_path / "queue.db") == {completion_key("tf", job_id): ("queued", 0)}


def test_stuck_job_is_reported_past_the_deadline_and_unknown_job_fails(
    make_processor: Any, vendor: FakeTechForge, make_settings: Any
) -> None:
    settings = make_settings(**tf_env(vendor, LABELHOOK_TF_DEADLINE_SECONDS="30"))
    store = open_store(settings.store_url)
    book = JobBook(store)
    stuck = vendor.add_job(["processing"], job_type="video", template_id=TEMPLATE)
    book.note(
        source="tf", vendor="techforge", job_id=stuck, project=TEMPLATE, state="open", at=time.time() - 60
    )
    fresh = open_job(settings, store, vendor, ["processing"], job_type="video", template_id=TEMPLATE)
    book.note(source="tf", vendor="techforge", job_id="gone-1", project=TEMPLATE, state="open")
    processor = make_processor(settings)

    async def one_pass() -> Any:
        queue = open_queue(settings.queue_url)
        try:
            return await poll_source(settings, "tf", processor, queue, book)
        finally:
            await queue.close()

    summary = asyncio.run(one_pass())
    assert summary.stuck == [stuck] and summary.still_open == 2 and summary.failed == 1
    stuck_record, fresh_record = book.get("tf", stuck), book.get("tf", fresh)
    assert (
        stuck_record is not None and stuck_record.state == "open" and stuck_record.reason == "past deadline"
    )
    assert fresh_record is not None and fresh_record.reason is None
    gone = book.get("tf", "gone-1")
    assert gone is not None and gone.state == "failed" and "404" in (gone.reason or "")


def test_poll_with_a_bad_key_is_permanent(
    make_processor: Any, vendor: FakeTechForge, make_settings: Any
) -> None:
    settings = make_settings(**tf_env(vendor, LABELHOOK_TF_API_KEY="revoked"))
    store = open_store(settings.store_url)
    job_id = open_job(settings, store, vendor, ["done"], job_type="video", template_id=TEMPLATE)
    record = JobBook(store).get("tf", job_id)
    assert record is not None
    with pytest.raises(Permanent, match="401") as caught:
        make_processor(settings).poll(record)
    assert "revoked" not in caught.value.reason


def test_200_mb_result_streams_with_flat_memory(
    vendor: FakeTechForge, make_settings: Any, tmp_path: Path
) -> None:
    size = 200 * MB
    settings = make_settings(**tf_env(vendor))
    store = open_store(settings.store_url)
    big = vendor.add_file("render.mp4", size, "video/mp4")
    job_id = open_job(settings, store, vendor, ["done"], outputs={"output_url": big}, job_type="video")
    out = tmp_path / "out" / "techforge" / TEMPLATE / job_id
    server, _, _ = start_worker(settings, store)
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        with server:
            manifest = json.loads(wait_for(lambda: _read(out / "manifest.json"), timeout=50, what="manifest"))
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()
    assert peak < 64 * MB, f"peak traced memory {peak / MB:.0f} MB while streaming a 200 MB file"
    [entry] = [f for f in manifest["files"] if f["path"] == "media/render.mp4"]
    assert entry["size"] == size == (out / "media/render.mp4").stat().st_size
    assert entry["sha256"] == expected_bytes_sha256("render.mp4", size)


def test_upload_cut_half_way_to_s3_is_retryable_and_leaves_no_multipart_upload(
    vendor: FakeTechForge, make_settings: Any, tmp_path: Path, s3_client: Any, bucket: str
) -> None:
    settings = make_settings(**tf_env(vendor, LABELHOOK_MAX_ATTEMPTS="1"))
    store = S3Store(bucket, "lh", client=s3_client)
    video = vendor.add_file("long.mp4", 100 * MB, "video/mp4", drop_at=60 * MB)
    job_id = open_job(
        settings, store, vendor, ["done"], outputs={"output": {"video_url": video}}, job_type="video"
    )
    server, _, _ = start_worker(settings, store)
    key = completion_key("tf", job_id)
    with server:
        wait_for(
            lambda: queue_rows(tmp_path / "queue.db").get(key, ("",))[0] == "dead", timeout=40, what="dead"
        )
        [dead] = asyncio.run(_dead_letters(settings))
    assert dead.last_error is not None and "gave up after 1 attempts" in dead.last_error  # it was Retryable
    assert "localhost" in dead.last_error and "/signed/long.mp4" in dead.last_error
    assert "sig=" not in dead.last_error and API_KEY not in dead.last_error, dead.last_error
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    # result.json may be there; no media object and no manifest: the job is visibly incomplete.
    assert not [k for k in keys if k.endswith(("/media/long.mp4", "/manifest.json"))]


# --- pure readers -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("QUEUED", "open"), ("processing", "open"), ("RUNNING", "open"), ("In Progress", "open"),
        ("mystery", "open"), ("done", "completed"), ("COMPLETED", "completed"), ("Succeeded", "completed"),
        ("FAILED", "failed"), ("error", "failed"), ("cancelled", "failed"),
    ],
)  # fmt: skip
def test_status_table(status: str, state: str) -> None:
    assert api.labelhook_state(status) == state


def test_result_urls_are_found_liberally_and_inputs_are_skipped() -> None:
    record = {
        "uuid": "j1",
        "status": "done",
        "jobinput": {
            "values": {"logo": {"image_url": "https://in/logo.png"}},
            "background_music": "https://in/m",
        },
        "background_music": "https://in/m.mp3",
        "video_url": "https://out/a.mp4",
        "outputs": ["https://out/b.wav", "not a url"],
        "result": {"pdf": "https://out/c.pdf", "pages": 3, "thumbnail_url": "https://out/a.mp4"},
        "meta": {"homepage": "https://example.com"},
    }
    assert api.result_urls(record) == [
        ("video_url", "https://out/a.mp4"),
        ("outputs[0]", "https://out/b.wav"),
        ("result.pdf", "https://out/c.pdf"),
    ]
    assert api.lookup(record, "outputs[0]") == "https://out/b.wav"
    wrapped = api.job_object({"success": True, "data": {"uuid": "j1", "state": "Done", "message": "x"}})
    assert api.vendor_status(wrapped) == "Done"
    assert (
        api.failure_reason({"status": "FAILED", "error": {"message": "GPU  lost\n"}}, "FAILED") == "GPU lost"
    )


async def _dead_letters(settings: Settings) -> list[Any]:
    queue = open_queue(settings.queue_url)
    try:
        return await queue.dead_letters()
    finally:
        await queue.close()


def _read(path: Path) -> bytes | None:
    return path.read_bytes() if path.exists() else None


def _without_logs(stdout: str) -> str:
    """The command's own output: structured log lines (`{"ts": …}`) share stdout with it."""
    return "\n".join(line for line in stdout.splitlines() if not line.startswith('{"ts"'))
