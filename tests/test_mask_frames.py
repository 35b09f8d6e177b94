"""The fast mask path (banded decode, runs, threads, memory budget) against plain references.

`decode_png` reads a decoded image a band of rows at a time and maps runs of equal pixels; these
tests compare it with a per-pixel reference built from Pillow's own RGBA conversion, on images wide
enough to span several bands, in every PNG kind a vendor might send. Frames decoded on several
threads must give the bytes of the sequential run, in order, with errors named by their frame.
"""

from __future__ import annotations

import io
import threading
import time
from typing import Any

import numpy as np
import pycocotools.mask as coco
import pytest
from PIL import Image

from processors.errors import Permanent
from processors.masks.decode import MAX_UNKNOWN_COLOURS, build_labelmap, decode_png, read_rgba
from processors.masks.memory import MemoryBudget, frame_cost
from processors.masks.segmentation import process_segmentation

MAX = 50_000_000
WIDTH, HEIGHT = 3000, 200  # 87 rows per 1 MiB band: three bands


def _png(image: Image.Image, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **options)
    return buffer.getvalue()


def _flat_rgba(seed: int, colours: list[tuple[int, int, int]]) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rgba = np.zeros((HEIGHT, WIDTH, 4), dtype=np.uint8)
    for colour in colours * 3:
        x0, y0 = int(rng.integers(0, WIDTH - 10)), int(rng.integers(0, HEIGHT - 10))
        x1, y1 = x0 + int(rng.integers(1, 900)), y0 + int(rng.integers(1, 150))
        rgba[y0:y1, x0:x1] = (*colour, 255)
    rgba[rng.integers(0, HEIGHT, 300), rng.integers(0, WIDTH, 300)] = (7, 8, 9, 255)  # unlisted
    rgba[rng.integers(0, HEIGHT, 300), rng.integers(0, WIDTH, 300), 3] = 0  # transparent specks
    return rgba


COLOURS = [(250, 10, 10), (10, 250, 10), (10, 10, 250), (7, 8, 10), (255, 255, 255)]
LEGEND = {f"#{r:02x}{g:02x}{b:02x}": f"thing # {n}" for n, (r, g, b) in enumerate(COLOURS)}


def _reference(rgba: np.ndarray, legend: dict[str, str]) -> tuple[np.ndarray, dict[str, int]]:
    """Segment number per pixel and unknown colour counts, one pixel at a time (slow, obvious)."""
    labelmap = build_labelmap(legend, None)
    number = {segment.color: segment.number for segment in labelmap.segments}
    flat = rgba.reshape(-1, 4)
    names = np.array([f"#{r:02x}{g:02x}{b:02x}" for r, g, b in flat[:, :3].tolist()])
    opaque = flat[:, 3] > 0
    instances = np.array([number.get(name, 0) for name in names.tolist()], dtype=np.uint16) * opaque
    unknown: dict[str, int] = {}
    for name, is_opaque in zip(names.tolist(), opaque.tolist(), strict=True):
        if is_opaque and name not in number:
            unknown[name] = unknown.get(name, 0) + 1
    return instances.reshape(rgba.shape[:2]), dict(sorted(unknown.items()))


def _check(data: bytes, expected_rgba: np.ndarray) -> None:
    assert np.array_equal(read_rgba(data, max_pixels=MAX), expected_rgba)
    labelmap = build_labelmap(LEGEND, None)
    frame = decode_png(data, labelmap, max_pixels=MAX)
    instances, unknown = _reference(expected_rgba, LEGEND)
    assert np.array_equal(frame.instances, instances)
    assert frame.unknown_colors == unknown
    for found in frame.segments:
        mask = instances == found.segment.number
        rle = coco.encode(np.asfortranarray(mask.astype(np.uint8)))
        assert found.counts == rle["counts"].decode()
        assert found.area == int(mask.sum())
        assert list(found.bbox) == coco.toBbox(rle).tolist()


def test_rgba_over_several_bands_matches_the_per_pixel_reference() -> None:
    rgba = _flat_rgba(1, COLOURS)
    _check(_png(Image.fromarray(rgba)), rgba)


def test_rgb_with_a_transparent_colour() -> None:
    rgba = _flat_rgba(2, COLOURS)
    rgba[..., 3] = 255
    rgba[(rgba[..., :3] == (10, 250, 10)).all(axis=2), 3] = 0  # what tRNS (10, 250, 10) means
    rgb = Image.fromarray(np.ascontiguousarray(_flat_rgba(2, COLOURS)[..., :3]))
    _check(_png(rgb, transparency=(10, 250, 10)), rgba)


