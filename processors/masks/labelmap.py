"""Vendor legend (+ optional instance list) → class-level labelmap and per-colour segments.

Rules (also in the README):

* Legend keys are colours ``#rrggbb``, case-insensitive, normalised to lower case. Any other
  spelling (``#fdffd34``, ``fff``, ``#12345g``) is reported in ``invalid_legend_keys`` as written and
  never truncated or guessed; a key that repeats an earlier colour with a different name is reported
  the same way (the first one wins).
* The labelmap is class-level; id 0 is ``unlabeled`` (``#000000``, no class id). Without instances,
  each distinct legend name is a class. With instances, classes are grouped by ``class_id``; the name
  is the instance ``value`` minus a trailing ``# <n>``; legend colours without an instance record join
  the class of the same name, or form their own.
* One *segment* per valid legend colour, in legend order, then instance colours missing from the
  legend, in instance order. A segment's instance number is its 1-based position in that list, so a
  job's instances keep their numbers in every video frame.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

from processors.errors import Permanent

_HEX = re.compile(r"#[0-9a-fA-F]{6}")
# Instance numbers live in a uint16 map with 0 = none.
MAX_SEGMENTS = 0xFFFF


@dataclass(frozen=True)
class LabelClass:
    """One labelmap entry: the value written in ``semantic.png``."""

    id: int
    name: str
    color: str
    class_id: str | None

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "color": self.color, "class_id": self.class_id}


@dataclass(frozen=True)
class Segment:
    """One mask colour: an instance (or a whole class in semantic-only legends)."""

    number: int  # 1-based; the value written in ``instances.png``
    color: str
    name: str
    label_id: int
    instance_id: str | None
    attributes: Any


@dataclass(frozen=True)
class Labelmap:
    """Classes, segments and the legend problems found while building them."""

    classes: tuple[LabelClass, ...]
    segments: tuple[Segment, ...]
    invalid_legend_keys: tuple[str, ...] = ()

    @cached_property
    def packed_colours(self) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint16]]:
        """Segment colours as sorted packed words (R | G<<8 | B<<16, as read from an RGBA pixel on
        any host) and the segment number of each, for a binary search per run of pixels."""
        words = np.array([_packed(segment.color) for segment in self.segments], dtype=np.uint32).reshape(-1)
        numbers = np.array([segment.number for segment in self.segments], dtype=np.uint16).reshape(-1)
        order = np.argsort(words, kind="stable")
        return words[order], numbers[order]

    @cached_property
    def segment_labels(self) -> npt.NDArray[np.unsignedinteger[Any]]:
        """Segment number → labelmap id (index 0 → 0), for turning the instance map semantic; uint8
        while the ids fit (the semantic PNG is then an 8-bit palette image), else uint16."""
        dtype = np.uint8 if len(self.classes) <= 256 else np.uint16
        table: npt.NDArray[np.unsignedinteger[Any]] = np.zeros(len(self.segments) + 1, dtype=dtype)
        for segment in self.segments:
            table[segment.number] = segment.label_id
        return table


def _packed(colour: str) -> int:
    rgb = int(colour[1:], 16)
    return ((rgb & 0xFF) << 16) | (rgb & 0xFF00) | (rgb >> 16)


def normalise_color(key: str) -> str | None:
    """``#RRGGBB`` in any case → ``#rrggbb``; anything else → None (never guessed)."""
    return key.lower() if _HEX.fullmatch(key) else None


def class_name(value: str) -> str:
    """Instance label ``"car # 2"`` → class name ``"car"``: a trailing ``# <n>`` (spaces allowed) removed.

    Scanned from the end with C-speed string methods, in linear time: the regular expression this
    replaces (``\\s*#\\s*\\d+\\s*$``) backtracked quadratically on a long run of spaces (a vendor
    string of 100 KB of spaces held the GIL for 55 s).
    """
    rest = value.rstrip()
    digits_start = len(rest)
    while digits_start > 0 and rest[digits_start - 1].isdecimal():
        digits_start -= 1
    if digits_start == len(rest):
        return value
    rest = rest[:digits_start].rstrip()
    if not rest.endswith("#"):
        return value
    return rest[:-1].rstrip() or value


