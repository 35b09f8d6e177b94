"""Job-level segmentation output: vendor result + mask frames → masks/, labelmap.json, annotations.json.

Used by the vendor processors (frames streamed from the store, one at a time, so a long video needs
the memory of one frame) and by ``labelhook decode`` (one local PNG, written only if it all worked).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from processors.errors import Permanent
from processors.masks.coco_fields import coco_attributes, coco_categories, coco_info
from processors.masks.decode import (
    MAX_UNKNOWN_COLOURS,
    FrameFacts,
    FrameMasks,
    Labelmap,
    build_labelmap,
    decode_png,
    encode_frame_semantic_png,
    encode_instances_png,
)
from processors.masks.frame_pool import ordered_map
from processors.masks.memory import MemoryBudget, frame_cost
from processors.source_images import SourceImage, image_warnings

Writer = Callable[[str, bytes], None]


@dataclass(frozen=True)
class SegmentationSummary:
    """What a manifest or dashboard shows about one job's masks."""

    frames: int
    annotations: int
    warnings: dict[str, Any]
    class_areas: list[dict[str, Any]]  # [{"id", "name", "area"}] for every labelmap entry, id 0 first

    def as_json(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "annotations": self.annotations,
            "warnings": self.warnings,
            "class_areas": self.class_areas,
        }


@dataclass(frozen=True)
class EncodedFrame:
    """One frame's output PNGs and the facts its annotations need."""

    index: int
    semantic_png: bytes
    instances_png: bytes
    facts: FrameFacts


class FrameError(Permanent):
    """A frame could not be decoded; ``frame_index`` says which."""

    def __init__(self, frame_index: int, reason: str) -> None:
        super().__init__(f"frame {frame_index}: {reason}")
        self.frame_index = frame_index


def process_segmentation(
    result: Any,
    frames: Iterable[tuple[int, bytes]],
    write: Writer,
    *,
    max_pixels: int,
    threads: int = 1,
    budget: MemoryBudget | None = None,
    images: Mapping[int, SourceImage] | None = None,
) -> SegmentationSummary:
    """Decode every frame and write the job's mask outputs through ``write(key, data)``.

    Per frame: ``masks/<frame>/semantic.png`` and ``masks/<frame>/instances.png``, in frame order;
    then ``labelmap.json`` and ``annotations.json``. Up to ``threads`` frames are decoded at once
    (and read ahead from ``frames``), each holding its cost from ``budget`` while decoded; output
    bytes depend only on the inputs, so they are the same for any ``threads`` and on every re-run.
    ``images`` are the frames' source images (`processors.source_images`), named in
    ``images[].file_name``. Raises Permanent on a malformed result object, an undecodable or
    oversized frame, or a repeated frame index.
    """
    labelmap = build_labelmap(*_legend_and_instances(result))

    def checked() -> Iterator[tuple[int, bytes]]:
        seen: set[int] = set()
        for frame_index, data in frames:
            _check_frame_index(frame_index)
            if frame_index in seen:
                raise Permanent(f"frame {frame_index} appears twice")
            seen.add(frame_index)
            yield frame_index, data

    def encode(item: tuple[int, bytes]) -> EncodedFrame:
        frame_index, data = item
        with budget.reserve(frame_cost(data)) if budget is not None else nullcontext():
            try:
                masks = decode_png(data, labelmap, max_pixels=max_pixels)
            except Permanent as exc:
                reason = exc.reason
            else:
                return encode_frame(frame_index, masks, labelmap)
        # Raised outside the handler, so no traceback keeps the failed decode's arrays alive after
        # its memory went back to the budget (another frame may be using it already).
        raise FrameError(frame_index, reason)

    return _write_encoded(labelmap, ordered_map(encode, checked(), threads=threads), write, images=images)


def encode_frame(frame_index: int, masks: FrameMasks, labelmap: Labelmap) -> EncodedFrame:
    """The two PNGs of a decoded frame (the pixel arrays can be dropped afterwards)."""
    return EncodedFrame(
        frame_index,
        encode_frame_semantic_png(masks, labelmap),
        encode_instances_png(masks.instances),
        masks.facts(),
    )


