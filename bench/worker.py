"""Worker throughput on real mask jobs: N finished 1080p Playment-style jobs through `labelhook run`.

    .venv/bin/python bench/worker.py [--jobs 40] [--instances 60] [--concurrency 2]

A local Playment sandbox (the one the demo and tests use, on 127.0.0.1) holds N completed jobs, each
a 1080p instance mask (flat legend colours, like vendors send, drawn by `bench/decode.py`) with its
legend and instance list behind a signed attachment URL. `labelhook run` (web + worker in one
process, SQLite queue, file store, the Procfile worker's malloc setting) receives one signed callback
per job at once; the clock stops when every job's manifest is written. Prints jobs/minute and the
`labelhook run` process's peak RSS (VmHWM). Only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from decode import flat_mask  # noqa: E402

from receiver.demo.sandbox.playment import SANDBOX_API_KEY, SANDBOX_PROJECT, PlaymentSandbox  # noqa: E402
from tests.support import LiveServer, cli_env, free_port, labelhook, wait_for  # noqa: E402

KEY = "bench-playment-key"


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--instances", type=int, default=60)
    parser.add_argument("--concurrency", type=int, default=2, help="LABELHOOK_WORKER_CONCURRENCY")
    args = parser.parse_args()

    vendor = PlaymentSandbox()
    job_ids = [f"bench-{n:04d}" for n in range(args.jobs)]
    for n, job_id in enumerate(job_ids):
        png, result = flat_mask(1920, 1080, args.instances, seed=100 + n)
        vendor.add_job(job_id, {**result, "url": "mask:mask.png"}, masks={"mask.png": png})

    with tempfile.TemporaryDirectory() as tmp, LiveServer(vendor.app) as api:
        folder = Path(tmp)
        port = free_port()
        env = cli_env(
            folder,
            LABELHOOK_SOURCES="pm",
            LABELHOOK_PM_VENDOR="playment",
            LABELHOOK_PM_SECRET=KEY,
            LABELHOOK_PM_API_KEY=SANDBOX_API_KEY,
            LABELHOOK_PM_API_URL=api.url,
            LABELHOOK_PM_PROJECT_ID=SANDBOX_PROJECT,
            LABELHOOK_FETCH_ALLOW_HOSTS="127.0.0.1,localhost",
            LABELHOOK_WORKER_CONCURRENCY=str(args.concurrency),
            MALLOC_MMAP_THRESHOLD_="1048576",
        )
        run = labelhook("run", "--port", str(port), env=env, cwd=folder)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_for(lambda: _up(url), timeout=60, what="labelhook run")
            manifests = [folder / "out" / "playment" / SANDBOX_PROJECT / j / "manifest.json" for j in job_ids]
            started = time.perf_counter()
            with httpx.Client(timeout=30) as client:
                for job_id in job_ids:
                    body = {"data": {"job_id": job_id, "project_id": SANDBOX_PROJECT, "status": "completed"}}
                    response = client.post(
                        f"{url}/hooks/pm",
                        content=json.dumps(body).encode(),
                        headers={"content-type": "application/json", "x-playment-key": KEY},
                    )
                    response.raise_for_status()
            wait_for(lambda: all(m.exists() for m in manifests), timeout=600, interval=0.1, what="manifests")
            elapsed = time.perf_counter() - started
            peak = _peak_rss(run.pid)
            frames = sum(json.loads(m.read_text())["segmentation"]["frames"] for m in manifests)
        finally:
            run.terminate()
            try:
                run.wait(timeout=30)
            except Exception:
                run.kill()
                run.wait()
    print(
        f"{args.jobs} jobs ({frames} 1080p frames, {args.instances} instances each), worker concurrency "
        f"{args.concurrency}: {elapsed:.1f} s, {60 * args.jobs / elapsed:.0f} jobs/minute, "
        f"{1000 * elapsed / args.jobs:.0f} ms per job; peak RSS of labelhook run {peak / 2**20:.0f} MiB"
    )
    return 0


def _up(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    sys.exit(main())
