"""Mask decoding against a slow per-pixel reference, pycocotools, and the vendor formats of seed 003."""

from __future__ import annotations

import io
import json
import struct
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pycocotools.mask as coco
import pytest
from PIL import Image, ImageFile

from processors.errors import Permanent
from processors.masks.decode import (
    build_labelmap,
    decode_frame,
    encode_instances_png,
    encode_semantic_png,
    read_rgba,
)
from processors.masks.segmentation import decode_command, process_segmentation

MAX = 10_000_000

# pycocotools' Cython decode trips numpy 2's __array__(copy=) deprecation; that is its issue, not ours.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

# Seed 003, "Instance Aware Segmentation" result object (url dropped).
SEED_INSTANCE_RESULT: dict[str, Any] = {
    "legend": {
        "#00c537": "car # 1",
        "#01d9fc": "pedestrian # 1",
        "#fac1c2": "pedestrian # 2",
        "#fb0379": "pedestrian # 3",
        "#fcbe92": "car # 2",
        "#fda7df": "vegetation",
    },
    "instances": [
        {
            "_id": "8037614b",
            "color": "#00c537",
            "index": 1,
            "value": "car # 1",
            "class_id": "f044",
            "attributes": [],
        },
        {
            "_id": "bc3a8010",
            "color": "#fcbe92",
            "index": 2,
            "value": "car # 2",
            "class_id": "f044",
            "attributes": [],
        },
        {"_id": "0037614b", "color": "#01d9fc", "index": 1, "value": "pedestrian # 1", "class_id": "0044"},
        {"_id": "1c3a8010", "color": "#fac1c2", "index": 2, "value": "pedestrian # 2", "class_id": "0044"},
        {"_id": "037614b", "color": "#fb0379", "index": 3, "value": "pedestrian # 3", "class_id": "0044"},
        {"_id": "7c3a8010", "color": "#fda7df", "index": 0, "value": "vegetation", "class_id": "4443"},
    ],
}
# Seed 003, "Simple Segmentation": note the 7-digit key.
SEED_SIMPLE_LEGEND = {"#fdffd34": "Car", "#f23334": "Sky", "#fd2d34": "Tree"}


# ---------------------------------------------------------------- helpers


def rgb(hex_colour: str) -> tuple[int, int, int]:
    return int(hex_colour[1:3], 16), int(hex_colour[3:5], 16), int(hex_colour[5:7], 16)


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def raw_png(header: bytes, idat: bytes) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def rgba16_png(samples: np.ndarray) -> bytes:
    """A 16-bit RGBA PNG written by hand (Pillow cannot write one)."""
    height, width, _ = samples.shape
    rows = b"".join(b"\x00" + samples[y].astype(">u2").tobytes() for y in range(height))
    return raw_png(struct.pack(">IIBBBBB", width, height, 16, 6, 0, 0, 0), zlib.compress(rows))


def paint(height: int, width: int, shapes: list[tuple[slice, slice, str]], alpha: int = 255) -> np.ndarray:
    image = np.zeros((height, width, 4), dtype=np.uint8)
    for rows, cols, colour in shapes:
        image[rows, cols, :3] = rgb(colour)
        image[rows, cols, 3] = alpha
    return image


def reference(rgba: np.ndarray, legend: dict[str, str]) -> tuple[list[list[str | None]], dict[str, int]]:
    """Per pixel, slowly: the legend colour it belongs to (None = unlabeled), and unknown colours."""
    valid = {key.lower(): name for key, name in legend.items() if len(key) == 7 and key[0] == "#"}
    colours: list[list[str | None]] = []
    unknown: dict[str, int] = {}
    for y in range(rgba.shape[0]):
        row: list[str | None] = []
        for x in range(rgba.shape[1]):
            r, g, b, a = (int(v) for v in rgba[y, x])
            hex_colour = f"#{r:02x}{g:02x}{b:02x}"
            if a == 0:
                row.append(None)
            elif hex_colour in valid:
                row.append(hex_colour)
            else:
                row.append(None)
                unknown[hex_colour] = unknown.get(hex_colour, 0) + 1
        colours.append(row)
    return colours, unknown