def _check_frame_index(frame_index: Any) -> None:
    if not isinstance(frame_index, int) or isinstance(frame_index, bool) or frame_index < 0:
        raise Permanent(f"frame index {frame_index!r} is not a non-negative integer")


def write_frame_masks(
    labelmap: Labelmap,
    frames: Iterable[tuple[int, FrameMasks]],
    write: Writer,
    *,
    images: Mapping[int, SourceImage] | None = None,
) -> SegmentationSummary:
    """Write the same outputs as `process_segmentation` for frames already turned into label maps.

    For vendors whose annotations are vector shapes rasterised straight into instance maps (CVAT):
    no PNG is decoded, ``labelmap`` is the vendor's own. Same files, order and determinism.
    """

    def encoded() -> Iterator[EncodedFrame]:
        for frame_index, masks in frames:
            _check_frame_index(frame_index)
            yield encode_frame(frame_index, masks, labelmap)

    return _write_encoded(labelmap, encoded(), write, images=images)


def _write_encoded(
    labelmap: Labelmap,
    frames: Iterable[EncodedFrame],
    write: Writer,
    *,
    images: Mapping[int, SourceImage] | None = None,
) -> SegmentationSummary:
    job = _JobAnnotations(labelmap, images or {})
    for frame in frames:
        if frame.index in job.frame_indices:
            raise Permanent(f"frame {frame.index} appears twice")
        write(f"masks/{frame.index}/semantic.png", frame.semantic_png)
        write(f"masks/{frame.index}/instances.png", frame.instances_png)
        job.add(frame.index, frame.facts)
    if not job.frame_indices:
        raise Permanent("segmentation result has no mask frames")
    write("labelmap.json", _dump([entry.as_json() for entry in labelmap.classes]))
    write("annotations.json", _dump(job.coco()))
    return job.summary()


def _legend_and_instances(result: Any) -> tuple[Mapping[str, Any], list[Mapping[str, Any]] | None]:
    if not isinstance(result, Mapping):
        raise Permanent("segmentation result is not a JSON object")
    legend = result.get("legend")
    if not isinstance(legend, Mapping):
        raise Permanent("segmentation result has no legend object")
    instances = result.get("instances")
    if instances is not None and not isinstance(instances, list):
        raise Permanent("segmentation result instances is not a list")
    return legend, instances


