"""`labelhook export` against the real importers: Datumaro (CVAT's), pycocotools and panopticapi's encoding.

Jobs are made the way the worker makes them (`process_segmentation` through a `JobWriter`, source
image streamed in by `store_image`, manifest last), for two vendors that share the class ``car``.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pycocotools.mask as coco_mask
import pytest
from datumaro.components.annotation import AnnotationType
from datumaro.components.dataset import Dataset
from PIL import Image

from processors.export import export_dataset
from processors.masks.segmentation import process_segmentation
from processors.source_images import SourceImage, store_image
from processors.store import JobWriter, Store
from processors.store.local import LocalStore
from tests.support import cli_env, run_cli

pytestmark = [
    # pycocotools' Cython decode and Datumaro's dependencies warn on numpy 2 / pandas; not ours.
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]

MAX = 10_000_000

# Seed 003's instance-aware legend (Playment), attributes as Playment sends them: a list.
PLAYMENT_RESULT: dict[str, Any] = {
    "legend": {
        "#00c537": "car # 1",
        "#fcbe92": "car # 2",
        "#01d9fc": "pedestrian # 1",
        "#fda7df": "vegetation",
    },
    "instances": [
        {"_id": "8037614b", "color": "#00c537", "value": "car # 1", "class_id": "f044", "attributes": []},
        {
            "_id": "bc3a8010",
            "color": "#fcbe92",
            "value": "car # 2",
            "class_id": "f044",
            "attributes": [{"key": "occluded", "value": True}],
        },
        {"_id": "0037614b", "color": "#01d9fc", "value": "pedestrian # 1", "class_id": "0044"},
        {"_id": "7c3a8010", "color": "#fda7df", "value": "vegetation", "class_id": "4443"},
    ],
}
# A semantic-only legend from another vendor: "car" again (same class, another colour), and "sky".
SUPERAI_RESULT: dict[str, Any] = {"legend": {"#ff0000": "car", "#00c537": "sky"}, "instances": None}


def _rgb(colour: str) -> list[int]:
    return [int(colour[i : i + 2], 16) for i in (1, 3, 5)] + [255]


def _paint(height: int, width: int, regions: list[tuple[slice, slice, str]]) -> bytes:
    rgba = np.zeros((height, width, 4), dtype=np.uint8)
    for rows, cols, colour in regions:
        rgba[rows, cols] = _rgb(colour)
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, format="PNG")
    return buffer.getvalue()


def _photo(height: int, width: int, seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def make_job(
    store: Store,
    vendor: str,
    project: str,
    job: str,
    result: dict[str, Any],
    frames: list[tuple[int, bytes]],
    *,
    size: tuple[int, int],
    with_images: bool = True,
) -> str:
    """Write one finished job as the worker does; returns its prefix."""
    out = JobWriter(store, f"{vendor}/{project}/{job}")
    out.write_json("result.json", result)
    images: dict[int, SourceImage] = {}
    for index, _ in frames:
        if with_images:
            photo = _photo(size[0], size[1], seed=hash((vendor, job, index)) & 0xFFFF)
            images[index] = store_image(
                index, lambda p=photo: contextlib.nullcontext([p[:100], p[100:]]), out
            )
    process_segmentation(result, frames, out.write, max_pixels=MAX, images=images)
    out.finish({"vendor": vendor, "source": vendor, "project": project, "job": job})
    return out.prefix


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    """Three finished jobs: a 2-frame Playment video, a Playment image, a super.AI image."""
    store = LocalStore(tmp_path / "store")
    make_job(
        store,
        "playment",
        "p1",
        "video-1",
        PLAYMENT_RESULT,
        [
            (
                0,
                _paint(
                    24, 32, [(slice(0, 8), slice(0, 8), "#00c537"), (slice(10, 20), slice(0, 32), "#fda7df")]
                ),
            ),
            (
                3,
                _paint(
                    24, 32, [(slice(2, 9), slice(10, 30), "#fcbe92"), (slice(0, 4), slice(0, 4), "#01d9fc")]
                ),
            ),
        ],
        size=(24, 32),
    )
    make_job(
        store,
        "playment",
        "p1",
        "image-2",
        PLAYMENT_RESULT,
        [(0, _paint(24, 32, [(slice(5, 15), slice(5, 15), "#00c537")]))],
        size=(24, 32),
    )
    make_job(
        store,
        "superai",
        "app",
        "job-a",
        SUPERAI_RESULT,
        [
            (
                0,
                _paint(
                    16, 20, [(slice(0, 6), slice(0, 20), "#00c537"), (slice(8, 16), slice(2, 9), "#ff0000")]
                ),
            )
        ],
        size=(16, 20),
    )
    # Not a segmentation job: reported as skipped, not exported.
    other = JobWriter(store, "acme/default/plain")
    other.write("callback.json", b"{}")
    other.finish({"vendor": "standard", "source": "acme", "project": "default", "job": "plain"})
    # Internal records are not jobs.
    store.put("_jobs/acme/plain.json", b"{}")
    return store


def _job_truth(store: Store) -> dict[str, dict[str, Any]]:
    """item → {"instances": array, "annotations": [...], "categories": {id: name}} from the job outputs."""
    truth: dict[str, dict[str, Any]] = {}
    for key in store.list(""):
        if not key.endswith("/annotations.json"):
            continue
        prefix = key[: -len("/annotations.json")]
        document = json.loads(store.get(key))
        names = {c["id"]: c["name"] for c in document["categories"]}
        for image in document["images"]:
            frame = image["frame_index"]
            instances = np.asarray(Image.open(io.BytesIO(store.get(f"{prefix}/masks/{frame}/instances.png"))))
            anns = [a for a in document["annotations"] if a["image_id"] == image["id"]]
            truth[f"{prefix}/{frame}"] = {"instances": instances, "annotations": anns, "names": names}
    return truth


def _label_names(dataset: Dataset) -> list[str]:
    return [label.name for label in dataset.categories()[AnnotationType.label]]


def test_coco_export_imports_in_datumaro_and_pycocotools_with_equal_masks(
    store: LocalStore, tmp_path: Path
) -> None:
    out = LocalStore(tmp_path / "dataset")
    report = export_dataset(store, out, "coco")
    assert sorted(report.added) == ["playment/p1/image-2", "playment/p1/video-1", "superai/app/job-a"]
    assert report.skipped == {"acme/default/plain": "no mask outputs (not a segmentation job)"}
    truth = _job_truth(store)

    dataset = Dataset.import_from(str(tmp_path / "dataset"), "coco_instances")
    # "car" from both vendors is one category; names are unique.
    assert sorted(_label_names(dataset)) == ["car", "pedestrian", "sky", "vegetation"]
    assert {item.id for item in dataset} == set(truth)
    assert len(dataset) == 4
    labels = _label_names(dataset)
    total = 0
    for item in dataset:
        expected = truth[item.id]
        assert item.subset == "default"
        assert item.media.has_data, f"{item.id}: source image missing"
        assert item.media.data.shape[:2] == expected["instances"].shape
        # Datumaro reads each COCO annotation as a mask plus its box (same group).
        masks = [a for a in item.annotations if a.type == AnnotationType.mask]
        boxes = sorted(
            [round(v) for v in a.get_bbox()] for a in item.annotations if a.type == AnnotationType.bbox
        )
        assert len(masks) == len(expected["annotations"])
        assert boxes == sorted(a["bbox"] for a in expected["annotations"])
        by_number = {a["instance_number"]: a for a in expected["annotations"]}
        for annotation in masks:
            matches = [
                n
                for n, a in by_number.items()
                if np.array_equal(annotation.image, expected["instances"] == n)
            ]
            assert len(matches) == 1, f"{item.id}: a mask equals no job instance"
            assert labels[annotation.label] == expected["names"][by_number[matches[0]]["category_id"]]
            total += 1
    assert total == report.annotations == sum(len(t["annotations"]) for t in truth.values())

    from pycocotools.coco import COCO

    index = COCO(str(tmp_path / "dataset/annotations/instances_default.json"))
    for ann in index.loadAnns(index.getAnnIds()):
        image = index.loadImgs(ann["image_id"])[0]
        item = truth[image["file_name"].rsplit(".", 1)[0]]
        decoded = index.annToMask(ann).astype(bool)
        assert any(
            np.array_equal(decoded, item["instances"] == a["instance_number"]) for a in item["annotations"]
        )
        assert (tmp_path / "dataset/images/default" / image["file_name"]).is_file()
    # The labelmap of the dataset is written too, with the same ids.
    labelmap = json.loads((tmp_path / "dataset/labelmap.json").read_text())
    assert [e["name"] for e in labelmap] == [
        "unlabeled",
        *[c["name"] for c in index.loadCats(index.getCatIds())],
    ]


def test_panoptic_export_decodes_back_to_the_same_segments(store: LocalStore, tmp_path: Path) -> None:
    out = LocalStore(tmp_path / "dataset")
    report = export_dataset(store, out, "coco-panoptic")
    truth = _job_truth(store)
    document = json.loads((tmp_path / "dataset/annotations/panoptic_default.json").read_text())
    things = {c["name"]: c["isthing"] for c in document["categories"]}
    # Playment lists instances of car, pedestrian and vegetation; super.AI's sky is stuff.
    assert things == {"car": 1, "pedestrian": 1, "vegetation": 1, "sky": 0}
    images = {image["id"]: image for image in document["images"]}
    for annotation in document["annotations"]:
        item = images[annotation["image_id"]]["file_name"].rsplit(".", 1)[0]
        rgb = np.asarray(
            Image.open(tmp_path / "dataset/annotations/panoptic_default" / annotation["file_name"])
        )
        rgb = rgb.astype(np.uint32)
        ids = rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]  # panopticapi rgb2id
        for segment in annotation["segments_info"]:
            assert np.array_equal(ids == segment["id"], truth[item]["instances"] == segment["id"])
            assert segment["area"] == int((ids == segment["id"]).sum())

    dataset = Dataset.import_from(str(tmp_path / "dataset"), "coco_panoptic")
    assert {item.id for item in dataset} == set(truth)
    masks = 0
    for item in dataset:
        assert item.media.has_data
        for annotation in item.annotations:
            assert np.array_equal(annotation.image, truth[item.id]["instances"] == annotation.id)
            masks += 1
    assert masks == report.annotations == sum(len(t["annotations"]) for t in truth.values())


def test_voc_segmentation_mask_export_imports_in_datumaro(store: LocalStore, tmp_path: Path) -> None:
    out = LocalStore(tmp_path / "dataset")
    report = export_dataset(store, out, "voc")
    truth = _job_truth(store)
    root = tmp_path / "dataset"
    assert (root / "ImageSets/Segmentation/default.txt").read_text().split() == sorted(truth)
    assert (root / "labelmap.txt").read_text().splitlines()[:2] == [
        "# label:color_rgb:parts:actions",
        "background:0,0,0::",
    ]

    dataset = Dataset.import_from(str(root), "voc_segmentation")
    labels = _label_names(dataset)
    assert sorted(labels) == ["background", "car", "pedestrian", "sky", "vegetation"]
    assert {item.id for item in dataset} == set(truth)
    total = 0
    for item in dataset:
        expected = truth[item.id]
        assert item.media.has_data
        assert len(item.annotations) == len(expected["annotations"])
        for annotation in item.annotations:
            matches = [
                a
                for a in expected["annotations"]
                if np.array_equal(annotation.image, expected["instances"] == a["instance_number"])
            ]
            assert len(matches) == 1
            assert labels[annotation.label] == expected["names"][matches[0]["category_id"]]
            total += 1
    assert total == report.annotations


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("format_name", ["coco", "coco-panoptic", "voc"])
def test_export_is_idempotent_and_incremental(store: LocalStore, tmp_path: Path, format_name: str) -> None:
    out = LocalStore(tmp_path / "dataset")
    export_dataset(store, out, format_name)
    first = _snapshot(tmp_path / "dataset")
    again = export_dataset(store, out, format_name)
    assert again.added == [] and again.updated == [] and again.unchanged == 3
    assert _snapshot(tmp_path / "dataset") == first  # byte for byte

    make_job(
        store,
        "superai",
        "app",
        "job-b",
        {"legend": {"#123456": "boat", "#ff0000": "car"}},
        [(0, _paint(16, 20, [(slice(0, 5), slice(0, 5), "#123456")]))],
        size=(16, 20),
    )
    more = export_dataset(store, out, format_name)
    assert more.added == ["superai/app/job-b"] and more.unchanged == 3
    after = _snapshot(tmp_path / "dataset")
    # Everything the first run wrote per item is untouched; only index files and the record change.
    for name, data in first.items():
        if name.startswith(("images/", "JPEGImages/", "Segmentation", "annotations/panoptic_default/")):
            assert after[name] == data, name
    labelmap = json.loads(after["labelmap.json"])
    assert [e["name"] for e in labelmap] == [e["name"] for e in json.loads(first["labelmap.json"])] + ["boat"]


def test_reprocessed_job_is_exported_again(store: LocalStore, tmp_path: Path) -> None:
    out = LocalStore(tmp_path / "dataset")
    export_dataset(store, out, "coco")
    make_job(
        store,
        "superai",
        "app",
        "job-a",
        SUPERAI_RESULT,
        [(0, _paint(16, 20, [(slice(0, 16), slice(0, 20), "#ff0000")]))],
        size=(16, 20),
    )
    report = export_dataset(store, out, "coco")
    assert report.updated == ["superai/app/job-a"] and report.added == []
    document = json.loads((tmp_path / "dataset/annotations/instances_default.json").read_text())
    image = next(i for i in document["images"] if i["file_name"].startswith("superai/app/job-a/"))
    areas = [a["area"] for a in document["annotations"] if a["image_id"] == image["id"]]
    assert areas == [16 * 20]


def test_filters_by_source_and_project(store: LocalStore, tmp_path: Path) -> None:
    report = export_dataset(store, LocalStore(tmp_path / "a"), "coco", sources=["superai"])
    assert report.added == ["superai/app/job-a"]
    report = export_dataset(store, LocalStore(tmp_path / "b"), "coco", projects=["p1"])
    assert report.added == ["playment/p1/image-2", "playment/p1/video-1"]


def test_per_job_annotations_import_in_datumaro(store: LocalStore, tmp_path: Path) -> None:
    """The job's own annotations.json: attributes are objects (Playment sent lists), file_name the image."""
    job = tmp_path / "store/playment/p1/video-1"
    document = json.loads((job / "annotations.json").read_text())
    assert all(isinstance(a["attributes"], dict) for a in document["annotations"])
    assert {"occluded": True} in [a["attributes"] for a in document["annotations"]]
    assert [i["file_name"] for i in document["images"]] == ["images/0.jpg", "images/3.jpg"]
    assert all(c["supercategory"] == "" for c in document["categories"])
    assert document["info"]["contributor"] == "labelhook"
    assert document["warnings"]["images_not_fetched"] == {}
    # Datumaro only reads annotations/<task>_<subset>.json with file names relative to images/: give it
    # that view of the job folder (file_name "images/0.jpg" then resolves to the job's own image).
    layout = tmp_path / "job-as-coco"
    (layout / "annotations").mkdir(parents=True)
    shutil.copytree(job / "images", layout / "images/images")  # Datumaro refuses symlinks out of images/
    (layout / "annotations/instances_default.json").write_bytes((job / "annotations.json").read_bytes())
    dataset = Dataset.import_from(str(layout), "coco_instances")
    assert len(dataset) == 2
    assert all(item.media.has_data for item in dataset)
    masks = [a for item in dataset for a in item.annotations if a.type == AnnotationType.mask]
    assert len(masks) == len(document["annotations"])
    assert {"occluded": True, "is_crowd": False} in [m.attributes for m in masks]
    for ann in document["annotations"]:
        pixels = coco_mask.decode(
            {"size": ann["segmentation"]["size"], "counts": ann["segmentation"]["counts"].encode()}
        )
        frame = next(i["frame_index"] for i in document["images"] if i["id"] == ann["image_id"])
        instances = np.asarray(Image.open(job / f"masks/{frame}/instances.png"))
        assert np.array_equal(pixels.astype(bool), instances == ann["instance_number"])


