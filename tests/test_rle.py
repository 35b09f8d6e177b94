"""COCO RLE: our packer must produce pycocotools' exact strings, and our decoder must invert them."""

from __future__ import annotations

import numpy as np
import pycocotools.mask as coco
import pytest

from processors.masks.rle import decode_counts, decode_mask, encode_mask, label_runs


def _coco(mask: np.ndarray) -> dict[str, object]:
    rle: dict[str, object] = coco.encode(np.asfortranarray(mask.astype(np.uint8)))
    return rle


@pytest.mark.parametrize("seed", range(40))
def test_label_runs_match_pycocotools_per_label(seed: int) -> None:
    rng = np.random.default_rng(seed)
    height, width = (int(v) for v in rng.integers(1, 30, 2))
    labels = rng.integers(0, int(rng.integers(2, 7)), (height, width)).astype(np.uint16)
    if seed % 4 == 0:  # long vertical runs that wrap from one column into the next
        labels = np.repeat(labels[:, :1], width, axis=1)
    runs = label_runs(labels)
    assert runs.labels.tolist() == sorted(set(labels.ravel().tolist()) - {0})
    for position, label in enumerate(runs.labels):
        mask = labels == label
        reference = _coco(mask)
        assert runs.counts[position] == reference["counts"].decode()  # type: ignore[attr-defined]
        assert runs.bboxes[position].tolist() == coco.toBbox(reference).tolist()
        assert runs.areas[position] == int(coco.area(reference)) == int(mask.sum())
        assert np.array_equal(decode_mask(runs.counts[position], height, width), mask)


def test_large_counts_and_negative_deltas_round_trip() -> None:
    mask = np.zeros((2000, 3000), dtype=bool)
    mask[3:1999, 5:2990] = True
    mask[0, 0] = True
    mask[1500, 2995] = True
    text = encode_mask(mask)
    assert text == _coco(mask)["counts"].decode()  # type: ignore[attr-defined]
    counts = decode_counts(text)
    assert sum(counts) == mask.size
    assert sum(counts[1::2]) == int(mask.sum())


def test_empty_and_full_masks() -> None:
    for mask in (np.zeros((4, 3), dtype=bool), np.ones((4, 3), dtype=bool)):
        assert encode_mask(mask) == _coco(mask)["counts"].decode()  # type: ignore[attr-defined]
        assert np.array_equal(decode_mask(encode_mask(mask), 4, 3), mask)


def test_decode_mask_rejects_wrong_size() -> None:
    with pytest.raises(ValueError):
        decode_mask(encode_mask(np.ones((4, 3), dtype=bool)), 5, 3)
