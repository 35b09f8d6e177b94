"""`/metrics` moves with traffic; worker log lines carry the outcome fields and never a secret."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from processors.logs import JsonFormatter
from processors.queue import open_queue
from processors.store import open_store
from processors.worker import Worker
from receiver.app import create_app
from tests.support import SECRET, LiveServer, callback_body, sign, wait_for

TOKEN = "metrics-dashboard-token-42"
API_KEY = "acme-api-key-never-logged"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str, headers: dict[str, str] | None = None) -> Samples:
    response = httpx.get(url + "/metrics", headers=headers, timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name`` over every series carrying ``labels`` (worker series add up)."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in samples.items() if n == name and wanted <= have)


@pytest.fixture
def live(make_settings: Any) -> Iterator[LiveServer]:
    settings = make_settings(LABELHOOK_ACME_API_KEY=API_KEY)
    queue, store = open_queue(settings.queue_url), open_store(settings.store_url)
    worker = Worker(settings, queue, store, drain_seconds=5)
    with LiveServer(create_app(settings, queue, store, worker=worker)) as server:
        yield server


def test_counters_move_with_traffic(live: LiveServer) -> None:
    before = scrape(live.url)
    body = callback_body("m-1")
    assert httpx.post(live.url + "/hooks/acme", content=body, headers=sign(body, "m-1")).status_code == 202
    bad = sign(body, "m-2", secret="whsec_" + "d3Jvbmcta2V5LXdyb25nLWtleS0wMTIzNDU2Nzg5YWI=")
    assert httpx.post(live.url + "/hooks/acme", content=body, headers=bad).status_code == 401
    evil = "/hooks/evil-<script>-label"
    assert httpx.post(live.url + evil, content=body, headers=sign(body, "m-3")).status_code == 404
    wait_for(lambda: value(scrape(live.url), "labelhook_deliveries_processed_total", source="acme") >= 1)
    # Queue figures are refreshed in the background (once a second), not read at the scrape.
    wait_for(lambda: value(scrape(live.url), "labelhook_queue_depth", status="done") == 1)
    after = scrape(live.url)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("labelhook_deliveries_received_total", source="acme") == 2
    assert delta("labelhook_deliveries_received_total", source="_unknown") == 1
    assert delta("labelhook_deliveries_verified_total", source="acme") == 1
    assert delta("labelhook_deliveries_rejected_total", source="_unknown", reason="unknown_source") == 1
    rejected = {
        dict(labels)["reason"]: v
        for (name, labels), v in after.items()
        if name == "labelhook_deliveries_rejected_total" and dict(labels)["source"] == "acme"
    }
    assert sum(rejected.values()) == 1 and all(r.isidentifier() for r in rejected)
    assert delta("labelhook_deliveries_processed_total", source="acme") == 1
    assert delta("labelhook_ack_seconds_count") == 1
    assert delta("labelhook_processing_seconds_count", source="acme") == 1
    assert delta("labelhook_delivery_latency_seconds_count", source="acme") == 1
    assert delta("labelhook_bytes_stored_total", source="acme") == len(body)
    assert value(after, "labelhook_queue_depth", status="done") == 1
    assert value(after, "labelhook_queue_disk_bytes") > 0
    assert value(after, "labelhook_in_flight") == 0
    # `labelhook run`: the in-process worker is one labelled series, with a heartbeat.
    workers = {dict(labels)["worker"] for (name, labels) in after if name == "labelhook_in_flight"}
    assert len(workers) == 1
    assert value(after, "labelhook_worker_heartbeat_timestamp_seconds") > time.time() - 60
    text = httpx.get(live.url + "/metrics").text
    assert "evil" not in text and SECRET not in text and API_KEY not in text


def test_metrics_take_the_dashboard_token_when_one_is_set(make_settings: Any) -> None:
    settings = make_settings(LABELHOOK_DASHBOARD_TOKEN=TOKEN)
    queue, store = open_queue(settings.queue_url), open_store(settings.store_url)
    with LiveServer(create_app(settings, queue, store)) as server:
        response = httpx.get(server.url + "/metrics")
        assert response.status_code == 401 and response.json()["error"] == "unauthorized"
        samples = scrape(server.url, {"Authorization": f"Bearer {TOKEN}"})
        assert ("labelhook_deliveries_received_total", frozenset({("source", "acme")})) in samples


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """Everything logged during the test, formatted exactly as production writes it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


