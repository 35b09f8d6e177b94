"""Benchmark: `labelhook export` of N finished 1080p jobs against a plain copy of the same jobs' files.

    .venv/bin/python bench/export.py [--jobs 1000] [--templates 8] [--instances 30]

Makes a store of N finished jobs the way the worker writes them (synthetic 1920x1080 vendor masks
from bench/decode.py decoded by `process_segmentation`, a 1080p JPEG source image per job, manifest
last; ``--templates`` distinct masks reused across jobs so that making the store stays quick).
Then, side by side in one run: a plain file-by-file copy of every job file (shutil, no fsync) and
(and the same followed by ``sync``, since the export makes its files durable) and
`export_dataset` into a fresh folder for each format, each export in a child process whose RSS is
sampled as jobs go by (flat memory = the RSS after the last job is that after the first tenth),
plus a second, incremental run of each export with nothing new.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from decode import synthetic_mask

from processors.masks.segmentation import process_segmentation
from processors.source_images import SourceImage
from processors.store import JobWriter
from processors.store.local import LocalStore

WIDTH, HEIGHT = 1920, 1080
VENDORS = ("playment", "superai", "cvat")
FORMATS = ("coco", "coco-panoptic", "voc")


def _photo(seed: int) -> bytes:
    """A photo-like 1080p JPEG: smooth gradients plus sensor noise (about the size of a real one)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    base = np.stack([x / WIDTH * 200, y / HEIGHT * 180, (x + y) / (WIDTH + HEIGHT) * 220], axis=-1)
    pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _template(seed: int, instances: int) -> tuple[dict[str, bytes], bytes]:
    mask, result = synthetic_mask(WIDTH, HEIGHT, instances, seed=seed)
    files: dict[str, bytes] = {"result.json": json.dumps(result).encode()}
    photo = _photo(seed)
    images = {0: SourceImage(0, "images/0.jpg", WIDTH, HEIGHT, fetched=True)}
    process_segmentation(result, [(0, mask)], files.__setitem__, max_pixels=100_000_000, images=images)
    files["media/0/vendor_mask.png"] = mask
    files["images/0.jpg"] = photo
    return files, photo


def make_store(root: Path, jobs: int, templates: int, instances: int) -> tuple[int, int]:
    """Write ``jobs`` finished jobs; returns (files, bytes) of their outputs."""
    store = LocalStore(root)
    made = [_template(seed, instances) for seed in range(templates)]
    count = size = 0
    for number in range(jobs):
        files, _ = made[number % templates]
        vendor = VENDORS[number % len(VENDORS)]
        out = JobWriter(store, f"{vendor}/project-{number % 7}/job-{number:05d}")
        for name, data in sorted(files.items()):
            out.write(name, data, "image/png" if name.endswith(".png") else "application/octet-stream")
        out.finish(
            {"vendor": vendor, "source": vendor, "project": f"project-{number % 7}", "job": str(number)}
        )
        count += len(files) + 1
        size += sum(len(d) for d in files.values())
    return count, size


def plain_copy(store: Path, target: Path) -> tuple[float, float]:
    """Seconds to copy every file (shutil, no fsync), and to copy them and then ``sync``."""
    started = time.perf_counter()
    for path in sorted(store.rglob("*")):
        if path.is_file():
            destination = target / path.relative_to(store)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, destination)
    copied = time.perf_counter() - started
    os.sync()
    return copied, time.perf_counter() - started


def _rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child(format_name: str, store: str, out: str) -> None:
    """One export in this process: print its time and RSS samples as JSON."""
    from processors.export import export_dataset

    samples: list[float] = []
    total = 0

    def on_total(n: int) -> None:
        nonlocal total
        total = n

    def on_job(_: str) -> None:
        samples.append(_rss_mib())

    started = time.perf_counter()
    report = export_dataset(
        LocalStore(store), LocalStore(out, sync_each=False), format_name, on_job=on_job, on_total=on_total
    )
    seconds = time.perf_counter() - started
    tenth = samples[max(0, len(samples) // 10 - 1)] if samples else 0.0
    print(
        json.dumps(
            {
                "seconds": seconds,
                "rss_at_tenth": tenth,
                "rss_at_end": samples[-1] if samples else 0.0,
                "rss_max": max(samples, default=0.0),
                "items": report.items,
                "annotations": report.annotations,
                "added": len(report.added),
            }
        )
    )


def _run_child(format_name: str, store: Path, out: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", format_name, str(store), str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--templates", type=int, default=8)
    parser.add_argument("--instances", type=int, default=30)
    parser.add_argument("--child", nargs=3, metavar=("FORMAT", "STORE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    with tempfile.TemporaryDirectory(prefix="labelhook-export-bench-", dir=os.environ.get("TMPDIR")) as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        files, size = make_store(root / "store", args.jobs, args.templates, args.instances)
        print(
            f"store: {args.jobs} finished {WIDTH}x{HEIGHT} jobs, {files} files, {size / 2**20:.0f} MiB "
            f"(made in {time.perf_counter() - started:.1f} s)"
        )
        plain_copy(root / "store", root / "warm")  # page cache warm for everyone
        shutil.rmtree(root / "warm")
        rows = []
        for format_name in FORMATS:
            # Side by side: a copy, then the export, then its rerun, for each format in turn.
            copied, synced = plain_copy(root / "store", root / f"copy-{format_name}")
            shutil.rmtree(root / f"copy-{format_name}")
            first = _run_child(format_name, root / "store", root / f"out-{format_name}")
            again = _run_child(format_name, root / "store", root / f"out-{format_name}")
            rows.append((format_name, copied, synced, first, again))
            shutil.rmtree(root / f"out-{format_name}")
        copies = [row[1] for row in rows]
        print(f"plain copy of every job file: median {statistics.median(copies):.2f} s")
        print(
            f"{'format':<14} {'export s':>9} {'copy s':>7} {'ratio':>6} {'copy+sync s':>12} {'ratio':>6} "
            f"{'rerun s':>8} {'RSS@10% MiB':>12} {'RSS@end MiB':>12} {'items':>6} {'annotations':>11}"
        )
        for format_name, copied, synced, first, again in rows:
            seconds = first["seconds"]
            print(
                f"{format_name:<14} {seconds:>9.2f} {copied:>7.2f} {seconds / copied:>6.2f} "
                f"{synced:>12.2f} {seconds / synced:>6.2f} {again['seconds']:>8.2f} "
                f"{first['rss_at_tenth']:>12.0f} {first['rss_at_end']:>12.0f} {first['items']:>6} "
                f"{first['annotations']:>11}"
            )


if __name__ == "__main__":
    main()
