"""Issue 18 #7: a mask the defaults admit cannot push a worker past the documented dyno.

The README sizes a worker for a 512 MB dyno with ``LABELHOOK_WORKER_CONCURRENCY=2``; the goal is a
peak RSS of at most 400 MB whatever the masks. The child process below is a worker's mask path with
the default settings: the worker's imports, two jobs at once (the worker's concurrency), each a video
decoded on the default number of threads, drawing on the one process-wide mask memory budget. Its
frames are the worst the defaults admit: the largest RGBA and 16-bit grey frames under the default
pixel limit, and the largest frame of noise over a big legend (refused, but only after decoding).
The peak is the child's own high-water mark (``VmHWM``), so nothing else on the machine counts.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from processors.config import load_settings

PEAK_LIMIT = 400 * 1024 * 1024
ROOT = Path(__file__).resolve().parents[2]

# Runs in the child: a worker's imports and two segmentation jobs on two threads, default settings.
CHILD = """
import json, sys, threading
from pathlib import Path
import processors.worker  # noqa: F401  (a worker's resident imports)
from processors.config import load_settings
from processors.errors import Permanent
from processors.masks.memory import MemoryBudget
from processors.masks.segmentation import process_segmentation

settings = load_settings({})
jobs = json.loads(Path(sys.argv[1]).read_text())
outcomes = {}

def run(name, job):
    frames = ((index, Path(path).read_bytes()) for index, path in enumerate(job["frames"]))
    try:
        summary = process_segmentation(
            {"legend": job["legend"]}, frames, lambda key, data: None,
            max_pixels=settings.max_pixels, threads=settings.mask_threads,
            budget=MemoryBudget.shared(settings.mask_memory_bytes),
        )
        outcomes[name] = f"ok {summary.frames} frames"
    except Permanent as exc:
        outcomes[name] = f"refused: {exc.reason}"

threads = [threading.Thread(target=run, args=item) for item in jobs.items()]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(json.dumps(outcomes))
"""


def _png(image: Image.Image, level: int = 6) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=level)
    return buffer.getvalue()


def _rectangles(width: int, height: int, count: int) -> tuple[bytes, dict[str, str]]:
    rng = np.random.default_rng(3)
    image = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    legend: dict[str, str] = {}
    for number in range(count):
        r, g, b = (int(v) for v in rng.integers(16, 256, 3))
        legend[f"#{r:02x}{g:02x}{b:02x}"] = f"car # {number}"
        x0, y0 = int(rng.integers(0, width - 64)), int(rng.integers(0, height - 64))
        box = (x0, y0, x0 + int(rng.integers(32, width // 4)), y0 + int(rng.integers(32, height // 4)))
        draw.rectangle(box, fill=(r, g, b, 255))
    return _png(image), legend


def _grey16(width: int, height: int) -> bytes:
    samples = np.zeros((height, width), dtype=np.uint16)
    samples[height // 4 : height // 2, width // 3 : width // 2] = 0x1234
    return _png(Image.frombytes("I;16", (width, height), samples.astype("<u2").tobytes()))


def _noise(width: int, height: int, legend: dict[str, str]) -> bytes:
    rng = np.random.default_rng(5)
    colours = np.array([int(key[1:], 16) for key in legend], dtype=np.uint32)
    picked = colours[rng.integers(0, colours.size, (height, width), dtype=np.int32)]
    rgba = np.empty((height, width, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2] = picked >> 16, picked >> 8, picked
    rgba[..., 3] = 255
    del picked
    return _png(Image.fromarray(rgba), level=1)


def _worker_env() -> dict[str, str]:
    """The environment the Procfile gives a worker dyno (its glibc malloc setting)."""
    [line] = [line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("worker:")]
    settings = dict(word.split("=", 1) for word in line.split()[1:] if "=" in word)
    assert settings.get("MALLOC_MMAP_THRESHOLD_") == "1048576", line
    return {**os.environ, **settings, "PYTHONPATH": str(ROOT)}


def _run(args: list[str]) -> str:
    """Run a child with a worker dyno's environment (killed if it outlives the timeout); its stdout."""
    env = _worker_env()
    child = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        stdout, stderr = child.communicate(timeout=300)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 0, stderr.decode(errors="replace")[-2000:]
    return stdout.decode()


def test_worst_admitted_masks_fit_the_documented_dyno(tmp_path: Path) -> None:
    settings = load_settings({})
    limit = settings.max_pixels
    assert limit * 10 + 16 * 2**20 <= settings.mask_memory_bytes  # the default follows the budget
    width = 6000
    height = limit // width
    big, legend = _rectangles(width, height, 500)
    big_path = tmp_path / "rectangles.png"
    big_path.write_bytes(big)
    grey_path = tmp_path / "grey16.png"
    grey_path.write_bytes(_grey16(width, height))
    noise_legend = {"#%06x" % (0x100000 + 97 * n): "thing" for n in range(4000)}
    noise_path = tmp_path / "noise.png"
    noise_path.write_bytes(_noise(width, height, noise_legend))
    issue_path = tmp_path / "issue-10000x10000.png"  # the reported input: 194 KB, 2.4 GB before
    issue_path.write_bytes(_png(Image.new("I;16", (10000, 10000), 0), level=9))
    jobs = {
        "video": {
            "legend": {**legend, "#121212": "grey"},
            "frames": [str(big_path), str(grey_path), str(big_path)],
        },
        "noise": {"legend": {**noise_legend, **legend}, "frames": [str(big_path), str(noise_path)]},
        "issue": {"legend": legend, "frames": [str(issue_path)]},
    }
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))

    code = (
        CHILD
        + """
for line in Path("/proc/self/status").read_text().splitlines():
    if line.startswith("VmHWM:"):
        print(int(line.split()[1]) * 1024)
"""
    )
    out = _run([sys.executable, "-c", code, str(tmp_path / "jobs.json")])
    outcomes_line, peak_line = out.strip().splitlines()[-2:]
    outcomes = json.loads(outcomes_line)
    peak = int(peak_line)
    print(f"peak RSS {peak / 2**20:.0f} MiB; frames of {width}x{height}; outcomes {outcomes}")
    assert outcomes["video"] == "ok 3 frames"
    assert outcomes["noise"].startswith("refused: frame 1: mask has more than")
    assert outcomes["issue"].startswith("refused: frame 0: mask is 10000x10000")
    assert peak <= PEAK_LIMIT, f"peak RSS {peak / 2**20:.0f} MiB"