def check_frame(rgba: np.ndarray, result: dict[str, Any]) -> Any:
    """Decode and compare every pixel and every annotation with the reference and pycocotools."""
    labelmap = build_labelmap(result["legend"], result.get("instances"))
    frame = decode_frame(rgba, labelmap)
    expected, unknown = reference(rgba, result["legend"])
    by_number = {segment.number: segment for segment in labelmap.segments}
    names = {entry.id: entry.name for entry in labelmap.classes}
    instance_names = {i["color"]: i["value"] for i in result.get("instances") or []}
    for y, row in enumerate(expected):
        for x, colour in enumerate(row):
            number, label = int(frame.instances[y, x]), int(frame.semantic[y, x])
            if colour is None:
                assert (number, label) == (0, 0), (y, x)
                continue
            assert by_number[number].color == colour
            legend_name = {k.lower(): v for k, v in result["legend"].items()}[colour]
            name = instance_names.get(colour, legend_name)
            assert names[label] == (name.split(" # ")[0] if "instances" in result else name)
    assert frame.unknown_colors == unknown
    height, width = rgba.shape[:2]
    for found in frame.segments:
        rle = {"size": [height, width], "counts": found.counts.encode()}
        pixels = coco.decode(rle)
        assert np.array_equal(pixels.astype(bool), frame.instances == found.segment.number)
        assert found.area == int(coco.area(rle)) == int(pixels.sum())
        assert list(found.bbox) == coco.toBbox(rle).tolist()
        ys, xs = np.nonzero(pixels)
        assert found.bbox == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
    present = {colour for row in expected for colour in row if colour}
    assert {f.segment.color for f in frame.segments} == present
    assert set(frame.empty_instances) == {s.color for s in labelmap.segments} - present
    return frame


# ---------------------------------------------------------------- labelmap rules


def test_seed_instance_legend_groups_classes_by_class_id() -> None:
    labelmap = build_labelmap(SEED_INSTANCE_RESULT["legend"], SEED_INSTANCE_RESULT["instances"])
    assert [entry.as_json() for entry in labelmap.classes] == [
        {"id": 0, "name": "unlabeled", "color": "#000000", "class_id": None},
        {"id": 1, "name": "car", "color": "#00c537", "class_id": "f044"},
        {"id": 2, "name": "pedestrian", "color": "#01d9fc", "class_id": "0044"},
        {"id": 3, "name": "vegetation", "color": "#fda7df", "class_id": "4443"},
    ]
    assert [(s.number, s.color, s.label_id, s.instance_id) for s in labelmap.segments] == [
        (1, "#00c537", 1, "8037614b"),
        (2, "#01d9fc", 2, "0037614b"),
        (3, "#fac1c2", 2, "1c3a8010"),
        (4, "#fb0379", 2, "037614b"),
        (5, "#fcbe92", 1, "bc3a8010"),
        (6, "#fda7df", 3, "7c3a8010"),
    ]
    assert labelmap.segments[0].attributes == []  # as given
    assert labelmap.segments[1].attributes == {}  # default
    assert labelmap.invalid_legend_keys == ()


def test_seed_simple_legend_reports_seven_digit_key_without_guessing() -> None:
    labelmap = build_labelmap(SEED_SIMPLE_LEGEND, None)
    assert labelmap.invalid_legend_keys == ("#fdffd34",)
    assert [(c.id, c.name, c.color) for c in labelmap.classes] == [
        (0, "unlabeled", "#000000"),
        (1, "Sky", "#f23334"),
        (2, "Tree", "#fd2d34"),
    ]
    # Neither truncation (#fdffd3) nor any prefix of the key is treated as a legend colour.
    assert {s.color for s in labelmap.segments} == {"#f23334", "#fd2d34"}


def test_semantic_legend_shares_class_between_colours_and_normalises_case() -> None:
    legend = {"#FF00AA": "road", "#00ff00": "tree", "#0000Ff": "road", "#ff00aa": "other", "fff": "x"}
    labelmap = build_labelmap(legend, None)
    assert [(c.name, c.color) for c in labelmap.classes] == [
        ("unlabeled", "#000000"),
        ("road", "#ff00aa"),
        ("tree", "#00ff00"),
    ]
    assert [(s.color, s.label_id) for s in labelmap.segments] == [
        ("#ff00aa", 1),
        ("#00ff00", 2),
        ("#0000ff", 1),
    ]
    assert labelmap.invalid_legend_keys == ("#ff00aa", "fff")  # a conflicting duplicate, a bad key