def build_labelmap(legend: Mapping[str, Any], instances: Sequence[Mapping[str, Any]] | None) -> Labelmap:
    """Build the labelmap and segments of a vendor result; raises Permanent on a malformed structure."""
    if not isinstance(legend, Mapping):
        raise Permanent("result legend is not an object")
    invalid: list[str] = []
    colours: dict[str, str] = {}  # valid colour → legend name, in legend order
    for key, name in legend.items():
        if not isinstance(key, str) or not isinstance(name, str):
            raise Permanent(f"legend entry {key!r} does not map a colour string to a label name")
        colour = normalise_color(key)
        if colour is None or colours.get(colour, name) != name:
            invalid.append(key)
        else:
            colours.setdefault(colour, name)
    if instances is None:
        return _semantic_only(colours, invalid)
    return _with_instances(colours, _check_instances(instances), invalid)


def _check_instances(instances: Any) -> list[Mapping[str, Any]]:
    if isinstance(instances, str | bytes) or not isinstance(instances, Sequence):
        raise Permanent("result instances is not a list")
    for position, record in enumerate(instances):
        if not isinstance(record, Mapping) or not isinstance(record.get("color"), str):
            raise Permanent(f"result instance #{position} has no colour string")
        for key in ("value", "class_id", "_id"):
            if record.get(key) is not None and not isinstance(record[key], str):
                raise Permanent(f"result instance #{position}: {key} is not a string")
    return list(instances)


def _semantic_only(colours: dict[str, str], invalid: list[str]) -> Labelmap:
    classes = [_UNLABELED]
    by_name: dict[str, int] = {}
    segments: list[Segment] = []
    for colour, name in colours.items():
        if name not in by_name:
            by_name[name] = len(classes)
            classes.append(LabelClass(len(classes), name, colour, None))
        segments.append(Segment(len(segments) + 1, colour, name, by_name[name], None, {}))
    return _finish(classes, segments, invalid)


def _with_instances(
    colours: dict[str, str], instances: list[Mapping[str, Any]], invalid: list[str]
) -> Labelmap:
    by_colour: dict[str, Mapping[str, Any]] = {}
    extra: list[str] = []  # instance colours the legend does not list, in instance order
    for record in instances:
        colour = normalise_color(record["color"])
        if colour is None or colour in by_colour:
            invalid.append(record["color"])  # unusable or ambiguous: a pixel maps to one instance
            continue
        by_colour[colour] = record
        if colour not in colours:
            extra.append(colour)
    # A legend colour without a record joins the class its name belongs to elsewhere, if any.
    class_of_name: dict[str, str] = {}
    for record in instances:
        name = class_name(record.get("value") or "")
        if record.get("class_id") and name:
            class_of_name.setdefault(name, record["class_id"])

    classes = [_UNLABELED]
    class_ids: dict[tuple[str, str], int] = {}
    segments: list[Segment] = []
    for colour in [*colours, *extra]:
        record = by_colour.get(colour, {})
        label = record.get("value") or colours.get(colour) or colour
        name = class_name(label)
        vendor_class = record.get("class_id") or class_of_name.get(name)
        key = ("class_id", vendor_class) if vendor_class else ("name", name)
        if key not in class_ids:
            class_ids[key] = len(classes)
            classes.append(LabelClass(len(classes), name, colour, vendor_class))
        attributes = record.get("attributes")
        segments.append(
            Segment(
                number=len(segments) + 1,
                color=colour,
                name=label,
                label_id=class_ids[key],
                instance_id=record.get("_id"),
                attributes={} if attributes is None else attributes,
            )
        )
    return _finish(classes, segments, invalid)


def _finish(classes: list[LabelClass], segments: list[Segment], invalid: list[str]) -> Labelmap:
    if len(segments) > MAX_SEGMENTS:
        raise Permanent(f"legend lists {len(segments)} colours; at most {MAX_SEGMENTS} are supported")
    return Labelmap(tuple(classes), tuple(segments), tuple(invalid))


_UNLABELED = LabelClass(0, "unlabeled", "#000000", None)
