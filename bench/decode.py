"""Benchmark: labelhook's one-frame mask pipeline against Pillow decode alone and the usual peer pipeline.

    .venv/bin/python bench/decode.py [--repeat N]

(a) Pillow decode of the PNG; (b) labelhook: read_rgba + decode_frame (maps, areas, boxes, RLE) +
both output PNGs; (c) panopticapi-style rgb2id, then per segment a boolean mask and pycocotools
encode/area/toBbox (what most converters do). Peak memory of (b) is measured twice on a 4K frame:
tracemalloc (numpy and Python buffers) and the child process's peak RSS growth (adds Pillow's own
buffers, which tracemalloc cannot see).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from processors.masks.decode import (
    build_labelmap,
    decode_frame,
    encode_instances_png,
    encode_semantic_png,
    read_rgba,
)

MAX_PIXELS = 100_000_000
CLASSES = ("car", "pedestrian", "bicycle", "truck", "sign")


def _colour(rng: np.random.Generator, used: set[str]) -> str:
    while True:
        r, g, b = (int(v) for v in rng.integers(16, 256, 3))
        hex_colour = f"#{r:02x}{g:02x}{b:02x}"
        if hex_colour not in used:
            used.add(hex_colour)
            return hex_colour


def _blob(rng: np.random.Generator, cx: float, cy: float, radius: float) -> list[tuple[float, float]]:
    n = int(rng.integers(10, 28))
    angles = np.sort(rng.uniform(0, 2 * math.pi, n))
    radii = radius * rng.uniform(0.55, 1.0, n)
    return [(cx + r * math.cos(a), cy + r * 0.8 * math.sin(a)) for a, r in zip(angles, radii, strict=True)]


def synthetic_mask(width: int, height: int, n_instances: int, seed: int = 7) -> tuple[bytes, dict[str, Any]]:
    """An RGBA mask PNG and its Playment-style result object (legend + instances).

    Drawn at 2x and box-downscaled, so object edges carry blended colours that are in no legend, as
    anti-aliased vendor masks do; a transparent band and a few unlisted colours are added too.
    """
    rng = np.random.default_rng(seed)
    used: set[str] = set()
    legend: dict[str, str] = {}
    instances: list[dict[str, Any]] = []
    sky, road = _colour(rng, used), _colour(rng, used)
    legend[sky], legend[road] = "sky", "road"
    scale = 2
    big = Image.new("RGBA", (width * scale, height * scale), sky + "ff")
    draw = ImageDraw.Draw(big)
    draw.rectangle((0, height * scale // 2, width * scale, height * scale), fill=road + "ff")
    per_class: dict[str, int] = {}
    for i in range(n_instances):
        name = CLASSES[i % len(CLASSES)]
        per_class[name] = per_class.get(name, 0) + 1
        colour = _colour(rng, used)
        label = f"{name} # {per_class[name]}"
        legend[colour] = label
        instances.append(
            {
                "_id": f"inst-{i:04d}",
                "color": colour,
                "index": per_class[name],
                "value": label,
                "class_id": f"class-{name}",
                "attributes": [],
            }
        )
        radius = float(rng.uniform(0.03, 0.12)) * height * scale
        cx, cy = rng.uniform(0, width * scale), rng.uniform(0, height * scale)
        draw.polygon(_blob(rng, cx, cy, radius), fill=colour + "ff")
    for _ in range(3):  # colours the vendor forgot to list
        colour = _colour(rng, used)
        cx, cy = rng.uniform(0, width * scale), rng.uniform(0, height * scale)
        draw.polygon(_blob(rng, cx, cy, 0.01 * height * scale), fill=colour + "ff")
    draw.rectangle((0, 0, width * scale, height * scale // 20), fill=road + "00")  # transparent band
    image = big.resize((width, height), Image.Resampling.BOX)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue(), {"legend": legend, "instances": instances}


def pillow_decode(data: bytes) -> None:
    with Image.open(io.BytesIO(data)) as image:
        image.load()


def labelhook_frame(data: bytes, labelmap: Any) -> tuple[bytes, bytes, int]:
    frame = decode_frame(read_rgba(data, max_pixels=MAX_PIXELS), labelmap)
    semantic = encode_semantic_png(frame.semantic, labelmap)
    instances = encode_instances_png(frame.instances)
    return semantic, instances, len(frame.segments)


def peer_frame(data: bytes, legend: dict[str, str]) -> list[dict[str, Any]]:
    import pycocotools.mask as coco

    with Image.open(io.BytesIO(data)) as image:
        rgb = np.asarray(image.convert("RGB")).astype(np.uint32)
    ids = rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]  # panopticapi rgb2id
    out = []
    for colour in legend:
        r, g, b = int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)
        mask = ids == r + 256 * g + 256 * 256 * b
        if not mask.any():
            continue
        rle = coco.encode(np.asfortranarray(mask.astype(np.uint8)))
        out.append(
            {"counts": rle["counts"], "area": float(coco.area(rle)), "bbox": coco.toBbox(rle).tolist()}
        )
    return out


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up: first-touch page faults, lazy imports
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def memory_child(png_path: str, result_path: str) -> None:
    """Runs in a fresh process: peak memory of one labelhook frame, after the job's lookup table exists."""
    data = Path(png_path).read_bytes()
    result = json.loads(Path(result_path).read_text())
    labelmap = build_labelmap(result["legend"], result["instances"])
    labelmap.color_lut  # per job, not per frame  # noqa: B018
    labelmap.segment_labels  # noqa: B018
    baseline = _peak_rss()
    tracemalloc.start()
    labelhook_frame(data, labelmap)
    _, traced = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(json.dumps({"traced": traced, "rss": _peak_rss() - baseline}))


