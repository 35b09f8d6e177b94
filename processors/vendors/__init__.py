"""The vendor registry, worker side: per vendor its options dataclass, its processor, how it verifies.

`VENDORS` is the one list of vendors. The receiver's adapters (`receiver.vendors.VENDORS`) are derived
from it and checked against it at import, so a vendor cannot have one half without the other (and
tests/test_vendor_registry.py proves it). Adding a vendor: docs/vendors/README.md.

One package per vendor (`processors/vendors/<vendor>/`: processor, API client, result parsing,
options); `base.py` is the `Processor` interface, `options.py` the `VendorOptions` base and parser.
Options classes are imported here (they are light); processors are imported by `load_processor`, so a
web process never loads numpy. The loaders are plain imports (not import strings) so that mypy checks
them and the import graph (tests/test_layout.py) sees them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from processors.vendors.cvat.options import CvatOptions
from processors.vendors.labelbox.options import LabelboxOptions
from processors.vendors.labelstudio.options import LabelStudioOptions
from processors.vendors.options import VendorOptions
from processors.vendors.playment.options import PlaymentOptions
from processors.vendors.scale.options import ScaleOptions
from processors.vendors.standard.options import StandardOptions
from processors.vendors.superai.options import SuperAIOptions
from processors.vendors.techforge.options import TechForgeOptions

if TYPE_CHECKING:
    from processors.vendors.base import Processor


def _cvat() -> type[Processor]:
    from processors.vendors.cvat.processor import CvatProcessor

    return CvatProcessor


def _labelstudio() -> type[Processor]:
    from processors.vendors.labelstudio.processor import LabelStudioProcessor

    return LabelStudioProcessor


def _standard() -> type[Processor]:
    from processors.vendors.standard.processor import StandardProcessor

    return StandardProcessor


def _playment() -> type[Processor]:
    from processors.vendors.playment.processor import PlaymentProcessor

    return PlaymentProcessor


def _superai() -> type[Processor]:
    from processors.vendors.superai.processor import SuperAIProcessor

    return SuperAIProcessor


def _labelbox() -> type[Processor]:
    from processors.vendors.labelbox.processor import LabelboxProcessor

    return LabelboxProcessor


def _scale() -> type[Processor]:
    from processors.vendors.scale.processor import ScaleProcessor

    return ScaleProcessor


def _techforge() -> type[Processor]:
    from processors.vendors.techforge.processor import TechForgeProcessor

    return TechForgeProcessor


@dataclass(frozen=True)
class VendorSpec:
    """What the rest of the system needs to know about one vendor before any of its heavy code loads."""

    name: str
    #: How callbacks are verified, in one line (shown by `labelhook sources`; no secret in it).
    verification: str
    #: The vendor-specific ``LABELHOOK_<SOURCE>_*`` options; common ones live on `SourceConfig`.
    options: type[VendorOptions]
    #: Imports and returns the processor class (lazily: the web process never needs it).
    load_processor: Callable[[], type[Processor]]
    #: A source of this vendor must have SECRET (False: the options' `validate` decides).
    needs_secret: bool = True
    #: Poll this vendor's open jobs from `work`/`run` by default (vendors without callbacks);
    #: any source can turn it on or off with LABELHOOK_<SOURCE>_POLL=1/0.
    polls: bool = False

    def processor_class(self) -> type[Processor]:
        return self.load_processor()


def _registry(*specs: VendorSpec) -> Mapping[str, VendorSpec]:
    return {spec.name: spec for spec in specs}


VENDORS: Mapping[str, VendorSpec] = _registry(
    VendorSpec(
        name="cvat",
        verification="X-Signature-256 HMAC-SHA256 of the raw body; update:job to completed is processed",
        options=CvatOptions,
        load_processor=_cvat,
    ),
    VendorSpec(
        name="standard",
        verification="Standard Webhooks v1 HMAC-SHA256 (whsec_) or v1a ed25519 (whpk_) "
        "(webhook-id/-timestamp/-signature, ±5 min)",
        options=StandardOptions,
        load_processor=_standard,
    ),
    VendorSpec(
        name="playment",
        verification="static x-playment-key header or ?token= (constant-time); results via the job API",
        options=PlaymentOptions,
        load_processor=_playment,
    ),
    VendorSpec(
        name="superai",
        verification="token in the callback URL (?token= / X-Labelhook-Token), or ECDSA if PUBLIC_KEY is set",
        options=SuperAIOptions,
        load_processor=_superai,
        needs_secret=False,
    ),
    VendorSpec(
        name="labelstudio",
        verification="token in the webhook URL (?token=) or a custom header (constant-time); "
        "annotations fetched from the API",
        options=LabelStudioOptions,
        load_processor=_labelstudio,
        needs_secret=False,  # LabelStudioOptions.validate asks for it, saying where it goes
    ),
    VendorSpec(
        name="techforge",
        verification="none: TechForge has no callbacks (hooks answer 404); jobs are polled with the API key",
        options=TechForgeOptions,
        load_processor=_techforge,
        needs_secret=False,
        polls=True,
    ),
    VendorSpec(
        name="labelbox",
        verification="X-Hub-Signature-256 / X-Hub-Signature HMAC of the raw body; LABEL_CREATED/UPDATED",
        options=LabelboxOptions,
        load_processor=_labelbox,
    ),
    VendorSpec(
        name="scale",
        verification="static scale-callback-auth header (constant-time); completed tasks are processed",
        options=ScaleOptions,
        load_processor=_scale,
    ),
)
