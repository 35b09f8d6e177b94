"""Bounded soak with faults: steady signed load, worker kill -9 every few seconds, a flaky S3 store.

Runs `labelhook serve` and `labelhook work` (SQLite queue, S3 store on a local moto server behind a
proxy that fails every 4th PUT with a 500), sends signed Standard Webhooks deliveries at ``--rate``
for ``--seconds``, kill -9s the worker every ``--kill-every`` seconds and restarts it, then waits for
the queue to drain and prints acked, processed, re-processed, lost and p50/p99 ack latency.
Only 127.0.0.1 is used.

    python bench/soak.py [--seconds 60] [--rate 100] [--kill-every 4]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.faults import FlakyProxy, LoadGenerator, Restarter, tally, up  # noqa: E402
from tests.support import SECRET, cli_env, free_port, labelhook, queue_rows  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=15.0, help="new deliveries per second")
    parser.add_argument("--kill-every", type=float, default=4.0, help="seconds between worker kills")
    parser.add_argument("--fail-every", type=int, default=4, help="every Nth S3 PUT answers 500")
    args = parser.parse_args()

    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request access log

    aws = {"AWS_ACCESS_KEY_ID": "soak", "AWS_SECRET_ACCESS_KEY": "soak", "AWS_DEFAULT_REGION": "us-east-1"}
    os.environ.update(aws)
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, moto_port = moto.get_host_and_port()
    moto_url = f"http://{host}:{moto_port}"
    s3 = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1")
    s3.create_bucket(Bucket="soak")
    with tempfile.TemporaryDirectory() as tmp_name, FlakyProxy(moto_url, fail_every=args.fail_every) as proxy:
        tmp = Path(tmp_name)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = cli_env(
            tmp,
            PORT=str(port),
            LABELHOOK_STORE="s3://soak/out",
            LABELHOOK_LEASE_SECONDS="3",
            LABELHOOK_RETRY_BASE_SECONDS="0.1",
            LABELHOOK_RETRY_MAX_SECONDS="2",
            LABELHOOK_MAX_ATTEMPTS="20",
            AWS_ENDPOINT_URL=proxy.url,
            **aws,
        )
        web = Restarter(lambda: labelhook("serve", env=env, cwd=tmp), lambda: up(url))
        worker = Restarter(lambda: labelhook("work", env=env, cwd=tmp), lambda: True)
        web.wait_ready()
        stop = threading.Event()

        def killer() -> None:
            while not stop.wait(args.kill_every):
                worker.kill()

        started = time.monotonic()
        try:
            with LoadGenerator(url, SECRET, threads=8, rate=args.rate) as load:
                k = threading.Thread(target=killer, daemon=True)
                k.start()
                time.sleep(args.seconds)
                stop.set()
                k.join()
            load_seconds = time.monotonic() - started
            db = tmp / "queue.db"
            deadline = time.monotonic() + 300
            while not all(s in ("done", "dead") for s, _ in queue_rows(db).values()):
                if time.monotonic() > deadline:
                    print("queue did not drain within 300 s", file=sys.stderr)
                    break
                time.sleep(0.5)
            drain_seconds = time.monotonic() - started - load_seconds
        finally:
            web.stop()
            worker.stop()
        rows = queue_rows(db)
        sets: dict[str, list[str]] = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket="soak", Prefix="out/standard/acme/"):
            for obj in page.get("Contents", []):
                job, name = obj["Key"].split("/")[3:5]
                sets.setdefault(job, []).append(name)
        attempts = {key.split(":", 1)[1]: a for key, (_, a) in rows.items()}
        result = tally(set(load.stats.acked), {j: sorted(f) for j, f in sets.items()}, attempts)
        dead = sum(1 for s, _ in rows.values() if s == "dead")
        print(f"soak: {args.seconds:g} s of load at {args.rate:g}/s, drained in {drain_seconds:.1f} s")
        print(
            f"faults: worker kill -9 x{worker.kills}, "
            f"{proxy.failed} S3 PUTs failed with 500 ({proxy.failed + proxy.forwarded} S3 requests in all)"
        )
        print(
            f"deliveries: acked={result.acked} processed={result.processed} "
            f"re-processed={result.duplicated} lost={result.lost} extra={result.extra} dead={dead}"
        )
        print(
            f"ack latency: p50={load.stats.latency_ms(0.5):.1f} ms p99={load.stats.latency_ms(0.99):.1f} ms "
            f"(http attempts {load.stats.sent}, non-2xx {load.stats.non_2xx})"
        )
    moto.stop()
    return 0 if result.lost == 0 and result.extra == 0 and dead == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
