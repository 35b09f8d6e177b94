"""The COCO fields that importers are strict about: ``attributes``, ``categories`` and ``info``.

pycocotools reads almost anything; Datumaro (CVAT's importer) and FiftyOne do not: Datumaro calls
``dict.update`` with an annotation's ``attributes`` (a list breaks it), and FiftyOne and Datumaro
read ``supercategory`` and ``info``. Used by the per-job ``annotations.json`` and by the exporter,
so both say the same thing the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from processors.masks.labelmap import LabelClass

#: Where a vendor attribute value that is not an object or a list of pairs is kept.
VENDOR_ATTRIBUTES_KEY = "vendor_attributes"
_PAIR_KEYS = ("key", "name", "spec_id", "id")


def coco_attributes(value: Any) -> dict[str, Any]:
    """A vendor's instance attributes as a COCO ``attributes`` object (always a dict).

    An object stays as it is; a list of ``{key|name|spec_id|id, value}`` pairs (Playment, CVAT)
    becomes ``{key: value}``; ``None`` or an empty list is ``{}``; anything else is kept whole under
    ``vendor_attributes``, so nothing the vendor said is lost or guessed at.
    """
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return {str(k): v for k, v in value.items()}
    if isinstance(value, list):
        pairs = _pairs(value)
        if pairs is not None:
            return pairs
    return {VENDOR_ATTRIBUTES_KEY: value}


def _pairs(items: list[Any]) -> dict[str, Any] | None:
    result: dict[str, Any] = {}
    for item in items:
        if not isinstance(item, Mapping) or "value" not in item:
            return None
        key = next((item[k] for k in _PAIR_KEYS if isinstance(item.get(k), str | int)), None)
        if key is None or isinstance(key, bool) or str(key) in result:
            return None
        result[str(key)] = item["value"]
    return result


def coco_categories(classes: Iterable[LabelClass]) -> list[dict[str, Any]]:
    """COCO categories (``id``, ``name``, ``supercategory``) plus labelhook's ``color`` and ``class_id``."""
    return [{**entry.as_json(), "supercategory": ""} for entry in classes]


def coco_info(description: str) -> dict[str, Any]:
    """A COCO ``info`` block. No date: outputs are deterministic, a re-run writes identical bytes."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        labelhook_version = version("labelhook")
    except PackageNotFoundError:  # running from a checkout that was never installed
        labelhook_version = "0"
    return {
        "description": description,
        "contributor": "labelhook",
        "version": labelhook_version,
        "url": "",
        "year": "",
        "date_created": "",
    }
