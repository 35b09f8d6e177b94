"""Scale segmentation results: ``labelMapping`` → labelmap, index image → instance map (pure).

A ``segmentannotation`` response holds ``labelMapping`` — label name → ``{index, color}`` for a class
label, or a *list* of such objects for an instance label (one per instance) — and
``annotations.combined`` with the URLs of ``indexedImage`` (1 channel) and ``extendedIndexedImage``
(24-bit index packed in RGB). Scale guarantees indexes unique and colours **not** unique, so every
pixel is assigned through its index; colours only paint ``semantic.png``.

Segments (the values of ``instances.png``) are numbered 1… in labelMapping order, list entries in
list order; classes are the label names, in the same order, id 0 ``unlabeled``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from processors.errors import Permanent
from processors.masks.labelmap import MAX_SEGMENTS, LabelClass, Labelmap, Segment, normalise_color

#: ``extendedIndexedImage`` packs the index in three bytes.
MAX_INDEX = (1 << 24) - 1
INDEXED = "indexedImage"
EXTENDED = "extendedIndexedImage"


@dataclass(frozen=True)
class ScaleLabelmap:
    """The job's labelmap and, for each Scale index, the segment number it becomes."""

    labelmap: Labelmap
    segment_of_index: dict[int, int]

    def instances(self, indexes: npt.NDArray[np.uint32]) -> tuple[npt.NDArray[np.uint16], dict[str, int]]:
        """Index map → instance map (segment numbers, 0 unlabeled), and pixels per unknown index.

        An index that labelMapping does not list is left unlabeled and counted (``{"17": pixels}``).
        """
        top = max(self.segment_of_index, default=0)
        lut = np.zeros(top + 2, dtype=np.uint16)  # the last slot catches every index above ``top``
        for index, number in self.segment_of_index.items():
            lut[index] = number
        clipped = np.minimum(indexes, np.uint32(top + 1))
        instances = lut[clipped]
        unknown = (instances == 0) & (indexes != 0)
        counts: dict[str, int] = {}
        if unknown.any():
            values, totals = np.unique(indexes[unknown], return_counts=True)
            counts = {str(int(v)): int(n) for v, n in zip(values.tolist(), totals.tolist(), strict=True)}
        return instances, counts


def parse_label_mapping(mapping: Any) -> ScaleLabelmap:
    """Build the labelmap of a ``labelMapping`` object; `Permanent` naming the bad entry."""
    if not isinstance(mapping, Mapping) or not mapping:
        raise Permanent("Scale response has no labelMapping object")
    classes = [LabelClass(0, "unlabeled", "#000000", None)]
    segments: list[Segment] = []
    segment_of_index: dict[int, int] = {}
    invalid: list[str] = []
    for label, value in mapping.items():
        if not isinstance(label, str) or not label:
            raise Permanent("Scale labelMapping has an empty label name")
        is_instance_label = isinstance(value, list)
        entries = value if is_instance_label else [value]
        if not entries:
            continue  # an instance label nobody drew
        colours = [_colour(entry, label, invalid) for entry in entries]
        class_colour = next((c for c in colours if c), _derived_colour(len(classes)))
        entry_class = LabelClass(len(classes), label, class_colour, label)
        classes.append(entry_class)
        for position, (entry, colour) in enumerate(zip(entries, colours, strict=True)):
            index = _index(entry, label)
            if index in segment_of_index:
                raise Permanent(f"Scale labelMapping uses index {index} twice (label {label!r})")
            number = len(segments) + 1
            if number > MAX_SEGMENTS:
                raise Permanent(f"Scale labelMapping lists more than {MAX_SEGMENTS} indexes")
            segment_of_index[index] = number
            segments.append(
                Segment(
                    number=number,
                    color=colour or class_colour,
                    name=f"{label} #{position + 1}" if is_instance_label else label,
                    label_id=entry_class.id,
                    instance_id=str(index),
                    attributes={"scale_index": index},
                )
            )
    if not segments:
        raise Permanent("Scale labelMapping lists no index")
    return ScaleLabelmap(Labelmap(tuple(classes), tuple(segments), tuple(invalid)), segment_of_index)


def _index(entry: Any, label: str) -> int:
    if not isinstance(entry, Mapping):
        raise Permanent(f"Scale labelMapping entry of {label!r} is not an object with index and color")
    index = entry.get("index")
    if isinstance(index, float) and index.is_integer():
        index = int(index)
    if not isinstance(index, int) or isinstance(index, bool) or not 0 < index <= MAX_INDEX:
        raise Permanent(
            f"Scale labelMapping entry of {label!r} has index {index!r}, not an integer 1..{MAX_INDEX}"
        )
    return index


def _colour(entry: Any, label: str, invalid: list[str]) -> str | None:
    raw = entry.get("color") if isinstance(entry, Mapping) else None
    if raw is None:
        return None
    colour = normalise_color(raw) if isinstance(raw, str) else None
    if colour is None:
        invalid.append(str(raw))  # reported, never guessed; the segment takes a derived colour
    return colour


def _derived_colour(n: int) -> str:
    """A deterministic display colour for a class whose colours are all missing or unusable."""
    return f"#{(n * 2654435761) & 0xFFFFFF:06x}"


def index_image_url(response: Mapping[str, Any], prefer: str) -> tuple[str, str]:
    """The (kind, URL) of the index image to decode: ``prefer`` if the response has it, else the other.

    ``prefer`` is ``extendedIndexedImage`` (lossless for any number of indexes) or ``indexedImage``.
    """
    annotations = response.get("annotations")
    combined = annotations.get("combined") if isinstance(annotations, Mapping) else None
    if not isinstance(combined, Mapping):
        raise Permanent("Scale response has no annotations.combined object")
    order = (prefer, INDEXED if prefer == EXTENDED else EXTENDED)
    for kind in order:
        url = combined.get(kind)
        if isinstance(url, str) and url.strip():
            return kind, url.strip()
    raise Permanent("Scale response's annotations.combined has neither indexedImage nor extendedIndexedImage")


def is_segmentation(response: Any) -> bool:
    """A segmentation response: it has a labelMapping (other task types are stored, not decoded)."""
    return isinstance(response, Mapping) and "labelMapping" in response
