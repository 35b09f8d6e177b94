"""Benchmark: `labelhook export` of N finished 1080p jobs against a plain copy of the same jobs' files.

    .venv/bin/python bench/export.py [--jobs 1000] [--templates 8] [--instances 30] [--rounds 2]
                                     [--baseline DIR]

Makes a store of N finished jobs the way the worker writes them (synthetic 1920x1080 vendor masks
from bench/decode.py decoded by `process_segmentation`, a 1080p JPEG source image per job, manifest
last; ``--templates`` distinct masks reused across jobs so that making the store stays quick; the
"cvat" third of the jobs lists the legend in another order, so their label ids differ from the
dataset's category ids, as they do when vendors' labelmaps differ).
Then, side by side in one run: a plain file-by-file copy of every job file (shutil, no fsync) and
(and the same followed by ``sync``, since the export makes its files durable) and
`export_dataset` into a fresh folder for each format, each export in a child process whose RSS is
sampled as jobs go by (flat memory = the RSS after the last job is that after the first tenth),
plus a second, incremental run of each export with nothing new. ``--rounds`` repeats the
copy-then-exports loop over every format (the machine is shared: one round's figures are noisy).
``--baseline DIR`` names another labelhook source tree (e.g. ``git archive main | tar -x -C DIR``)
whose export runs in the same loop, right before this tree's: before/after figures side by side.
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


def _template(seed: int, instances: int, reordered: bool = False) -> tuple[dict[str, bytes], bytes]:
    """One finished job's files. ``reordered``: the vendor's legend lists the same classes in reverse
    order (another vendor's labelmap), so the job's label ids are not the dataset's category ids."""
    mask, result = synthetic_mask(WIDTH, HEIGHT, instances, seed=seed)
    if reordered:
        result["legend"] = dict(reversed(result["legend"].items()))
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
    made = {
        (seed, reordered): _template(seed, instances, reordered)
        for seed in range(templates)
        for reordered in (False, True)
    }
    count = size = 0
    for number in range(jobs):
        vendor = VENDORS[number % len(VENDORS)]
        files, _ = made[number % templates, vendor == "cvat"]
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
    import processors
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
                "code": str(Path(processors.__file__).resolve().parent.parent),
            }
        )
    )


def _run_child(format_name: str, store: Path, out: Path, code: Path | None = None) -> dict[str, Any]:
    """One export in a child process; ``code``: the labelhook tree it imports (default: this one)."""
    env = dict(os.environ)
    if code is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(code), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, __file__, "--child", format_name, str(store), str(out)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if code is not None and Path(result["code"]) != code.resolve():
        raise SystemExit(f"the baseline run imported {result['code']}, not {code}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--templates", type=int, default=8)
    parser.add_argument("--instances", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--baseline", type=Path, help="another labelhook source tree to export with too")
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
        for round_number in range(1, args.rounds + 1):
            for format_name in FORMATS:
                # Side by side: a copy, then the export(s), then the rerun, for each format in turn.
                copied, synced = plain_copy(root / "store", root / f"copy-{format_name}")
                shutil.rmtree(root / f"copy-{format_name}")
                before = None
                if args.baseline is not None:
                    before = _run_child(format_name, root / "store", root / "out-before", args.baseline)
                    shutil.rmtree(root / "out-before")
                first = _run_child(format_name, root / "store", root / f"out-{format_name}")
                again = _run_child(format_name, root / "store", root / f"out-{format_name}")
                rows.append((round_number, format_name, copied, synced, before, first, again))
                shutil.rmtree(root / f"out-{format_name}")
                print(f"round {round_number} {format_name}: done", flush=True)
        copies = [row[2] for row in rows]
        print(f"plain copy of every job file: median {statistics.median(copies):.2f} s")
        print(
            f"{'round':>5} {'format':<14} {'export s':>9} {'copy s':>7} {'ratio':>6} {'copy+sync s':>12} "
            f"{'ratio':>6} {'rerun s':>8} {'RSS@10% MiB':>12} {'RSS@end MiB':>12} {'items':>6} "
            f"{'annotations':>11}" + (f" {'before s':>9} {'ratio':>6}" if args.baseline else "")
        )
        for round_number, format_name, copied, synced, before, first, again in rows:
            seconds = first["seconds"]
            line = (
                f"{round_number:>5} {format_name:<14} {seconds:>9.2f} {copied:>7.2f} "
                f"{seconds / copied:>6.2f} {synced:>12.2f} {seconds / synced:>6.2f} {again['seconds']:>8.2f} "
                f"{first['rss_at_tenth']:>12.0f} {first['rss_at_end']:>12.0f} {first['items']:>6} "
                f"{first['annotations']:>11}"
            )
            if before is not None:
                line += f" {before['seconds']:>9.2f} {before['seconds'] / copied:>6.2f}"
            print(line)


if __name__ == "__main__":
    main()