def test_job_without_images_is_exported_and_named(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    make_job(
        store,
        "cvat",
        "7",
        "12",
        SUPERAI_RESULT,
        [(0, _paint(8, 8, [(slice(0, 4), slice(0, 4), "#ff0000")]))],
        size=(8, 8),
        with_images=False,
    )
    document = json.loads(store.get("cvat/7/12/annotations.json"))
    assert document["images"][0]["file_name"] == "images/0"
    assert document["warnings"]["images_not_fetched"] == {"0": "no source image"}
    export_dataset(store, LocalStore(tmp_path / "dataset"), "coco")
    dataset = Dataset.import_from(str(tmp_path / "dataset"), "coco_instances")
    item = next(iter(dataset))
    assert [i.id for i in dataset] == ["cvat/7/12/0"]
    assert not item.media.has_data and item.media.size == (8, 8)  # the size still comes from the JSON
    assert [a.type for a in item.annotations] == [AnnotationType.mask, AnnotationType.bbox]


def test_export_to_s3_and_from_s3(moto_endpoint: str, s3_client: Any, bucket: str, tmp_path: Path) -> None:
    from processors.store.s3 import S3Store

    source = S3Store(bucket, "jobs", client=s3_client)
    make_job(
        source,
        "superai",
        "app",
        "job-a",
        SUPERAI_RESULT,
        [(0, _paint(16, 20, [(slice(0, 6), slice(0, 20), "#00c537")]))],
        size=(16, 20),
    )
    out = S3Store(bucket, "datasets/coco", client=s3_client)
    report = export_dataset(source, out, "coco")
    assert report.added == ["superai/app/job-a"]
    keys = out.list("")
    assert "annotations/instances_default.json" in keys
    assert "images/default/superai/app/job-a/0.jpg" in keys
    document = json.loads(out.get("annotations/instances_default.json"))
    assert [c["name"] for c in document["categories"]] == ["car", "sky"]
    assert len(document["annotations"]) == 1
    first = out.get("annotations/instances_default.json")
    again = export_dataset(source, out, "coco")
    assert again.unchanged == 1 and out.get("annotations/instances_default.json") == first


def test_cli_offers_every_format() -> None:
    from processors.export import FORMATS
    from receiver.cli import build_parser

    args = build_parser().parse_args(["export", "--format", "voc", "--out", "x"])
    assert args.format == "voc"
    for name in FORMATS:
        assert build_parser().parse_args(["export", "--format", name, "--out", "x"]).format == name


def test_cli_export(store: LocalStore, tmp_path: Path) -> None:
    env = cli_env(tmp_path, LABELHOOK_STORE=f"file://{tmp_path}/store")
    done = run_cli(
        "export", "--format", "coco", "--out", str(tmp_path / "ds"), "--json", env=env, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["added"] == 3 and summary["items"] == 4 and summary["categories"] == 4
    assert "export coco: 4/4" in done.stderr  # one progress line per job when not on a terminal
    bad = run_cli("export", "--format", "coco", "--out", "ftp://x/y", env=env, cwd=tmp_path)
    assert bad.returncode == 2 and "--out must be" in bad.stderr
    unknown = run_cli("export", "--format", "tiff", "--out", str(tmp_path / "x"), env=env, cwd=tmp_path)
    assert unknown.returncode == 2
    # A source filter names the manifests' source, configured here or not ("superai" is not).
    only = run_cli(
        "export",
        "--format",
        "voc",
        "--out",
        str(tmp_path / "v"),
        "--source",
        "superai",
        "--json",
        env=env,
        cwd=tmp_path,
    )
    assert only.returncode == 0, only.stderr
    assert json.loads(only.stdout)["items"] == 1


def test_label_png_reader_and_panoptic_rewrap_agree_with_pillow() -> None:
    from processors.export.labelpng import encode_rgb, grey16_to_panoptic_rgb, read_label_png
    from processors.export.panoptic import id_to_rgb
    from processors.masks.png import encode_grey16, encode_palette

    rng = np.random.default_rng(3)
    ids = rng.integers(0, 700, (37, 53)).astype(np.uint16)
    ids[5:20, 10:40] = 513  # runs, and ids over 255 so that both bytes matter
    grey16 = encode_grey16(ids)
    assert np.array_equal(read_label_png(grey16), np.asarray(Image.open(io.BytesIO(grey16))))
    labels = (ids % 7).astype(np.uint8)
    palette = encode_palette(labels, [(i, i, i) for i in range(7)])
    assert np.array_equal(read_label_png(palette), labels)
    # A PNG with Pillow's adaptive filters (not labelhook's layout) goes through Pillow, same values.
    buffer = io.BytesIO()
    Image.fromarray(labels, "L").save(buffer, format="PNG", optimize=True)
    assert np.array_equal(read_label_png(buffer.getvalue()), labels)
    # The lane re-wrap gives the panopticapi RGB of the ids, pixel for pixel.
    rewrapped = grey16_to_panoptic_rgb(grey16)
    assert rewrapped is not None
    rgb = np.asarray(Image.open(io.BytesIO(rewrapped)))
    assert np.array_equal(rgb, id_to_rgb(ids))
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(encode_rgb(id_to_rgb(ids))))), rgb)
    assert grey16_to_panoptic_rgb(palette) is None


