"""Worker reports and attempt histories read back from a shared store: hostile or broken files are
skipped, never trusted; secrets in a callback body never reach the delivery page."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from processors.fleet import WorkerStats, read_reports, worker_id
from processors.history import body_preview, history_key, read_history, record_attempt
from processors.store.local import LocalStore


def test_worker_id_is_a_safe_label() -> None:
    assert worker_id("web.1", 42) == "web.1-42"
    assert worker_id('evil"}\n<script>', 7) == "evil-script-7"
    assert worker_id("", 7) == "host-7"


def test_reports_round_trip_and_bad_ones_are_skipped(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    stats = WorkerStats("w-1")
    stats.count("acme", "processed")
    stats.count("acme", "duplicate")
    stats.observe_processing("acme", 0.2)
    store.put("_workers/w-1.json", json.dumps(stats.to_json()).encode())
    store.put("_workers/garbage.json", b"{not json")
    store.put("_workers/wrong.json", json.dumps({**stats.to_json(), "worker": "a b\n"}).encode())
    store.put(
        "_workers/short.json", json.dumps({**stats.to_json(), "processing": {"acme": [[1], 0.1]}}).encode()
    )
    store.put("_workers/list.json", b"[1, 2]")
    [report] = read_reports(store)
    assert report.worker == "w-1" and report.outcomes == {("acme", "processed"): 1, ("acme", "duplicate"): 1}
    assert report.processing["acme"].cumulative()[-1] == ("+Inf", 1.0)


def test_unknown_outcomes_in_a_report_are_dropped() -> None:
    data = {**WorkerStats("w").to_json(), "outcomes": [["acme", "processed", 2], ["acme", "pwned", 9]]}
    assert WorkerStats.from_json(data).outcomes == {("acme", "processed"): 2}


@pytest.mark.parametrize(
    "body",
    [
        {"data": {"job_id": "j", "api_key": "sk-live-123", "nested": [{"Authorization": "Bearer abc"}]}},
        {"result": "https://bucket.s3.amazonaws.com/r.json?X-Amz-Credential=AKIA&X-Amz-Signature=abc"},
    ],
)
def test_body_preview_masks_credentials(body: dict[str, object]) -> None:
    preview = body_preview(json.dumps(body).encode())
    for secret in ("sk-live-123", "Bearer abc", "AKIA", "X-Amz-Signature"):
        assert secret not in preview


def test_body_preview_is_bounded_and_takes_any_bytes() -> None:
    assert len(body_preview(b"\xff" * 100_000)) < 4200
    assert body_preview(b"plain text") == "plain text"


def test_history_appends_attempts_and_refuses_foreign_ids(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    delivery_id = "01a22d3a90f2adf098c8e29700000000"
    record_attempt(store, delivery_id, b"{}", {"attempt": 1, "outcome": "processed"}, only_if_exists=True)
    assert read_history(store, delivery_id) is None  # a first-time success writes nothing
    record_attempt(store, delivery_id, b'{"k": 1}', {"attempt": 1, "outcome": "retry"})
    record_attempt(
        store, delivery_id, b'{"k": 1}', {"attempt": 2, "outcome": "processed"}, only_if_exists=True
    )
    history = read_history(store, delivery_id)
    assert history is not None and [a["outcome"] for a in history["attempts"]] == ["retry", "processed"]
    for hostile in ("../../etc/passwd", "x/y", "", "ABC"):
        assert history_key(hostile) is None and read_history(store, hostile) is None