def test_palette_with_per_entry_alpha_matches_pillows_conversion() -> None:
    rows, columns = np.indices((HEIGHT, WIDTH))
    indices = ((rows // 20 + columns // 500) % 6).astype(np.uint8)
    image = Image.fromarray(indices, mode="P")
    image.putpalette([c for colour in COLOURS for c in colour] + [1, 2, 3])
    data = _png(image, transparency=bytes([255, 0, 255, 128, 255, 255]))  # 1: clear, 3: half
    expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"))
    assert (expected[..., 3] == 0).any()
    _check(data, expected)


@pytest.mark.parametrize("mode", ["L", "LA"])
def test_grey_modes_follow_pillows_conversion(mode: str) -> None:
    rgba = _flat_rgba(3, [(200, 200, 200), (40, 40, 40)])
    image = Image.fromarray(rgba).convert(mode)
    data = _png(image, transparency=40) if mode == "L" else _png(image)
    _check(data, np.asarray(Image.open(io.BytesIO(data)).convert("RGBA")))


def test_unknown_colours_keep_the_lowest_exactly() -> None:
    rng = np.random.default_rng(4)
    values = rng.integers(0, 1 << 24, (HEIGHT, WIDTH), dtype=np.uint32)
    rgba = np.zeros((HEIGHT, WIDTH, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = values >> 16, values >> 8, values, 255
    frame = decode_png(_png(Image.fromarray(rgba)), build_labelmap({}, None), max_pixels=MAX)
    distinct, counts = np.unique(values, return_counts=True)
    expected = {f"#{v:06x}": int(n) for v, n in zip(distinct.tolist(), counts.tolist(), strict=True)}
    assert len(frame.unknown_colors) == MAX_UNKNOWN_COLOURS
    assert frame.unknown_colors == dict(list(expected.items())[:MAX_UNKNOWN_COLOURS])


def test_noise_is_refused_by_the_run_limit() -> None:
    rng = np.random.default_rng(6)
    legend = {f"#{n:06x}": "thing" for n in range(1, 200)}
    values = rng.integers(1, 200, (HEIGHT, WIDTH), dtype=np.uint32)
    rgba = np.zeros((HEIGHT, WIDTH, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = values >> 16, values >> 8, values, 255
    with pytest.raises(Permanent, match="labelled runs"):
        decode_png(_png(Image.fromarray(rgba)), build_labelmap(legend, None), max_pixels=MAX)


def _video(count: int) -> list[tuple[int, bytes]]:
    return [(3 * n, _png(Image.fromarray(_flat_rgba(10 + n, COLOURS)))) for n in range(count)]


def test_threads_write_the_sequential_bytes_in_the_same_order() -> None:
    frames = _video(7)
    runs = []
    for threads in (1, 3, 2):
        written: list[tuple[str, bytes]] = []
        summary = process_segmentation(
            {"legend": LEGEND},
            iter(frames),
            lambda key, data, written=written: written.append((key, data)),
            max_pixels=MAX,
            threads=threads,
            budget=MemoryBudget(64 * 2**20),
        )
        runs.append((written, summary))
    assert runs[1] == runs[0] and runs[2] == runs[0]
    assert [key for key, _ in runs[0][0][:4]] == [
        "masks/0/semantic.png",
        "masks/0/instances.png",
        "masks/3/semantic.png",
        "masks/3/instances.png",
    ]


def test_threads_read_at_most_n_frames_ahead_and_name_the_bad_frame() -> None:
    frames = _video(6)
    frames[3] = (frames[3][0], frames[3][1][:100])  # truncated
    taken: list[int] = []

    def source() -> Any:
        for index, data in frames:
            taken.append(index)
            yield index, data

    written: list[str] = []
    with pytest.raises(Permanent, match=r"^frame 9: mask PNG is truncated"):
        process_segmentation(
            {"legend": LEGEND}, source(), lambda key, _: written.append(key), max_pixels=MAX, threads=2
        )
    assert written[-1] == "masks/6/instances.png"  # every frame before the bad one, in order
    assert len(taken) <= 4 + 2  # the bad frame and at most two read ahead of the writer


def test_budget_holds_frames_back_until_memory_is_free() -> None:
    budget = MemoryBudget(100)
    inside: list[int] = []
    most = [0]
    lock = threading.Lock()

    def hold(nbytes: int) -> None:
        with budget.reserve(nbytes):
            with lock:
                inside.append(nbytes)
                most[0] = max(most[0], sum(inside))
            time.sleep(0.05)
            with lock:
                inside.remove(nbytes)

    threads = [threading.Thread(target=hold, args=(size,)) for size in (60, 60, 30, 500, 10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    assert most[0] <= 100 or most[0] == 500  # the oversize reservation ran alone
    assert budget.reserved == 0


def test_frame_cost_follows_the_png_kind() -> None:
    rgba = _png(Image.new("RGBA", (100, 100)))
    palette = _png(Image.new("P", (100, 100)))
    assert frame_cost(rgba) - len(rgba) > frame_cost(palette) - len(palette)
    assert frame_cost(b"not a png") == len(b"not a png")