class _JobAnnotations:
    """COCO records and warnings accumulated frame by frame (no pixel data kept)."""

    def __init__(self, labelmap: Labelmap, images: Mapping[int, SourceImage]) -> None:
        self.labelmap = labelmap
        self.source_images = images
        self.mask_sizes: dict[int, tuple[int, int]] = {}
        self.frame_indices: set[int] = set()
        self.images: list[dict[str, Any]] = []
        self.annotations: list[dict[str, Any]] = []
        self.unknown_colors: dict[str, int] = {}
        self.seen_segments: set[int] = set()
        self.class_areas = [0] * len(labelmap.classes)

    def add(self, frame_index: int, masks: FrameFacts) -> None:
        self.frame_indices.add(frame_index)
        image_id = len(self.images) + 1
        self.mask_sizes[frame_index] = (masks.width, masks.height)
        source = self.source_images.get(frame_index)
        self.images.append(
            {
                "id": image_id,
                # The photo the vendor labelled (COCO pairs annotations with pixels through this).
                "file_name": source.file_name if source else f"images/{frame_index}",
                "width": masks.width,
                "height": masks.height,
                "frame_index": frame_index,
            }
        )
        labelled = 0
        for found in masks.segments:
            segment = found.segment
            self.annotations.append(
                {
                    "id": len(self.annotations) + 1,
                    "image_id": image_id,
                    "category_id": segment.label_id,
                    "iscrowd": 0,
                    "segmentation": {"size": [masks.height, masks.width], "counts": found.counts},
                    "area": found.area,
                    "bbox": list(found.bbox),
                    "color": segment.color,
                    "instance_id": segment.instance_id,
                    "instance_number": segment.number,
                    "attributes": coco_attributes(segment.attributes),
                }
            )
            self.seen_segments.add(segment.number)
            self.class_areas[segment.label_id] += found.area
            labelled += found.area
        self.class_areas[0] += masks.width * masks.height - labelled
        for colour, count in masks.unknown_colors.items():
            self.unknown_colors[colour] = self.unknown_colors.get(colour, 0) + count
        if len(self.unknown_colors) > MAX_UNKNOWN_COLOURS:
            # Same rule as per frame: the lowest colours, exactly counted (a video of noise stays small).
            self.unknown_colors = dict(sorted(self.unknown_colors.items())[:MAX_UNKNOWN_COLOURS])

    def warnings(self) -> dict[str, Any]:
        return {
            "unknown_colors": dict(sorted(self.unknown_colors.items())),
            "invalid_legend_keys": list(self.labelmap.invalid_legend_keys),
            # For a video, "empty" means absent from every frame: leaving the view is not a problem.
            "empty_instances": [
                s.color for s in self.labelmap.segments if s.number not in self.seen_segments
            ],
            **image_warnings(self.source_images, self.mask_sizes),
        }

    def coco(self) -> dict[str, Any]:
        return {
            "info": coco_info("one labelhook output set"),
            "licenses": [],
            "images": self.images,
            "categories": coco_categories(self.labelmap.classes[1:]),
            "annotations": self.annotations,
            "warnings": self.warnings(),
        }

    def summary(self) -> SegmentationSummary:
        areas = [
            {"id": entry.id, "name": entry.name, "area": area}
            for entry, area in zip(self.labelmap.classes, self.class_areas, strict=True)
        ]
        return SegmentationSummary(len(self.images), len(self.annotations), self.warnings(), areas)


def _dump(document: Any) -> bytes:
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def decode_command(
    mask_paths: str | Sequence[str],
    result_path: str,
    out_dir: str,
    *,
    max_pixels: int,
    on_frame: Callable[[str], None] | None = None,
    threads: int = 1,
    budget: MemoryBudget | None = None,
    replace: bool = False,
    strict: bool = False,
) -> int:
    """``labelhook decode MASK.png [MASK…] --result RESULT.json --out DIR``; returns the exit status.

    One mask is frame 0; several are the frames of a video in the order given, decoded on up to
    ``threads`` threads (``on_frame`` is told as each is done, in order, for a progress bar). Writes
    ``masks/<frame>/…``, ``labelmap.json`` and ``annotations.json`` under ``out_dir`` only after
    everything decoded; on a bad input nothing is written, one line goes to stderr and 2 is returned.
    ``replace`` first removes what an earlier decode wrote there (so no stale frame survives).
    Warnings (unknown colours, invalid legend keys, empty instances) are summed up on stderr; with
    ``strict`` they make the exit status 1.
    """
    paths = [mask_paths] if isinstance(mask_paths, str) else list(mask_paths)
    try:
        files, summary = _decode_in_memory(paths, result_path, max_pixels, on_frame, threads, budget)
        if replace:
            _remove_previous(Path(out_dir))
        _write_all(Path(out_dir), files)
    except Permanent as exc:
        print(f"labelhook decode: {exc.reason}".replace("\n", " "), file=sys.stderr)
        return 2
    except MemoryError:
        # A mask the pixel limit admits can still be too big for this machine: one line, not a traceback.
        print(
            f"labelhook decode: not enough memory to decode {len(paths)} mask(s) of up to {max_pixels} "
            "pixels each; lower LABELHOOK_MAX_PIXELS or use a bigger machine",
            file=sys.stderr,
        )
        return 2
    warnings = warning_lines(summary.warnings)
    for line in warnings:
        print(f"labelhook decode: warning: {line}", file=sys.stderr)
    print(f"labelhook decode: wrote {len(files)} files to {out_dir}")
    return 1 if strict and warnings else 0


