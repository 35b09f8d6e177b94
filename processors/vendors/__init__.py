"""The vendor registry: which vendors exist, how their sources are checked, where their processor lives.

The receiver keeps its own registry of verification adapters (`receiver.vendors`) under the same names;
a test keeps the two in step. Processors are imported lazily, so a web process never loads numpy.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from processors.config import SourceConfig
    from processors.vendors.base import Processor


def _check_standard(source: SourceConfig) -> str | None:
    from processors.vendors.standard import check_secrets

    return check_secrets(source)


@dataclass(frozen=True)
class VendorInfo:
    """What the rest of the system needs to know about one vendor before any of its code loads."""

    verification: str
    processor_path: str
    needs_secret: bool = True
    #: Poll this vendor's open jobs from `work`/`run` by default (vendors without callbacks);
    #: any source can turn it on or off with LABELHOOK_<SOURCE>_POLL=1/0.
    polls: bool = False
    check: Callable[[SourceConfig], str | None] = lambda source: None

    def processor_class(self) -> type[Processor]:
        module_name, _, class_name = self.processor_path.partition(":")
        cls: type[Processor] = getattr(importlib.import_module(module_name), class_name)
        return cls


KNOWN_VENDORS: dict[str, VendorInfo] = {
    "cvat": VendorInfo(
        verification="X-Signature-256 HMAC-SHA256 of the raw body; update:job to completed is processed",
        processor_path="processors.vendors.cvat:CvatProcessor",
        check=lambda s: importlib.import_module("processors.vendors.cvat_options").check_source(s),
    ),
    "standard": VendorInfo(
        verification="Standard Webhooks HMAC-SHA256 (webhook-id/-timestamp/-signature, ±5 min)",
        processor_path="processors.vendors.standard:StandardProcessor",
        check=_check_standard,
    ),
    "playment": VendorInfo(
        verification="static x-playment-key header or ?token= (constant-time); results via the job API",
        processor_path="processors.vendors.playment:PlaymentProcessor",
        check=lambda s: None if s.api_key else "API_KEY is required: results are fetched from Playment's API",
    ),
    "superai": VendorInfo(
        verification="token in the callback URL (?token= / X-Labelhook-Token), or ECDSA if PUBLIC_KEY is set",
        processor_path="processors.vendors.superai:SuperAIProcessor",
        needs_secret=False,
        check=lambda s: importlib.import_module("processors.vendors.superai").check_source(s),
    ),
    "techforge": VendorInfo(
        verification="none: TechForge has no callbacks (hooks answer 404); jobs are polled with the API key",
        processor_path="processors.vendors.techforge:TechForgeProcessor",
        needs_secret=False,
        polls=True,
        check=lambda s: importlib.import_module("processors.vendors.techforge").check_source(s),
    ),
}
