"""Benchmark: labelhook's mask frame against Pillow decode alone and the usual peer pipeline.

    .venv/bin/python bench/decode.py [--repeat N] [--frames N]

Masks: flat-colour 4K frames like vendors send (exact legend colours, large rectangles and ellipses,
transparent background) with 5, 60 and 500 instances, and the anti-aliased 60-instance frame (blended
edges, slow to decode) at 4K and 1080p. Per mask, side by side in one run: (a) Pillow decode of the
PNG; (b) labelhook's whole frame: `decode_png` (maps, areas, boxes, RLE) + both output PNGs, with
its stages timed separately; (c) the peer: panopticapi-style rgb2id, then per segment a boolean mask
and pycocotools encode/area/toBbox. Then a 1080p video decoded by `process_segmentation` on 1 thread
and on 2 (per-frame cost, output bytes compared), and the peak memory of one 4K frame in a fresh
process (VmHWM growth, which includes Pillow's buffers).
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
    _Mapper,
    _open_png,
    _packed_bands,
    build_labelmap,
    decode_png,
    encode_frame_semantic_png,
    encode_instances_png,
    measure_instances,
)
from processors.masks.segmentation import process_segmentation

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


def flat_mask(width: int, height: int, n_instances: int, seed: int = 11) -> tuple[bytes, dict[str, Any]]:
    """A vendor-style flat mask: exact legend colours only, no blending, transparent background.

    A road region across the bottom, then instances as axis-aligned boxes and ellipses (Pillow draws
    them without anti-aliasing) sized like street-scene objects, later ones occluding earlier ones.
    """
    rng = np.random.default_rng(seed)
    used: set[str] = set()
    road = _colour(rng, used)
    legend: dict[str, str] = {road: "road"}
    instances: list[dict[str, Any]] = []
    image = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.polygon(
        [(0, height), (width * 0.4, height * 0.55), (width * 0.6, height * 0.55), (width, height)],
        fill=road + "ff",
    )
    per_class: dict[str, int] = {}
    scale = 1.0 / math.sqrt(max(1.0, n_instances / 20))  # crowded scenes have smaller objects
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
        w = float(rng.uniform(0.03, 0.2)) * width * scale
        h = float(rng.uniform(0.05, 0.3)) * height * scale
        x, y = float(rng.uniform(0, width - w)), float(rng.uniform(height * 0.3, height - h))
        box = (x, y, x + w, y + h)
        if i % 3 == 2:
            draw.ellipse(box, fill=colour + "ff")
        else:
            draw.rectangle(box, fill=colour + "ff")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue(), {"legend": legend, "instances": instances}


def pillow_decode(data: bytes) -> None:
    with Image.open(io.BytesIO(data)) as image:
        image.load()


def labelhook_frame(data: bytes, labelmap: Any) -> tuple[bytes, bytes, int]:
    frame = decode_png(data, labelmap, max_pixels=MAX_PIXELS)
    semantic = encode_frame_semantic_png(frame, labelmap)
    instances = encode_instances_png(frame.instances)
    return semantic, instances, len(frame.segments)


def stage_costs(data: bytes, labelmap: Any, repeat: int) -> dict[str, float]:
    """The stages of `labelhook_frame`, each timed alone (medians, ms)."""
    frame = decode_png(data, labelmap, max_pixels=MAX_PIXELS)

    def open_only() -> None:
        with _open_png(data, MAX_PIXELS):
            pass

    def map_runs() -> None:
        with _open_png(data, MAX_PIXELS) as image:
            mapper = _Mapper(labelmap, image.width)
            for _, band in _packed_bands(image):
                mapper.map(band)

    decode = median_ms(open_only, repeat)
    return {
        "png decode": decode,
        "bands+runs→map": median_ms(map_runs, repeat) - decode,
        "rle/areas/boxes": median_ms(lambda: measure_instances(frame.instances, labelmap), repeat),
        "semantic.png": median_ms(lambda: encode_frame_semantic_png(frame, labelmap), repeat),
        "instances.png": median_ms(lambda: encode_instances_png(frame.instances), repeat),
    }


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
    """Runs in a fresh process: peak memory of one labelhook frame, after the job's labelmap exists."""
    data = Path(png_path).read_bytes()
    result = json.loads(Path(result_path).read_text())
    labelmap = build_labelmap(result["legend"], result["instances"])
    labelmap.packed_colours  # per job, not per frame  # noqa: B018
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


