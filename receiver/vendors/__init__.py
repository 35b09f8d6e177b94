"""Receiver-side vendor adapters by name (same names as `processors.vendors.KNOWN_VENDORS`)."""

from __future__ import annotations

from receiver.vendors.base import Callback, IncomingRequest, VendorAdapter
from receiver.vendors.standard import StandardAdapter

ADAPTERS: dict[str, type[VendorAdapter]] = {
    "standard": StandardAdapter,
}

__all__ = ["ADAPTERS", "Callback", "IncomingRequest", "VendorAdapter"]