def _peak_rss() -> int:
    """Peak resident bytes of this process image (VmHWM; ru_maxrss would include the parent's)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--memory-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(*args.memory_child)
        return
    rows = []
    for width, height in ((3840, 2160), (1920, 1080)):
        data, result = synthetic_mask(width, height, 60)
        started = time.perf_counter()
        labelmap = build_labelmap(result["legend"], result["instances"])
        labelmap.color_lut  # noqa: B018
        lut_ms = 1000 * (time.perf_counter() - started)
        semantic, instances, found = labelhook_frame(data, labelmap)
        a = median_ms(lambda data=data: pillow_decode(data), args.repeat)
        b = median_ms(lambda data=data, labelmap=labelmap: labelhook_frame(data, labelmap), args.repeat)
        c = median_ms(
            lambda data=data, legend=result["legend"]: peer_frame(data, legend), max(3, args.repeat // 3)
        )
        rows.append((f"{width}x{height}", len(data), found, a, b, c, lut_ms, len(semantic), len(instances)))
        if width == 3840:
            memory = measure_memory(data, result)
            raw = width * height * 4
    print(
        f"synthetic masks: 60 instances + 2 background classes, anti-aliased edges, 3 unlisted colours; "
        f"median of {args.repeat} runs (peer: {max(3, args.repeat // 3)})"
    )
    print(
        f"{'frame':>10} {'png':>9} {'segs':>5} {'(a) pillow':>11} {'(b) labelhook':>14} {'(c) peer':>9} "
        f"{'b/a':>5} {'c/b':>5} {'lut/job':>8} {'semantic.png':>13} {'instances.png':>14}"
    )
    for name, size, found, a, b, c, lut_ms, sem, inst in rows:
        print(
            f"{name:>10} {size / 1024:>7.0f}Ki {found:>5} {a:>9.1f}ms {b:>12.1f}ms {c:>7.1f}ms "
            f"{b / a:>5.2f} {c / b:>5.2f} {lut_ms:>6.1f}ms {sem / 1024:>11.0f}Ki {inst / 1024:>12.0f}Ki"
        )
    print(
        f"peak extra memory, one 4K frame of (b): tracemalloc {memory['traced'] / raw:.2f}x raw RGBA, "
        f"process RSS {memory['rss'] / raw:.2f}x raw RGBA (raw RGBA = {raw / 2**20:.1f} MiB; "
        f"per-job colour table {2**24 * 2 / 2**20:.0f} MiB virtual, touched lazily)"
    )
    print("goals: b/a <= 2.5, c/b >= 3, peak <= 6x raw RGBA")


def measure_memory(data: bytes, result: dict[str, Any]) -> dict[str, int]:
    with tempfile.TemporaryDirectory() as tmp:
        png_path, result_path = Path(tmp, "mask.png"), Path(tmp, "result.json")
        png_path.write_bytes(data)
        result_path.write_text(json.dumps(result))
        child = subprocess.run(
            [sys.executable, __file__, "--memory-child", str(png_path), str(result_path)],
            check=True,
            capture_output=True,
            text=True,
        )
    measured: dict[str, int] = json.loads(child.stdout)
    return measured


if __name__ == "__main__":
    main()
