"""A Label Studio project's labelling config (XML) → labelhook classes with stable ids and colours.

Class ids follow the order of ``<Label value=…>`` entries under the area controls (``BrushLabels``,
``PolygonLabels``, ``RectangleLabels``, ``EllipseLabels``, ``Labels``) of the project's
``label_config``, so every task of a project gets the same ids. A label's ``background`` (``#rrggbb``,
``#rgb``, a CSS colour name or ``rgb()``/``rgba()``, read with Pillow) is its colour; one that cannot be
read is reported and replaced by a colour derived from the name. Labels used in an annotation but not in
the config (the config changed since) are appended in name order.
"""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable

from PIL import ImageColor

from processors.masks.labelmap import LabelClass

_CONTROLS = frozenset(
    {"brushlabels", "polygonlabels", "rectanglelabels", "ellipselabels", "labels", "keypointlabels"}
)
#: The editor refuses configs this big long before; it bounds the XML parse of an API answer.
MAX_CONFIG_CHARS = 2_000_000


def config_labels(label_config: str | None) -> tuple[list[tuple[str, str | None]], list[str]]:
    """``[(label value, background or None)]`` in config order, and problems found (never raises).

    A config that is missing or not XML yields no labels and one problem; classes then come from the
    annotations alone.
    """
    if not label_config:
        return [], ["the project has no label_config"]
    if len(label_config) > MAX_CONFIG_CHARS:
        return [], [f"label_config is over {MAX_CONFIG_CHARS} characters"]
    try:
        # Python's expat refuses entity-expansion bombs (expat >= 2.4.1); the size is capped above.
        root = ElementTree.fromstring(label_config)
    except ElementTree.ParseError as exc:
        return [], [f"label_config is not XML: {exc}"]
    labels: dict[str, str | None] = {}
    for control in root.iter():
        if control.tag.lower() not in _CONTROLS:
            continue
        for label in control:
            if label.tag.lower() != "label":
                continue
            value = label.get("value") or label.get("alias")
            if value and value not in labels:
                labels[value] = label.get("background")
    return list(labels.items()), []


def build_classes(
    configured: list[tuple[str, str | None]], used: Iterable[str]
) -> tuple[list[LabelClass], list[str]]:
    """Classes (id 0 = unlabeled) and the backgrounds that were not readable colours."""
    classes = [LabelClass(0, "unlabeled", "#000000", None)]
    invalid: list[str] = []
    seen: set[str] = set()
    extra = sorted(set(used) - {name for name, _ in configured})
    for name, background in [*configured, *((name, None) for name in extra)]:
        if name in seen:
            continue
        seen.add(name)
        colour = _colour(background)
        if colour is None:
            if background:
                invalid.append(background)
            colour = "#" + hashlib.sha256(name.encode()).hexdigest()[:6]
        classes.append(LabelClass(len(classes), name, colour, name))
    return classes, invalid


def _colour(background: str | None) -> str | None:
    if not background:
        return None
    try:
        rgb = ImageColor.getrgb(background.strip())
    except ValueError:
        return None
    return "#{:02x}{:02x}{:02x}".format(*rgb[:3])


def image_fields(label_config: str | None) -> dict[str, str]:
    """``<Image name="img" value="$image"/>`` → ``{"img": "image"}``: which task data field each image is."""
    if not label_config or len(label_config) > MAX_CONFIG_CHARS:
        return {}
    try:
        root = ElementTree.fromstring(label_config)
    except ElementTree.ParseError:
        return {}
    fields: dict[str, str] = {}
    for tag in root.iter():
        name, value = tag.get("name"), tag.get("value") or ""
        if tag.tag.lower() == "image" and name and value.startswith("$"):
            fields.setdefault(name, value[1:])
    return fields