def test_instances_without_record_or_class_id() -> None:
    legend = {"#010101": "car # 1", "#020202": "car # 3", "#030303": "tree # 1"}
    instances = [
        {"color": "#010101", "value": "car # 1", "class_id": "C"},
        {"color": "#030303", "value": "tree # 1"},
        {"color": "#040404", "value": "bus # 1", "class_id": "B", "_id": "b1"},
    ]
    labelmap = build_labelmap(legend, instances)
    assert [(c.name, c.class_id, c.color) for c in labelmap.classes[1:]] == [
        ("car", "C", "#010101"),
        ("tree", None, "#030303"),
        ("bus", "B", "#040404"),
    ]
    assert [(s.number, s.color, s.label_id) for s in labelmap.segments] == [
        (1, "#010101", 1),
        (2, "#020202", 1),  # no record: joins the class named "car"
        (3, "#030303", 2),
        (4, "#040404", 3),  # listed instance missing from the legend still counts
    ]


@pytest.mark.parametrize(
    "legend, instances",
    [
        (["#000000"], None),
        ({"#000000": 3}, None),
        ({"#000000": "a"}, "nope"),
        ({"#000000": "a"}, [{"value": "a"}]),
        ({"#000000": "a"}, [{"color": "#000000", "class_id": 7}]),
    ],
)
def test_bad_legend_structure_is_permanent(legend: Any, instances: Any) -> None:
    with pytest.raises(Permanent):
        build_labelmap(legend, instances)


# ---------------------------------------------------------------- decoding against the reference


def test_semantic_only_frame_with_unknown_and_transparent_pixels() -> None:
    legend = {"#f23334": "Sky", "#FD2D34": "Tree", "#fdffd34": "Car"}
    rgba = paint(9, 11, [(slice(0, 4), slice(None), "#f23334"), (slice(4, 9), slice(2, 8), "#fd2d34")])
    rgba[8, 0] = [0xFD, 0xFF, 0xD3, 255]  # the 6-digit prefix of the bad key: unknown, not "Car"
    rgba[0, 0, 3] = 0  # legend colour but transparent → unlabeled, not unknown
    rgba[5, 9] = [1, 2, 3, 0]  # transparent unknown colour: not counted
    frame = check_frame(rgba, {"legend": legend})
    assert frame.unknown_colors["#fdffd3"] == 1
    assert "#010203" not in frame.unknown_colors


def test_instance_frame_with_anti_aliased_edges_counts_unknown_colours() -> None:
    shapes = [
        (slice(0, 6), slice(0, 6), "#00c537"),
        (slice(2, 9), slice(7, 12), "#fcbe92"),
        (slice(7, 12), slice(0, 5), "#01d9fc"),
        (slice(10, 12), slice(10, 14), "#fda7df"),
    ]
    rgba = paint(12, 14, shapes)
    # Blend the pixels either side of each vertical edge, as an anti-aliasing rasteriser would.
    opaque = rgba.copy()
    for y in range(12):
        for x in range(1, 14):
            if tuple(opaque[y, x]) != tuple(opaque[y, x - 1]):
                rgba[y, x, :3] = (opaque[y, x, :3].astype(int) + opaque[y, x - 1, :3]) // 2
                rgba[y, x, 3] = 255
    frame = check_frame(rgba, SEED_INSTANCE_RESULT)
    assert frame.unknown_colors  # edges really produced colours outside the legend
    assert set(frame.empty_instances) == {"#fac1c2", "#fb0379"}


