"""Ingest benchmark: labelhook's verified, durable ack against a bare Starlette endpoint, side by side.

Starts (a) a bare Starlette app answering a 2 KB POST with 202 and (b) `labelhook serve` with Standard
Webhooks verification and the SQLite queue as shipped (every ack only after its delivery is on disk:
the intake journal's O_DSYNC write), both under uvicorn with the same settings (uvloop, httptools, no
access log, one process), each pinned to CPU 0. Drives each with wrk (Debian's package) pinned to CPU
1, 32 connections, a Lua script that signs every request with a fresh webhook-id. Runs a, b, a, b …
and prints req/s, p50, p99 and server CPU per request for each run, the medians, and (b)/(a) for each
round (a labelhook run over the bare run just before it) with their median. The machine is a shared
VM whose speed drifts by tens of percent within minutes: the rounds alternate and are compared in
pairs so both sides of a ratio see the same drift, and more rounds give a steadier median.
Then measures worker throughput (deliveries/s through a no-op processor) and end-to-end latency from
POST to manifest under `labelhook run`. Only 127.0.0.1 is used.

    python bench/ingest.py [--seconds 10] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SERVER_PIN: list[str] = ["taskset", "-c", "0"]
SECRET = "whsec_" + base64.b64encode(b"bench-secret-key-0123456789abcdef").decode()
BODY = json.dumps({"type": "job.completed", "data": {"job_id": "bench", "pad": "x" * 1900}}).encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise SystemExit(f"server at {url} did not come up")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and all its threads, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def parse_latency(text: str, label: str) -> float:
    match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    if not match:
        raise SystemExit(f"could not read the {label}% latency from wrk:\n{text}")
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def run_wrk(url: str, seconds: int, workdir: Path, pid: int) -> dict[str, float]:
    body_file = workdir / "body.json"
    body_file.write_bytes(BODY)
    key_hex = base64.b64decode(SECRET.removeprefix("whsec_")).hex()
    cmd = [
        "taskset",
        "-c",
        "1",
        "wrk",
        "-t1",
        "-c32",
        f"-d{seconds}s",
        "--latency",
        "-s",
        str(ROOT / "bench/sign.lua"),
        url + "/hooks/bench",
        "--",
        key_hex,
        str(body_file),
        "/hooks/bench",
    ]
    cpu_before, wall_before = cpu_seconds(pid), time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    cpu = (cpu_seconds(pid) - cpu_before) / (time.monotonic() - wall_before)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = float(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": rps,
        "requests": requests,
        "p50": parse_latency(out, "50"),
        "p99": parse_latency(out, "99"),
        "non2xx": float(non2xx.group(1)) if non2xx else 0.0,
        "server_cpu": cpu,
        "socket_errors": 1.0 if errors else 0.0,
    }


def start_bare(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    cmd = [
        *SERVER_PIN,
        sys.executable,
        "-m",
        "uvicorn",
        "bench.bare_app:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
        "--loop",
        "uvloop",
        "--http",
        "httptools",
    ]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def labelhook_env(workdir: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABELHOOK_")}
    env.update(
        PORT=str(port),
        HOST="127.0.0.1",
        LABELHOOK_SOURCES="bench",
        LABELHOOK_BENCH_VENDOR="standard",
        LABELHOOK_BENCH_SECRET=SECRET,
        LABELHOOK_QUEUE=f"sqlite:///{workdir}/queue.db",
        LABELHOOK_STORE=f"file://{workdir}/out",
    )
    return env


def start_labelhook(port: int, workdir: Path, command: str = "serve") -> subprocess.Popen[bytes]:
    cmd = [*SERVER_PIN, sys.executable, "-m", "receiver", command]
    return subprocess.Popen(
        cmd,
        cwd=workdir,
        env=labelhook_env(workdir, port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def ingest(seconds: int, rounds: int) -> dict[str, list[dict[str, float]]]:
    results: dict[str, list[dict[str, float]]] = {"bare": [], "labelhook": []}
    for round_no in range(rounds):
        for name in ("bare", "labelhook"):
            workdir = Path(tempfile.mkdtemp(prefix=f"lh-bench-{name}-"))
            port = free_port()
            proc = start_bare(port, workdir) if name == "bare" else start_labelhook(port, workdir)
            url = f"http://127.0.0.1:{port}"
            try:
                wait_up(url + ("/healthz" if name == "labelhook" else "/"))
                warm_up = run_wrk(url, 2, workdir, proc.pid)
                figures = run_wrk(url, seconds, workdir, proc.pid)
            finally:
                stop(proc)
            if name == "labelhook":
                figures["queued"] = float(_count_rows(workdir / "queue.db"))
                acked = warm_up["requests"] - warm_up["non2xx"] + figures["requests"] - figures["non2xx"]
                if figures["queued"] < acked:  # every acknowledged delivery must be in the queue
                    stored = figures["queued"]
                    raise SystemExit(f"acked {acked:.0f} deliveries but the queue holds {stored:.0f}")
            shutil.rmtree(workdir, ignore_errors=True)
            results[name].append(figures)
            print(
                f"  round {round_no + 1} {name:9s} {figures['rps']:9.0f} req/s  p50 {figures['p50']:6.2f} ms"
                f"  p99 {figures['p99']:6.2f} ms  server CPU {figures['server_cpu']:.0%}"
                f" ({figures['server_cpu'] / figures['rps'] * 1e6:.0f} µs/req)"
                f"  non-2xx {figures['non2xx']:.0f}"
                + (f"  in queue {figures['queued']:.0f}" if name == "labelhook" else ""),
                flush=True,
            )
    return results


def _count_rows(db: Path) -> int:
    """Deliveries in the queue, acknowledged ones still in the intake journal included (they are
    indexed into the table here, as the worker would)."""
    from processors.queue.sqlite import SQLiteQueue

    async def count() -> int:
        queue = SQLiteQueue(str(db))
        try:
            return (await queue.depth())["queued"]
        finally:
            await queue.close()

    return asyncio.run(count())


def worker_throughput(count: int) -> float:
    """Deliveries/s through `Worker` with a no-op processor and a store that discards writes."""
    from processors.config import load_settings
    from processors.delivery import Delivery, new_delivery_id
    from processors.queue.sqlite import SQLiteQueue
    from processors.store.base import Store
    from processors.vendors.base import Processor
    from processors.worker import Worker

    class NullStore(Store):
        def put(self, key: str, data: bytes, content_type: str = "") -> None: ...
        def put_stream(self, key: str, stream: Any, content_type: str = "") -> None: ...
        def get(self, key: str) -> bytes:
            raise KeyError(key)

        def exists(self, key: str) -> bool:
            return False

        def list(self, prefix: str) -> list[str]:
            return []

        def ping(self) -> None: ...
        def describe(self) -> str:
            return "null://"

        def create_exclusive(self, key: str, data: bytes) -> bool:
            return True

    class Noop(Processor):
        def process(self, delivery: Delivery, out: Any) -> dict[str, Any]:
            return {}

    workdir = Path(tempfile.mkdtemp(prefix="lh-bench-worker-"))
    settings = load_settings(labelhook_env(workdir, 0) | {"LABELHOOK_WORKER_CONCURRENCY": "8"})

    async def main() -> float:
        queue = SQLiteQueue(str(workdir / "queue.db"))
        await asyncio.gather(
            *(
                queue.enqueue(
                    Delivery(
                        id=new_delivery_id(),
                        source="bench",
                        vendor="standard",
                        dedupe_key=f"b{i}",
                        job_id=f"b{i}",
                        project="bench",
                        body=BODY,
                        received_at=time.time(),
                    )
                )
                for i in range(count)
            )
        )
        worker = Worker(
            settings, queue, NullStore(), processors={"bench": Noop(settings.sources["bench"], settings)}
        )
        started = time.monotonic()
        task = asyncio.create_task(worker.run())
        while (await queue.depth())["done"] < count:
            await asyncio.sleep(0.01)
        elapsed = time.monotonic() - started
        worker.stop()
        await task
        await queue.close()
        return count / elapsed

    try:
        return asyncio.run(main())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def end_to_end(samples: int) -> list[float]:
    """Milliseconds from sending a signed POST to its manifest.json existing, under `labelhook run`."""
    from receiver.demo.sender import signed_request

    workdir = Path(tempfile.mkdtemp(prefix="lh-bench-e2e-"))
    port = free_port()
    proc = start_labelhook(port, workdir, "run")
    url = f"http://127.0.0.1:{port}"
    latencies = []
    try:
        wait_up(url + "/healthz")
        with httpx.Client(base_url=url, timeout=5) as client:
            for i in range(samples):
                msg_id = f"e2e-{i}"
                manifest = workdir / "out/standard/bench" / msg_id / "manifest.json"
                started = time.perf_counter()
                response = client.post(
                    "/hooks/bench", content=BODY, headers=signed_request(SECRET, msg_id, BODY)
                )
                assert response.status_code == 202, response.text
                while not manifest.exists():
                    time.sleep(0.0005)
                latencies.append((time.perf_counter() - started) * 1000)
    finally:
        stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--unpinned-servers",
        action="store_true",
        help="let the servers' threads use both cores (wrk stays on CPU 1); default: both servers on CPU 0",
    )
    args = parser.parse_args()
    if args.unpinned_servers:
        SERVER_PIN.clear()
    if not shutil.which("wrk") or not shutil.which("taskset"):
        raise SystemExit("bench/ingest.py needs wrk and taskset (apt-get install wrk util-linux)")
    placement = "servers unpinned" if args.unpinned_servers else "servers on CPU 0, wrk on CPU 1"
    print(
        f"ingest: wrk -t1 -c32 -d{args.seconds}s, 2 KB signed POST, {args.rounds} alternating rounds,"
        f" {placement}"
    )
    results = ingest(args.seconds, args.rounds)
    med = {
        name: {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50", "p99")}
        for name, runs in results.items()
    }
    for name in ("bare", "labelhook"):
        m = med[name]
        print(f"median {name:9s} {m['rps']:9.0f} req/s  p50 {m['p50']:6.2f} ms  p99 {m['p99']:6.2f} ms")
    # Each labelhook round is paired with the bare round run just before it: the VM's speed drifts
    # by tens of percent within minutes, and a pair sees the same drift. The median of the paired
    # ratios is the figure; the ratio of the two medians is printed too (a slow spell that hits one
    # pair moves it more).
    paired = [b["rps"] / a["rps"] for a, b in zip(results["bare"], results["labelhook"], strict=True)]
    print(
        "ratio (b)/(a) per round: "
        + " ".join(f"{r:.2f}" for r in paired)
        + f"  -> median {statistics.median(paired):.2f}"
        f"  (ratio of the medians {med['labelhook']['rps'] / med['bare']['rps']:.2f};"
        f" goal >= 0.6 with p99 <= 20 ms; labelhook p99 {med['labelhook']['p99']:.2f} ms)"
    )
    rate = worker_throughput(5000)
    print(f"worker throughput (no-op processor, 5000 deliveries, concurrency 8): {rate:.0f} deliveries/s")
    lat = sorted(end_to_end(100))
    print(
        f"end-to-end POST -> manifest.json under `labelhook run` (100 sequential): "
        f"p50 {statistics.median(lat):.1f} ms  p99 {lat[98]:.1f} ms"
    )


if __name__ == "__main__":
    main()
