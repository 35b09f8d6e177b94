"""Receiver-side vendor adapters by name (same names as `processors.vendors.KNOWN_VENDORS`)."""

from __future__ import annotations

from receiver.vendors.base import Callback, IncomingRequest, VendorAdapter
from receiver.vendors.cvat import CvatAdapter
from receiver.vendors.labelbox import LabelboxAdapter
from receiver.vendors.playment import PlaymentAdapter
from receiver.vendors.scale import ScaleAdapter
from receiver.vendors.standard import StandardAdapter
from receiver.vendors.superai import SuperAIAdapter
from receiver.vendors.techforge import TechForgeAdapter

ADAPTERS: dict[str, type[VendorAdapter]] = {
    "standard": StandardAdapter,
    "cvat": CvatAdapter,
    "techforge": TechForgeAdapter,
    "superai": SuperAIAdapter,
    "playment": PlaymentAdapter,
    "labelbox": LabelboxAdapter,
    "scale": ScaleAdapter,
}

__all__ = ["ADAPTERS", "Callback", "IncomingRequest", "VendorAdapter"]