def test_worker_outcome_lines_and_no_secret_in_logs(make_settings: Any, json_logs: io.StringIO) -> None:
    settings = make_settings(LABELHOOK_ACME_API_KEY=API_KEY, LABELHOOK_DASHBOARD_TOKEN=TOKEN)
    queue, store = open_queue(settings.queue_url), open_store(settings.store_url)
    worker = Worker(settings, queue, store, drain_seconds=5)
    with LiveServer(create_app(settings, queue, store, worker=worker)) as live:
        body = callback_body("log-1")
        response = httpx.post(live.url + "/hooks/acme", content=body, headers=sign(body, "log-1"))
        delivery_id = response.json()["delivery_id"]
        wrong = sign(body, "log-2", secret="whsec_" + "d3Jvbmcta2V5LXdyb25nLWtleS0wMTIzNDU2Nzg5YWI=")
        for headers in (wrong, {**sign(body, "log-3"), "webhook-signature": f"v1,{SECRET}"}):
            assert httpx.post(live.url + "/hooks/acme", content=body, headers=headers).status_code in (
                400,
                401,
            )
        assert (
            httpx.get(live.url + "/dashboard", headers={"Authorization": "Bearer wrong"}).status_code == 401
        )
        assert httpx.post(live.url + "/dashboard/login", data={"token": TOKEN + "x"}).status_code == 401
        wait_for(lambda: worker.processed >= 1, what="processed")
    lines = [json.loads(line) for line in json_logs.getvalue().splitlines()]
    [processed] = [entry for entry in lines if entry.get("outcome") == "processed"]
    assert processed["delivery_id"] == delivery_id and processed["source"] == "acme"
    assert processed["job"] == "log-1" and isinstance(processed["duration_ms"], float)
    assert any(entry["msg"] == "rejected" and entry["reason"] for entry in lines)
    text = json_logs.getvalue()
    for secret in (SECRET, SECRET.removeprefix("whsec_"), API_KEY, TOKEN):
        assert secret not in text


def test_progress_only_and_failures_are_not_counted_as_processed(make_settings: Any) -> None:
    """A progress report is acked but not processed; a failure is a retry, then a dead letter."""
    import asyncio

    from processors.delivery import Delivery, new_delivery_id
    from processors.queue import RetryPolicy

    settings = make_settings()
    queue = open_queue(settings.queue_url, RetryPolicy(max_attempts=2, base_seconds=0.05, max_seconds=0.1))
    store = open_store(settings.store_url)
    progress = Delivery(
        id=new_delivery_id(),
        source="acme",
        vendor="standard",
        dedupe_key="acme:p-1:progress",
        job_id="p-1",
        project="acme",
        body=b"{}",
        received_at=time.time(),
        state="in_progress",
        kind="state",
        meta={"job_state": "open"},
    )
    broken = Delivery(
        id=new_delivery_id(),
        source="acme",
        vendor="standard",
        dedupe_key="acme:b-1",
        job_id="b-1",
        project="acme",
        body=b"{}",
        received_at=time.time(),
    )
    from processors.errors import Retryable
    from processors.vendors.base import Processor

    class Failing(Processor):
        def process(self, delivery: Delivery, out: Any) -> dict[str, Any]:
            raise Retryable("vendor answered 502 Bad Gateway")

    failing = Failing(settings.sources["acme"], settings)
    worker = Worker(settings, queue, store, drain_seconds=5, name="test-worker", processors={"acme": failing})

    async def main() -> None:
        await queue.enqueue(progress)
        await queue.enqueue(broken)
        task = asyncio.create_task(worker.run())
        deadline = time.monotonic() + 30
        while worker.stats.total("progress") + worker.stats.total("dead") < 2:
            assert time.monotonic() < deadline, worker.stats.outcomes
            await asyncio.sleep(0.05)
        worker.stop()
        await task
        await queue.close()

    asyncio.run(main())
    assert worker.stats.outcomes.get(("acme", "progress")) == 1
    assert worker.stats.total("processed") == 0
    assert "acme" not in worker.stats.latency  # latency is for processed deliveries only
    assert worker.stats.total("retried") == 1 and worker.stats.total("dead") == 1
    # The report in the store says the same, for a web in another process.
    from processors.fleet import read_reports

    [report] = read_reports(store)
    assert report.worker == "test-worker" and report.stopped_at is not None
    assert report.outcomes == worker.stats.outcomes