def test_voc_fast_paths_keep_the_pixels() -> None:
    from processors.export.labelpng import grey16_as_palette, remapped_palette, with_palette
    from processors.masks.png import encode_grey16, encode_palette

    rng = np.random.default_rng(5)
    ids = rng.integers(0, 200, (21, 34)).astype(np.uint16)
    repacked = grey16_as_palette(encode_grey16(ids), [(i, i, i) for i in range(256)])
    assert repacked is not None
    image = Image.open(io.BytesIO(repacked))
    assert image.mode == "P" and np.array_equal(np.asarray(image), ids)
    ids[3, 4] = 256  # a value a VOC mask cannot hold: no fast path
    assert grey16_as_palette(encode_grey16(ids), [(0, 0, 0)]) is None
    labels = (ids % 5).astype(np.uint8)
    recoloured = with_palette(
        encode_palette(labels, [(0, 0, 0)] * 5), [(9, 9, 9), (1, 2, 3)] + [(0, 0, 0)] * 3
    )
    assert recoloured is not None
    image = Image.open(io.BytesIO(recoloured))
    assert np.array_equal(np.asarray(image), labels) and image.getpalette()[3:6] == [1, 2, 3]
    # Job label ids that are not the dataset's: mapped as bytes, the same as decoding and mapping.
    lut = [0, 4, 3, 1, 2]
    palette = [(0, 0, 0), (10, 0, 0), (20, 0, 0), (30, 0, 0), (40, 0, 0)]
    remapped = remapped_palette(encode_palette(labels, [(0, 0, 0)] * 5), lut, palette)
    assert remapped is not None
    image = Image.open(io.BytesIO(remapped))
    assert np.array_equal(np.asarray(image), np.array(lut, dtype=np.uint8)[labels])
    assert image.getpalette()[:15] == [c for colour in palette for c in colour]
    # Background mapped elsewhere too (the rows' filter bytes must stay 0).
    shifted = remapped_palette(encode_palette(labels, [(0, 0, 0)] * 5), [1, 2, 3, 4, 0], palette)
    assert shifted is not None
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(shifted))), (labels + 1) % 5)
    # An index the table does not map, or a PNG that is not palette: no fast path.
    assert remapped_palette(encode_palette(labels, [(0, 0, 0)] * 5), lut[:4], palette) is None
    assert remapped_palette(encode_grey16(ids), lut, palette) is None