def test_random_masks_match_reference() -> None:
    rng = np.random.default_rng(3)
    colours = ["#00c537", "#01d9fc", "#fac1c2", "#fb0379", "#fcbe92", "#fda7df", "#123456"]
    for _ in range(5):
        picks = rng.integers(0, len(colours), (17, 23))
        rgba = np.zeros((17, 23, 4), dtype=np.uint8)
        for y in range(17):
            for x in range(23):
                rgba[y, x, :3] = rgb(colours[picks[y, x]])
        rgba[..., 3] = rng.choice([0, 128, 255], (17, 23), p=[0.1, 0.1, 0.8])
        check_frame(rgba, SEED_INSTANCE_RESULT)


def test_more_than_255_classes_gives_16_bit_semantic_png() -> None:
    legend = {f"#{i:06x}": f"class {i}" for i in range(1, 301)}
    rgba = np.zeros((10, 30, 4), dtype=np.uint8)
    for i in range(300):
        rgba[i // 30, i % 30] = [i >> 16, (i >> 8) & 0xFF, i & 0xFF, 255]  # colour #000000 … #00012b
    frame = check_frame(rgba, {"legend": legend})
    labelmap = build_labelmap(legend, None)
    assert frame.semantic.dtype == np.uint16
    decoded = np.asarray(Image.open(io.BytesIO(encode_semantic_png(frame.semantic, labelmap))))
    assert decoded.dtype.itemsize >= 2 and decoded.max() == 299
    assert np.array_equal(decoded, frame.semantic)
    assert frame.unknown_colors == {"#000000": 1}  # opaque black is not in this legend


def test_pngs_decode_to_the_maps_with_the_labelmap_palette() -> None:
    labelmap = build_labelmap(SEED_INSTANCE_RESULT["legend"], SEED_INSTANCE_RESULT["instances"])
    rgba = paint(20, 30, [(slice(2, 9), slice(3, 20), "#fcbe92"), (slice(10, 20), slice(0, 30), "#fda7df")])
    frame = decode_frame(rgba, labelmap)
    semantic = Image.open(io.BytesIO(encode_semantic_png(frame.semantic, labelmap)))
    assert semantic.mode == "P"
    assert np.array_equal(np.asarray(semantic), frame.semantic)
    palette = semantic.getpalette() or []
    assert [tuple(palette[3 * c.id : 3 * c.id + 3]) for c in labelmap.classes] == [
        rgb(c.color) for c in labelmap.classes
    ]
    instances = Image.open(io.BytesIO(encode_instances_png(frame.instances)))
    assert instances.mode.startswith("I")
    assert np.array_equal(np.asarray(instances), frame.instances)
    assert set(np.unique(frame.instances).tolist()) == {0, 5, 6}


# ---------------------------------------------------------------- PNG flavours


def test_rgba_rgb_palette_grey_and_16_bit_pngs() -> None:
    rgba = paint(6, 8, [(slice(0, 3), slice(None), "#f23334"), (slice(3, 6), slice(0, 5), "#fd2d34")])
    assert np.array_equal(read_rgba(png(rgba), max_pixels=MAX), rgba)
    assert np.array_equal(read_rgba(png(rgba[..., :3]), max_pixels=MAX)[..., :3], rgba[..., :3])
    assert (read_rgba(png(rgba[..., :3]), max_pixels=MAX)[..., 3] == 255).all()

    indices = np.array([[0, 1, 2], [2, 1, 0]], dtype=np.uint8)
    palette_image = Image.fromarray(indices, mode="P")
    palette_image.putpalette([0xF2, 0x33, 0x34, 0xFD, 0x2D, 0x34, 9, 9, 9])
    buffer = io.BytesIO()
    palette_image.save(buffer, format="PNG", transparency=2)  # index 2 becomes a tRNS entry
    decoded = read_rgba(buffer.getvalue(), max_pixels=MAX)
    assert decoded[0, 0].tolist() == [0xF2, 0x33, 0x34, 255]
    assert decoded[0, 1].tolist() == [0xFD, 0x2D, 0x34, 255]
    assert decoded[0, 2, 3] == 0 and decoded[1, 0, 3] == 0
    frame = decode_frame(decoded, build_labelmap({"#f23334": "Sky", "#090909": "dark"}, None))
    assert frame.semantic.tolist() == [[1, 0, 0], [0, 0, 1]]  # index 2 is transparent → unlabeled

    grey = np.array([[0x0012, 0xAB34], [0xFFFF, 0x0100]], dtype=np.uint16)
    decoded = read_rgba(png(grey), max_pixels=MAX)
    assert decoded[..., 0].tolist() == [[0x00, 0xAB], [0xFF, 0x01]]  # high byte
    assert (decoded[..., 0] == decoded[..., 2]).all() and (decoded[..., 3] == 255).all()

    samples = np.zeros((2, 3, 4), dtype=np.uint16)
    samples[0, 0] = [0xF2FF, 0x3301, 0x3480, 0xFFFF]
    samples[1, 2] = [0xF200, 0x3300, 0x3400, 0x00FF]  # alpha high byte 0: transparent
    decoded = read_rgba(rgba16_png(samples), max_pixels=MAX)
    assert decoded[0, 0].tolist() == [0xF2, 0x33, 0x34, 0xFF]
    assert decoded[1, 2].tolist() == [0xF2, 0x33, 0x34, 0x00]
    frame = decode_frame(decoded, build_labelmap({"#f23334": "Sky"}, None))
    assert frame.semantic.tolist() == [[1, 0, 0], [0, 0, 0]]


# ---------------------------------------------------------------- bad input


def test_decompression_bomb_fails_fast_without_allocating() -> None:
    header = struct.pack(">IIBBBBB", 40000, 40000, 8, 6, 0, 0, 0)
    bomb = raw_png(header, zlib.compress(b"\x00" * 1000))
    assert len(bomb) < 200
    tracemalloc.start()
    started = time.perf_counter()
    for limit in (100_000_000, 10**10):  # ours first; then Pillow's own bomb guard
        with pytest.raises(Permanent, match=r"pixel|large"):
            read_rgba(bomb, max_pixels=limit)
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert elapsed < 1.0
    assert peak < 5_000_000


def test_truncated_png_is_permanent_even_with_truncated_loading_enabled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = png(np.random.default_rng(0).integers(0, 255, (64, 64, 4), dtype=np.uint8))
    for cut in (10, 30, len(data) // 2, len(data) - 5):
        with pytest.raises(Permanent, match="truncated"):
            read_rgba(data[:cut], max_pixels=MAX)
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(Permanent, match="truncated"):
        read_rgba(data[: len(data) // 2], max_pixels=MAX)
    assert read_rgba(data, max_pixels=MAX).shape == (64, 64, 4)


def test_corrupt_compressed_data_with_valid_crc_is_permanent() -> None:
    header = struct.pack(">IIBBBBB", 4, 4, 8, 6, 0, 0, 0)
    with pytest.raises(Permanent, match="corrupt"):
        read_rgba(raw_png(header, b"this is not zlib data"), max_pixels=MAX)
    good = rgba16_png(np.zeros((3, 3, 4), dtype=np.uint16))
    damaged = bytearray(good)
    damaged[45] ^= 0xFF
    with pytest.raises(Permanent, match="CRC"):
        read_rgba(bytes(damaged), max_pixels=MAX)


@pytest.mark.parametrize("data", [b"", b"hello world", b"GIF89a" + b"\x00" * 40, b"\x89PNG\r\n\x1a\n"])
def test_non_image_bytes_are_permanent(data: bytes) -> None:
    with pytest.raises(Permanent):
        read_rgba(data, max_pixels=MAX)


def test_jpeg_is_refused() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="JPEG")
    with pytest.raises(Permanent, match="not a PNG"):
        read_rgba(buffer.getvalue(), max_pixels=MAX)


# ---------------------------------------------------------------- job level


def _video_frames() -> list[tuple[int, bytes]]:
    first = paint(8, 10, [(slice(0, 4), slice(0, 4), "#00c537"), (slice(5, 8), slice(0, 10), "#fda7df")])
    first[7, 9] = [1, 1, 1, 255]
    second = paint(8, 10, [(slice(2, 6), slice(4, 9), "#fcbe92"), (slice(0, 2), slice(0, 3), "#00c537")])
    second[0, 9] = [1, 1, 1, 255]
    second[1, 9] = [2, 2, 2, 255]
    return [(0, png(first)), (5, png(second))]


def test_video_job_writes_frames_and_coco_that_pycocotools_reads() -> None:
    written: dict[str, bytes] = {}
    summary = process_segmentation(SEED_INSTANCE_RESULT, _video_frames(), written.__setitem__, max_pixels=MAX)
    assert sorted(written) == [
        "annotations.json",
        "labelmap.json",
        "masks/0/instances.png",
        "masks/0/semantic.png",
        "masks/5/instances.png",
        "masks/5/semantic.png",
    ]
    document = json.loads(written["annotations.json"])
    assert [image["frame_index"] for image in document["images"]] == [0, 5]
    assert [c["name"] for c in document["categories"]] == ["car", "pedestrian", "vegetation"]
    assert json.loads(written["labelmap.json"])[0] == {
        "id": 0,
        "name": "unlabeled",
        "color": "#000000",
        "class_id": None,
    }
    assert document["warnings"] == {
        "unknown_colors": {"#010101": 2, "#020202": 1},
        "invalid_legend_keys": [],
        "empty_instances": ["#01d9fc", "#fac1c2", "#fb0379"],
        # No source images were handed in: each frame is named, and said to be missing.
        "images_not_fetched": {"0": "no source image", "5": "no source image"},
        "image_size_mismatch": [],
    }
    assert [image["file_name"] for image in document["images"]] == ["images/0", "images/5"]
    images = {image["id"]: image for image in document["images"]}
    car_numbers = set()
    for annotation in document["annotations"]:
        assert annotation["iscrowd"] == 0
        frame = images[annotation["image_id"]]["frame_index"]
        instances = np.asarray(Image.open(io.BytesIO(written[f"masks/{frame}/instances.png"])))
        rle = {
            "size": annotation["segmentation"]["size"],
            "counts": annotation["segmentation"]["counts"].encode(),
        }
        pixels = coco.decode(rle).astype(bool)
        assert np.array_equal(pixels, instances == annotation["instance_number"])
        assert annotation["area"] == int(coco.area(rle)) and annotation["bbox"] == coco.toBbox(rle).tolist()
        if annotation["instance_id"] == "8037614b":
            car_numbers.add((frame, annotation["instance_number"], annotation["color"]))
    assert car_numbers == {(0, 1, "#00c537"), (5, 1, "#00c537")}  # same instance, same number in each frame
    assert summary.frames == 2 and summary.annotations == len(document["annotations"]) == 4
    areas = {entry["name"]: entry["area"] for entry in summary.class_areas}
    assert areas == {
        "unlabeled": 160 - 16 - 29 - 6 - 20,
        "car": 16 + 6 + 20,
        "pedestrian": 0,
        "vegetation": 29,
    }


def test_frames_are_consumed_one_at_a_time() -> None:
    events: list[str] = []

    def frames() -> Iterator[tuple[int, bytes]]:
        for index, data in _video_frames():
            events.append(f"read {index}")
            yield index, data

    process_segmentation(SEED_INSTANCE_RESULT, frames(), lambda key, _: events.append(key), max_pixels=MAX)
    assert events[:4] == ["read 0", "masks/0/semantic.png", "masks/0/instances.png", "read 5"]


def test_same_input_gives_identical_bytes() -> None:
    runs = []
    for _ in range(2):
        written: dict[str, bytes] = {}
        process_segmentation(SEED_INSTANCE_RESULT, _video_frames(), written.__setitem__, max_pixels=MAX)
        runs.append(written)
    assert runs[0] == runs[1]
    assert runs[0]["annotations.json"].endswith(b"}\n")


@pytest.mark.parametrize(
    "result, frames",
    [
        ("not an object", [(0, b"")]),
        ({"legend": ["#000000"]}, [(0, b"")]),
        ({"legend": {"#000000": "a"}, "instances": {}}, [(0, b"")]),
        ({"legend": {"#000000": "a"}}, []),
        ({"legend": {"#000000": "a"}}, [(0, b"junk")]),
        ({"legend": {"#000000": "a"}}, [(1, "dup"), (1, "dup")]),
    ],
)
def test_bad_jobs_are_permanent(result: Any, frames: list[tuple[int, Any]]) -> None:
    good = png(paint(2, 2, []))
    frames = [(index, good if data == "dup" else data) for index, data in frames]
    with pytest.raises(Permanent):
        process_segmentation(result, frames, lambda key, data: None, max_pixels=MAX)


# ---------------------------------------------------------------- labelhook decode


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def test_decode_command_writes_one_job_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rgba = paint(6, 7, [(slice(0, 3), slice(0, 7), "#f23334"), (slice(3, 6), slice(2, 5), "#fd2d34")])
    rgba[5, 0] = [0, 0, 0, 255]  # opaque black is a colour like any other: not in this legend
    (tmp_path / "mask.png").write_bytes(png(rgba))
    (tmp_path / "result.json").write_text(json.dumps({"legend": SEED_SIMPLE_LEGEND}))
    out = tmp_path / "out"
    status = decode_command(
        str(tmp_path / "mask.png"), str(tmp_path / "result.json"), str(out), max_pixels=MAX
    )
    assert status == 0
    # The warnings are said, not only filed in annotations.json (issue 22: decode was silent).
    assert capsys.readouterr().err.splitlines() == [
        "labelhook decode: warning: 1 unknown colour(s), 1 px left unlabeled: #000000 (1 px)",
        "labelhook decode: warning: 1 invalid legend key(s): #fdffd34",
    ]
    assert _files(out) == [
        "annotations.json",
        "labelmap.json",
        "masks",
        "masks/0",
        "masks/0/instances.png",
        "masks/0/semantic.png",
    ]
    semantic = np.asarray(Image.open(out / "masks/0/semantic.png"))
    assert semantic.tolist() == [[1] * 7] * 3 + [[0, 0, 2, 2, 2, 0, 0]] * 3
    document = json.loads((out / "annotations.json").read_text())
    assert document["warnings"]["invalid_legend_keys"] == ["#fdffd34"]
    assert document["warnings"]["unknown_colors"] == {"#000000": 1}


@pytest.mark.parametrize("case", ["truncated", "not-image", "oversized", "bad-json", "missing", "not-object"])
def test_decode_command_bad_input_writes_nothing(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = png(paint(20, 20, [(slice(0, 10), slice(0, 20), "#f23334")]))
    result: str = json.dumps({"legend": SEED_SIMPLE_LEGEND})
    limit = MAX
    if case == "truncated":
        data = data[: len(data) - 20]
    elif case == "not-image":
        data = b"<html>not found</html>"
    elif case == "oversized":
        limit = 399
    elif case == "bad-json":
        result = '{"legend": '
    elif case == "not-object":
        result = "[1, 2]"
    mask_path, result_path = tmp_path / "mask.png", tmp_path / "result.json"
    if case != "missing":
        mask_path.write_bytes(data)
    result_path.write_text(result)
    out = tmp_path / "out"
    assert decode_command(str(mask_path), str(result_path), str(out), max_pixels=limit) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and captured.out == ""
    keyword = {"truncated": "truncated", "not-image": "not a PNG", "oversized": "over the limit"}.get(
        case, ""
    )
    keyword = (
        keyword
        or {"bad-json": "not valid JSON", "missing": "cannot read", "not-object": "not a JSON object"}[case]
    )
    assert keyword in lines[0]
    assert _files(out) == []


def test_instance_colours_are_case_insensitive_and_must_be_unique() -> None:
    legend = {"#0A0B0C": "car # 1", "#0d0e0f": "car # 2"}
    instances = [
        {"_id": "a", "color": "#0a0b0C", "value": "car # 1", "class_id": "C"},
        {"_id": "b", "color": "#0A0B0C", "value": "car # 9", "class_id": "C"},  # same colour again
        {"_id": "c", "color": "#0d0e0f9", "value": "car # 2", "class_id": "C"},  # 7 digits
    ]
    labelmap = build_labelmap(legend, instances)
    assert labelmap.invalid_legend_keys == ("#0A0B0C", "#0d0e0f9")
    assert [(s.color, s.instance_id, s.label_id) for s in labelmap.segments] == [
        ("#0a0b0c", "a", 1),
        ("#0d0e0f", None, 1),
    ]