def warning_lines(warnings: Mapping[str, Any]) -> list[str]:
    """One human line per kind of decode warning, e.g. ``2 unknown colours (1,204 px): #010203 …``."""
    lines = []
    unknown = warnings.get("unknown_colors") or {}
    if unknown:
        pixels = sum(int(n) for n in unknown.values())
        shown = " ".join(f"{c} ({int(n):,} px)" for c, n in list(unknown.items())[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        lines.append(f"{len(unknown)} unknown colour(s), {pixels:,} px left unlabeled: {shown}{more}")
    for key, label in (
        ("invalid_legend_keys", "invalid legend key(s)"),
        ("empty_instances", "empty instance(s)"),
    ):
        items = warnings.get(key) or []
        if items:
            lines.append(
                f"{len(items)} {label}: {' '.join(map(str, items[:5]))}{' …' if len(items) > 5 else ''}"
            )
    return lines


def _remove_previous(out_dir: Path) -> None:
    """What `decode` writes, and only that: ``masks/<frame>/``, ``labelmap.json``, ``annotations.json``."""
    try:
        for name in ("labelmap.json", "annotations.json"):
            (out_dir / name).unlink(missing_ok=True)
        masks = out_dir / "masks"
        if masks.is_dir():
            for frame_dir in masks.iterdir():
                if frame_dir.is_dir() and frame_dir.name.isdigit():
                    for name in ("semantic.png", "instances.png"):
                        (frame_dir / name).unlink(missing_ok=True)
                    with contextlib.suppress(OSError):  # not empty: something of the user's is in it
                        frame_dir.rmdir()
    except OSError as exc:
        raise Permanent(f"cannot clear {out_dir}: {exc.strerror or exc}") from exc


def _decode_in_memory(
    mask_paths: Sequence[str],
    result_path: str,
    max_pixels: int,
    on_frame: Callable[[str], None] | None,
    threads: int,
    budget: MemoryBudget | None,
) -> tuple[dict[str, bytes], SegmentationSummary]:
    try:
        result = json.loads(Path(result_path).read_bytes())
    except OSError as exc:
        raise Permanent(f"cannot read result {result_path}: {exc.strerror or exc}") from exc
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        raise Permanent(f"result {result_path} is not valid JSON: {exc}") from exc

    def frames() -> Iterator[tuple[int, bytes]]:
        # At most ``threads`` mask files in memory at a time: a long video decodes in bounded memory.
        for index, path in enumerate(mask_paths):
            try:
                data = Path(path).read_bytes()
            except OSError as exc:
                raise Permanent(f"cannot read mask {path}: {exc.strerror or exc}") from exc
            yield index, data

    files: dict[str, bytes] = {}

    def keep(key: str, data: bytes) -> None:
        files[key] = data
        index, _, name = key.removeprefix("masks/").partition("/")
        if on_frame is not None and key.startswith("masks/") and name == "instances.png":
            on_frame(mask_paths[int(index)])  # the frame's last file: it is done

    try:
        summary = process_segmentation(
            result, frames(), keep, max_pixels=max_pixels, threads=threads, budget=budget
        )
    except FrameError as exc:
        raise Permanent(f"{mask_paths[exc.frame_index]}: {exc.reason}") from exc
    except Permanent as exc:
        if exc.reason.startswith("cannot read"):
            raise
        # Not a frame's fault: the result JSON's (legend, instances). Name that file, not a mask.
        raise Permanent(f"{result_path}: {exc.reason}") from exc
    return files, summary


def _write_all(out_dir: Path, files: Mapping[str, bytes]) -> None:
    """Each file via a temporary sibling and rename, so no reader sees a half-written file."""
    try:
        for key, data in files.items():
            target = out_dir / key
            target.parent.mkdir(parents=True, exist_ok=True)
            temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            try:
                temporary.write_bytes(data)
                os.replace(temporary, target)
            except BaseException:
                temporary.unlink(missing_ok=True)
                raise
    except OSError as exc:
        raise Permanent(f"cannot write to {out_dir}: {exc.strerror or exc}") from exc