def video(
    result: dict[str, Any], data: bytes, frames: int, threads: int
) -> tuple[float, float, list[tuple[str, bytes]]]:
    """Per-frame ms of a ``frames``-frame video on ``threads`` threads, the process's CPU time over
    wall time meanwhile (above 1 only if threads really ran at once), and what it wrote."""
    written: list[tuple[str, bytes]] = []
    started, cpu = time.perf_counter(), time.process_time()
    process_segmentation(
        result,
        ((i, data) for i in range(frames)),
        lambda k, v: written.append((k, v)),
        max_pixels=MAX_PIXELS,
        threads=threads,
    )
    wall = time.perf_counter() - started
    return 1000 * wall / frames, (time.process_time() - cpu) / wall, written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--frames", type=int, default=24, help="frames of the 1080p video case")
    parser.add_argument("--memory-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(*args.memory_child)
        return
    cases = [
        ("flat 4K, 5", *flat_mask(3840, 2160, 5)),
        ("flat 4K, 60", *flat_mask(3840, 2160, 60)),
        ("flat 4K, 500", *flat_mask(3840, 2160, 500)),
        ("aa 4K, 60", *synthetic_mask(3840, 2160, 60)),
        ("aa 1080p, 60", *synthetic_mask(1920, 1080, 60)),
    ]
    peer_repeat = max(3, args.repeat // 3)
    rows = []
    stages = {}
    for name, data, result in cases:
        labelmap = build_labelmap(result["legend"], result["instances"])
        semantic, instances, found = labelhook_frame(data, labelmap)
        a = median_ms(lambda data=data: pillow_decode(data), args.repeat)
        b = median_ms(lambda data=data, labelmap=labelmap: labelhook_frame(data, labelmap), args.repeat)
        c = median_ms(lambda data=data, legend=result["legend"]: peer_frame(data, legend), peer_repeat)
        rows.append((name, len(data), found, a, b, c, len(semantic), len(instances)))
        stages[name] = stage_costs(data, labelmap, args.repeat)
    print(f"one frame, median of {args.repeat} runs (peer: {peer_repeat}), all measured in this run")
    print(
        f"{'mask':>13} {'png':>8} {'segs':>5} {'(a) pillow':>11} {'(b) labelhook':>14} {'(c) peer':>10} "
        f"{'b/a':>5} {'c/b':>6} {'semantic.png':>13} {'instances.png':>14}"
    )
    for name, size, found, a, b, c, sem, inst in rows:
        print(
            f"{name:>13} {size / 1024:>6.0f}Ki {found:>5} {a:>9.1f}ms {b:>12.1f}ms {c:>8.1f}ms "
            f"{b / a:>5.2f} {c / b:>6.2f} {sem / 1024:>11.0f}Ki {inst / 1024:>12.0f}Ki"
        )
    print("stages of (b), each timed alone (ms):")
    names = list(next(iter(stages.values())))
    print(f"{'mask':>13} " + " ".join(f"{n:>16}" for n in names))
    for name, costs in stages.items():
        print(f"{name:>13} " + " ".join(f"{costs[n]:>16.1f}" for n in names))
    flat = {name: b for name, _, _, _, b, _, _, _ in rows if name.startswith("flat")}
    growth = flat["flat 4K, 500"] / flat["flat 4K, 5"]

    data, result = synthetic_mask(1920, 1080, 60)
    video(result, data, 2, 1)  # warm-up
    one, _, written_one = video(result, data, args.frames, 1)
    two, busy, written_two = video(result, data, args.frames, 2)
    one_again, _, _ = video(result, data, args.frames, 1)
    two_again, busy_again, _ = video(result, data, args.frames, 2)
    sequential, parallel = min(one, one_again), min(two, two_again)
    print(
        f"1080p video, {args.frames} frames: 1 thread {one:.1f} / {one_again:.1f} ms per frame, "
        f"2 threads {two:.1f} / {two_again:.1f} ms per frame (CPU/wall {busy:.2f} / {busy_again:.2f}; "
        f"2.0 = both cores); best-of-2 speed-up {sequential / parallel:.2f}x; "
        f"outputs identical: {written_one == written_two}"
    )

    data, result = cases[1][1], cases[1][2]
    memory = measure_memory(data, result)
    raw = 3840 * 2160 * 4
    print(
        f"peak extra memory, one flat 4K frame of (b): tracemalloc {memory['traced'] / raw:.2f}x raw RGBA, "
        f"process RSS {memory['rss'] / raw:.2f}x raw RGBA (raw RGBA = {raw / 2**20:.1f} MiB)"
    )
    worst_flat = max(b / a for name, _, _, a, b, _, _, _ in rows if name.startswith("flat"))
    peer_60 = min(c / b for name, _, _, _, b, c, _, _ in rows if name in ("flat 4K, 60", "flat 4K, 500"))
    peer_5 = next(c / b for name, _, _, _, b, c, _, _ in rows if name == "flat 4K, 5")
    print(
        f"goals: flat b/a <= 2.5 (worst {worst_flat:.2f}); "
        f"c/b >= 3 at >= 60 instances (worst {peer_60:.2f}), "
        f">= 1 at 5 ({peer_5:.2f}); growth 5->500 <= 1.3 ({growth:.2f}); "
        f"video speed-up >= 1.6 on 2 cores ({sequential / parallel:.2f})"
    )


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
