"""Playment result objects → the labels (legend, instances) and the mask frames to fetch, by frame index.

Image jobs (seed 003) are one object: ``{"legend", "instances"?, "url"}``. Video result shapes are
not published, so we accept, and document, three: a list of per-frame objects; an object whose
``frames`` or ``results`` list holds them; each per-frame object with ``url`` and a frame index in
``frame_index``, ``frame``, ``index`` or ``frame_number`` (its position in the list otherwise). The
legend and instances come from the top level when present, else from the frames, merged in order.
"""

from __future__ import annotations

import posixpath
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from processors.errors import Permanent

_FRAME_LISTS = ("frames", "results")
_FRAME_INDEX_KEYS = ("frame_index", "frame", "index", "frame_number")


@dataclass(frozen=True)
class MaskFrame:
    """One mask to fetch: the frame index it belongs to and its attachment URL."""

    index: int
    url: str

    @property
    def file_name(self) -> str:
        """The URL's base name (``source.png``) if it is a safe name, else ``mask.png``."""
        name = posixpath.basename(urllib.parse.urlsplit(self.url).path)
        safe = name and all(c.isalnum() or c in "._-" for c in name) and not name.startswith(".")
        return name if safe else "mask.png"


@dataclass(frozen=True)
class ResultPlan:
    """What a result object asks for: ``labels`` for `process_segmentation`, or no masks at all."""

    labels: dict[str, Any] | None
    frames: tuple[MaskFrame, ...]


def plan_result(result: Any) -> ResultPlan:
    """Read a fetched result object; `Permanent` on a shape we cannot act on."""
    if isinstance(result, list):
        return _plan_frames({}, result)
    if not isinstance(result, Mapping):
        raise Permanent("Playment result is neither a JSON object nor a list of frames")
    for key in _FRAME_LISTS:
        if isinstance(result.get(key), list):
            return _plan_frames(result, result[key])
    url = result.get("url")
    if result.get("legend") is None and url is None:
        return ResultPlan(labels=None, frames=())  # not a segmentation result: result.json is all
    if not isinstance(url, str) or not url.strip():
        raise Permanent("Playment segmentation result has no mask url")
    return ResultPlan(labels=_labels(result, []), frames=(MaskFrame(0, url.strip()),))


def _plan_frames(top: Mapping[str, Any], entries: Sequence[Any]) -> ResultPlan:
    frames: list[MaskFrame] = []
    objects: list[Mapping[str, Any]] = []
    for position, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise Permanent(f"Playment result frame #{position} is not a JSON object")
        url = entry.get("url")
        if not isinstance(url, str) or not url.strip():
            raise Permanent(f"Playment result frame #{position} has no mask url")
        frames.append(MaskFrame(_frame_index(entry, position), url.strip()))
        objects.append(entry)
    if not frames:
        raise Permanent("Playment result has an empty frame list")
    frames.sort(key=lambda f: f.index)
    return ResultPlan(labels=_labels(top, objects), frames=tuple(frames))


def _frame_index(entry: Mapping[str, Any], position: int) -> int:
    for key in _FRAME_INDEX_KEYS:
        value = entry.get(key)
        if value is None or isinstance(value, bool):
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise Permanent(f"Playment result frame #{position}: {key} {value!r} is not a number") from None
        if not number.is_integer() or number < 0:
            raise Permanent(f"Playment result frame #{position}: {key} {value!r} is not a frame index")
        return int(number)
    return position


def _labels(top: Mapping[str, Any], frames: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Top-level legend/instances win; else the frames' merged in order (first spelling of a key wins)."""
    legend = top.get("legend")
    if legend is None:
        merged: dict[str, Any] = {}
        for frame in frames:
            frame_legend = frame.get("legend")
            if isinstance(frame_legend, Mapping):
                for key, value in frame_legend.items():
                    merged.setdefault(key, value)
            elif frame_legend is not None:
                raise Permanent("Playment result frame legend is not a JSON object")
        legend = merged
    if not isinstance(legend, Mapping):
        raise Permanent("Playment result legend is not a JSON object")
    labels: dict[str, Any] = {"legend": dict(legend)}
    instances = top.get("instances")
    if instances is None and frames:
        seen: set[str] = set()
        collected: list[Any] = []
        for frame in frames:
            for instance in frame.get("instances") or []:
                key = (
                    str(instance.get("_id") or instance.get("color")) if isinstance(instance, Mapping) else ""
                )
                if key and key in seen:
                    continue
                seen.add(key)
                collected.append(instance)
        instances = collected or None
    if instances is not None:
        labels["instances"] = instances
    return labels


def input_image_urls(data: Any) -> dict[int, str]:
    """Frame index → source image URL from a job's input ``data`` (seed 000's create-job shape).

    Image job: ``data.image_url`` is frame 0. Video job: ``data.video_data.frames`` (or
    ``data.frames``) in order, each ``src``; the result's frame indices count those frames from 0.
    Anything else (no input, malformed entries) names no image: never an error, the masks matter.
    """
    if not isinstance(data, Mapping):
        return {}
    if isinstance(data.get("image_url"), str) and data["image_url"].strip():
        return {0: data["image_url"].strip()}
    video = data.get("video_data")
    frames = video.get("frames") if isinstance(video, Mapping) else data.get("frames")
    if not isinstance(frames, list):
        return {}
    return {
        index: frame["src"].strip()
        for index, frame in enumerate(frames)
        if isinstance(frame, Mapping) and isinstance(frame.get("src"), str) and frame["src"].strip()
    }
