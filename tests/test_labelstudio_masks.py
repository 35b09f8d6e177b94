"""Label Studio's pure parts: brush RLE against the reference algorithm and real editor output, geometry."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from processors.errors import Permanent
from processors.vendors.labelstudio.brush import BrushError, decode_alpha, decode_values
from processors.vendors.labelstudio.labels import build_classes, config_labels
from processors.vendors.labelstudio.regions import draw, parse_result, rectangle_corners

DATA = Path(__file__).parent / "conformance" / "payloads" / "labelstudio"
EXPECTED = json.loads((DATA / "brush_rle_expected.json").read_text())
VECTORS = {v["name"]: v for v in EXPECTED["vectors"]}


def load(name: str) -> Any:
    raw = (DATA / name).read_bytes()
    return json.loads(gzip.decompress(raw) if name.endswith(".gz") else raw)


def reference_decode(rle: list[int]) -> np.ndarray:
    """label-studio-sdk ``decode_rle``, transcribed: a bit string read field by field (slow, obvious).

    One difference on purpose: values are kept in uint32, not uint8, so word sizes above 8 compare.
    """
    bits = "".join(f"{byte:08b}" for byte in rle)
    pos = 0

    def read(n: int) -> int:
        nonlocal pos
        out = bits[pos : pos + n]
        pos += n
        return int(out, 2)

    num = read(32)
    word = read(5) + 1
    sizes = [read(4) + 1 for _ in range(4)]
    out = np.zeros(num, dtype=np.uint32)
    i = 0
    while i < num:
        x = read(1)
        j = i + 1 + read(sizes[read(2)])
        if x:
            out[i:j] = read(word)
            i = j
        else:
            while i < j:
                out[i] = read(word)
                i += 1
    return out


# --- codec vectors -----------------------------------------------------------------------------


def test_sdk_test_vector_decodes_to_its_published_values() -> None:
    vector = VECTORS["sdk_test_rle_encoding"]
    assert decode_values(bytes(vector["rle"]), max_values=100).tolist() == vector["decoded"]


@pytest.mark.parametrize("name", ["thing_rle_pack_3bit_default_sizes", "thing_rle_pack_3bit_custom_sizes"])
def test_word_size_and_run_sizes_come_from_the_header(name: str) -> None:
    expected = np.zeros(1024, dtype=np.uint32)
    written = [1] * 5 + [2] * 4 + [3] * 3 + [4, 4, 5, 4, 4] + [3] * 3 + [2] * 4 + [1] * 5
    expected[512 : 512 + len(written)] = written
    decoded = decode_values(bytes(VECTORS[name]["rle"]), max_values=1024)
    assert (decoded == expected).all()
    assert (decoded == reference_decode(VECTORS[name]["rle"])).all()


def test_a_whole_trailing_padding_byte_is_ignored() -> None:
    rle = bytes(VECTORS["sdk_encoder_full_trailing_byte"]["rle"])
    assert not decode_alpha(rle, 10, 10).any()
    assert not decode_alpha(rle + b"\xff\xff\xff", 10, 10).any()  # whatever follows num values


def test_sdk_mask2rle_square_decodes_to_its_pixels() -> None:
    alpha = decode_alpha(bytes(VECTORS["sdk_mask2rle_10x10_square"]["rle"]), 10, 10)
    expected = np.zeros((10, 10), dtype=np.uint8)
    expected[2:5, 3:6] = 255
    assert (alpha == expected).all()


def stats(alpha: np.ndarray) -> tuple[int, list[int], int]:
    ys, xs = np.nonzero(alpha)
    bbox = [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]
    return int((alpha > 0).sum()), bbox, len(np.unique(alpha))


def test_real_editor_brush_with_anti_aliased_alpha() -> None:
    [brush, _labels] = load("brush_rle_sample_image_tools.json")["result"]
    expected = VECTORS["frontend_image_tools_brush"]["expected"]
    alpha = decode_alpha(bytes(brush["value"]["rle"]), brush["original_width"], brush["original_height"])
    assert stats(alpha) == (
        expected["alpha_nonzero_pixels"],
        expected["bbox_xyxy_inclusive"],
        expected["alpha_distinct_values"],
    )
    assert (alpha == reference_decode(brush["value"]["rle"])[3::4].reshape(alpha.shape)).all()


def test_min_alpha_drops_the_anti_aliased_edge() -> None:
    [brush, labels] = load("brush_rle_sample_image_tools.json")["result"]
    parsed = parse_result([brush, labels])
    [region] = parsed.regions
    alpha = decode_alpha(bytes(brush["value"]["rle"]), brush["original_width"], brush["original_height"])
    assert draw(region).sum() == (alpha > 0).sum() == 59413
    half = draw(region, min_alpha=128)
    assert half.sum() == (alpha >= 128).sum() and 0 < half.sum() < 59413


def test_real_editor_rle_with_thousands_of_multi_value_literal_chunks() -> None:
    result = load("brush_rle_sample_multiliteral.json.gz")["result"]
    expected = VECTORS["frontend_image_segmentation_multiliteral"]
    alpha = decode_alpha(bytes(result["value"]["rle"]), expected["W"], expected["H"])
    assert stats(alpha) == (
        expected["expected"]["alpha_nonzero_pixels"],
        expected["expected"]["bbox_xyxy_inclusive"],
        expected["expected"]["alpha_distinct_values"],
    )


def encode(header: tuple[int, int, list[int]], chunks: str) -> bytes:
    num, word, sizes = header
    bits = f"{num:032b}{word - 1:05b}" + "".join(f"{s - 1:04b}" for s in sizes) + chunks
    bits += "0" * (-len(bits) % 8)
    return int(bits, 2).to_bytes(len(bits) // 8, "big")


@pytest.mark.parametrize(
    ("rle", "reason"),
    [
        (b"\x00\x00\x01", "shorter than its 7-byte header"),
        (encode((400, 8, [3, 4, 8, 16]), "1" + "00" + "111"), "ends inside a chunk"),  # value missing
        (encode((400, 8, [3, 4, 8, 16]), "0" + "10" + "00000011" + "0" * 8), "ends inside a literal chunk"),
        (encode((400, 8, [3, 4, 8, 16]), "1" + "11" + f"{999:016b}" + "0" * 8), "passes the declared end"),
        (encode((4 * 99, 8, [3, 4, 8, 16]), ""), "declares 396 values; a 10x10 RGBA canvas has 400"),
        (encode((2**32 - 1, 8, [3, 4, 8, 16]), ""), "declares 4294967295 values"),
    ],
)
def test_malformed_rle_is_a_brush_error_naming_the_problem(rle: bytes, reason: str) -> None:
    with pytest.raises(BrushError, match=reason):
        decode_alpha(rle, 10, 10)


def test_a_hostile_header_cannot_make_the_decoder_allocate() -> None:
    with pytest.raises(BrushError, match="over the limit"):
        decode_values(encode((2**32 - 1, 8, [3, 4, 8, 16]), ""), max_values=1000)


# --- geometry ----------------------------------------------------------------------------------


def test_rotated_rectangle_corners_follow_the_sdk_formula() -> None:
    task = load("task_obb.sdk_test.json")["first_task"]
    result = next(r for r in task["annotations"][0]["result"] if r["id"] == "veUGPaahTw")
    corners = rectangle_corners(result["value"], 597, 768)
    expected = [[62.906, 611.003], [159.679, 551.311], [192.468, 604.469], [95.696, 664.161]]
    assert np.allclose(corners, expected, atol=1e-3)


def inside(x: float, y: float, pts: list[tuple[float, float]]) -> bool:
    result = False
    j = len(pts) - 1
    for i in range(len(pts)):
        xi, yi = pts[i]
        xj, yj = pts[j]
        if (yi > y) != (yj > y) and x < (xj - xi) * (y - yi) / (yj - yi) + xi:
            result = not result
        j = i
    return result


def test_polygon_in_percent_fills_pixel_centres_inside() -> None:
    task = load("task_polygons.sdk_test.json")["first_task"]
    parsed = parse_result(task["annotations"][0]["result"])
    [region] = parsed.regions
    assert (region.label, region.kind, region.width, region.height) == ("Airplane", "polygon", 640, 426)
    mask = draw(region)
    pts = [(x * 640 / 100, y * 426 / 100) for x, y in region.value["points"]]
    x0, x1 = int(min(p[0] for p in pts)) - 1, int(max(p[0] for p in pts)) + 2
    y0, y1 = int(min(p[1] for p in pts)) - 1, int(max(p[1] for p in pts)) + 2
    expected = np.zeros_like(mask)
    for row in range(y0, y1):
        for col in range(x0, x1):
            expected[row, col] = inside(col + 0.5, row + 0.5, pts)
    assert mask.sum() > 1000 and (mask == expected).all()


def test_results_sharing_an_id_are_one_region_and_text_kinds_are_skipped() -> None:
    result = load("brush_rle_sample_magicwand.json")["result"]
    extra = [
        {"id": "k1", "type": "keypointlabels", "to_name": "image_1", "value": {"x": 1, "y": 1}},
        {"id": "c1", "type": "choices", "to_name": "image_1", "value": {"choices": ["a"]}},
    ]
    parsed = parse_result(result + extra)
    assert [(r.key, r.label, r.kind) for r in parsed.regions] == [
        ("PNCeI7jyxe", "Cloud", "brush"),
        ("zhJYp7Ak94", "Cloud Shadow", "brush"),
    ]
    assert parsed.sizes == {"image_1": (3000, 2860)}
    assert parsed.skipped == {"choices": 1, "keypointlabels": 1}


def test_a_brush_without_an_image_size_anywhere_is_permanent() -> None:
    result = load("brush_rle_sample_multiliteral.json.gz")["result"]
    with pytest.raises(Permanent, match="original_width/original_height"):
        parse_result([result])


def test_an_ellipse_is_drawn_about_its_centre() -> None:
    value = {"x": 50, "y": 50, "radiusX": 20, "radiusY": 10, "rotation": 90, "ellipselabels": ["E"]}
    item = {"id": "e", "type": "ellipselabels", "to_name": "i", "original_width": 100,
            "original_height": 100, "value": value}  # fmt: skip
    mask = draw(parse_result([item]).regions[0])
    ys, xs = np.nonzero(mask)
    # Rotated a quarter turn: the long axis is vertical now.
    assert (xs.max() - xs.min(), ys.max() - ys.min()) == (19, 39)
    assert mask[50, 50] and math.isclose(mask.sum(), math.pi * 20 * 10, rel_tol=0.03)


def test_disagreeing_sizes_and_bad_numbers_are_permanent() -> None:
    a = {"id": "a", "type": "rectanglelabels", "to_name": "i", "original_width": 10, "original_height": 10,
         "value": {"x": 0, "y": 0, "width": 10, "height": 10, "rectanglelabels": ["A"]}}  # fmt: skip
    with pytest.raises(Permanent, match="disagree"):
        parse_result([a, {**a, "id": "b", "original_width": 11}])
    with pytest.raises(Permanent, match="not a finite number"):
        draw(parse_result([{**a, "value": {**a["value"], "x": "NaN"}}]).regions[0])


# --- labels ------------------------------------------------------------------------------------


def test_config_labels_give_stable_ids_and_pillow_colours() -> None:
    configured, problems = config_labels((DATA / "label_config_image_tools.frontend.xml").read_text())
    assert configured == [("Planet", "green"), ("Moonwalker", "blue")] and problems == []
    classes, invalid = build_classes([*configured, ("X", "not-a-colour")], ["Zed", "Planet"])
    assert [(c.id, c.name, c.color) for c in classes[:3]] == [
        (0, "unlabeled", "#000000"),
        (1, "Planet", "#008000"),
        (2, "Moonwalker", "#0000ff"),
    ]
    assert [c.name for c in classes[3:]] == ["X", "Zed"] and invalid == ["not-a-colour"]


def test_a_broken_config_gives_no_labels_and_says_why() -> None:
    assert config_labels("<View><Labels")[0] == []
    assert "not XML" in config_labels("<View><Labels")[1][0]
    assert config_labels(None) == ([], ["the project has no label_config"])