def _with_idat(png: bytes, idat: bytes) -> bytes:
    """``png`` with its image data replaced by ``idat`` (one IDAT chunk, valid CRC)."""
    import struct
    import zlib

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + payload))
        return struct.pack(">I", len(payload)) + kind + payload + crc

    header_end = 8 + 12 + 13  # signature, IHDR
    return png[:header_end] + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_label_pngs_with_a_short_long_or_corrupt_stream_take_no_fast_path() -> None:
    import zlib

    from processors.export.labelpng import (
        LabelPngError,
        grey16_as_palette,
        grey16_to_panoptic_rgb,
        read_label_png,
    )
    from processors.masks.png import encode_grey16

    ids = np.arange(40 * 30, dtype=np.uint16).reshape(30, 40) % 200
    good = encode_grey16(ids)
    rows = np.zeros((30, 81), dtype=np.uint8)  # filter None, all zero: a valid frame's worth
    short = _with_idat(good, zlib.compress(rows[:-1].tobytes()))
    # A stream that inflates far past the frame (a "bomb"): refused, not inflated into memory.
    long = _with_idat(good, zlib.compress(bytes(50_000_000), 9))
    corrupt = _with_idat(good, zlib.compress(rows.tobytes())[:-9] + b"\x00" * 9)
    for bad in (short, long, corrupt):
        assert grey16_to_panoptic_rgb(bad) is None
        assert grey16_as_palette(bad, [(0, 0, 0)]) is None
    with pytest.raises(LabelPngError):
        read_label_png(corrupt)  # Pillow, the fallback, refuses it too
    # Pillow inflates only the frame's worth of the long one and ignores the rest.
    assert read_label_png(long).shape == (30, 40)
    # The fast paths are pure functions of the input: a re-run writes identical bytes.
    assert grey16_to_panoptic_rgb(good) == grey16_to_panoptic_rgb(encode_grey16(ids))
    assert grey16_as_palette(good, [(0, 0, 0)]) == grey16_as_palette(good, [(0, 0, 0)])
