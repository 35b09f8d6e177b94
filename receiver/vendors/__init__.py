"""The vendor registry: per vendor its receiver adapter, its processor and its typed options.

The list of vendors is `processors.vendors.VENDORS` (options dataclass + processor, the half the worker
and the configuration need; `processors` never imports `receiver`). This module adds the receiver half,
each adapter naming its vendor (`VendorAdapter.vendor`), and derives `REGISTRY` from the two — refusing
at import a vendor with only one half, so a process cannot start with an incomplete vendor. Adding a
vendor: docs/vendors/README.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from processors.vendors import VENDORS, VendorSpec
from processors.vendors.base import Processor
from processors.vendors.options import VendorOptions
from receiver.vendors.base import Callback, IncomingRequest, VendorAdapter
from receiver.vendors.cvat import CvatAdapter
from receiver.vendors.labelbox import LabelboxAdapter
from receiver.vendors.labelstudio import LabelStudioAdapter
from receiver.vendors.playment import PlaymentAdapter
from receiver.vendors.scale import ScaleAdapter
from receiver.vendors.standard import StandardAdapter
from receiver.vendors.superai import SuperAIAdapter
from receiver.vendors.techforge import TechForgeAdapter


@dataclass(frozen=True)
class Vendor:
    """Both halves of one vendor."""

    spec: VendorSpec
    adapter: type[VendorAdapter]

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def options(self) -> type[VendorOptions]:
        return self.spec.options

    def processor_class(self) -> type[Processor]:
        """The worker half (imported on first call: it loads numpy)."""
        return self.spec.processor_class()


class RegistryError(RuntimeError):
    """A vendor has a receiver half without a worker half, or the other way round."""


def derive_registry(
    specs: Mapping[str, VendorSpec], adapters: Iterable[type[VendorAdapter]]
) -> Mapping[str, Vendor]:
    """Pair every vendor of ``specs`` with the one adapter naming it; `RegistryError` if any is unpaired."""
    by_vendor: dict[str, type[VendorAdapter]] = {}
    for adapter in adapters:
        if adapter.vendor in by_vendor:
            raise RegistryError(
                f"two adapters for vendor {adapter.vendor!r}: {by_vendor[adapter.vendor]}, {adapter}"
            )
        by_vendor[adapter.vendor] = adapter
    no_adapter = sorted(specs.keys() - by_vendor.keys())
    no_spec = sorted(by_vendor.keys() - specs.keys())
    if no_adapter or no_spec:
        raise RegistryError(
            f"vendors without a receiver adapter: {no_adapter}; adapters without a vendor spec: {no_spec}"
        )
    for name, spec in specs.items():
        if spec.name != name:
            raise RegistryError(f"vendor spec {spec.name!r} is registered under {name!r}")
    return {name: Vendor(spec, by_vendor[name]) for name, spec in specs.items()}


REGISTRY: Mapping[str, Vendor] = derive_registry(
    VENDORS,
    (
        CvatAdapter,
        LabelStudioAdapter,
        PlaymentAdapter,
        StandardAdapter,
        SuperAIAdapter,
        TechForgeAdapter,
        LabelboxAdapter,
        ScaleAdapter,
    ),
)

__all__ = ["REGISTRY", "Callback", "IncomingRequest", "Vendor", "VendorAdapter", "derive_registry"]
