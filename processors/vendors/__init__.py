"""The vendor registry: which vendors exist, how their sources are checked, where their processor lives.

One package per vendor (`processors/vendors/<vendor>/`: processor, API client, result parsing, options);
`base.py` is the `Processor` interface they implement. The receiver keeps its own registry of
verification adapters (`receiver.vendors`) under the same names. Processors and checks are imported
inside functions, so a web process never loads numpy; they are plain imports (not import strings) so
that mypy checks them and the import graph (tests/test_layout.py) sees them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from processors.config import SourceConfig
    from processors.vendors.base import Processor


def _check_standard(source: SourceConfig) -> str | None:
    from processors.vendors.standard.processor import check_secrets

    return check_secrets(source)


def _check_cvat(source: SourceConfig) -> str | None:
    from processors.vendors.cvat.options import check_source

    return check_source(source)


def _check_superai(source: SourceConfig) -> str | None:
    from processors.vendors.superai.processor import check_source

    return check_source(source)


def _check_techforge(source: SourceConfig) -> str | None:
    from processors.vendors.techforge.processor import check_source

    return check_source(source)


def _check_labelbox(source: SourceConfig) -> str | None:
    from processors.vendors.labelbox.options import check_source

    return check_source(source)


def _check_scale(source: SourceConfig) -> str | None:
    from processors.vendors.scale.options import check_source

    return check_source(source)


def _labelbox() -> type[Processor]:
    from processors.vendors.labelbox.processor import LabelboxProcessor

    return LabelboxProcessor


def _scale() -> type[Processor]:
    from processors.vendors.scale.processor import ScaleProcessor

    return ScaleProcessor


def _cvat() -> type[Processor]:
    from processors.vendors.cvat.processor import CvatProcessor

    return CvatProcessor


def _standard() -> type[Processor]:
    from processors.vendors.standard.processor import StandardProcessor

    return StandardProcessor


def _playment() -> type[Processor]:
    from processors.vendors.playment.processor import PlaymentProcessor

    return PlaymentProcessor


def _superai() -> type[Processor]:
    from processors.vendors.superai.processor import SuperAIProcessor

    return SuperAIProcessor


def _techforge() -> type[Processor]:
    from processors.vendors.techforge.processor import TechForgeProcessor

    return TechForgeProcessor


@dataclass(frozen=True)
class VendorInfo:
    """What the rest of the system needs to know about one vendor before any of its code loads."""

    verification: str
    #: Imports and returns the processor class (lazily: the web process never needs it).
    load_processor: Callable[[], type[Processor]]
    needs_secret: bool = True
    #: Poll this vendor's open jobs from `work`/`run` by default (vendors without callbacks);
    #: any source can turn it on or off with LABELHOOK_<SOURCE>_POLL=1/0.
    polls: bool = False
    check: Callable[[SourceConfig], str | None] = lambda source: None

    def processor_class(self) -> type[Processor]:
        return self.load_processor()


KNOWN_VENDORS: dict[str, VendorInfo] = {
    "cvat": VendorInfo(
        verification="X-Signature-256 HMAC-SHA256 of the raw body; update:job to completed is processed",
        load_processor=_cvat,
        check=_check_cvat,
    ),
    "standard": VendorInfo(
        verification="Standard Webhooks HMAC-SHA256 (webhook-id/-timestamp/-signature, ±5 min)",
        load_processor=_standard,
        check=_check_standard,
    ),
    "playment": VendorInfo(
        verification="static x-playment-key header or ?token= (constant-time); results via the job API",
        load_processor=_playment,
        check=lambda s: None if s.api_key else "API_KEY is required: results are fetched from Playment's API",
    ),
    "superai": VendorInfo(
        verification="token in the callback URL (?token= / X-Labelhook-Token), or ECDSA if PUBLIC_KEY is set",
        load_processor=_superai,
        needs_secret=False,
        check=_check_superai,
    ),
    "techforge": VendorInfo(
        verification="none: TechForge has no callbacks (hooks answer 404); jobs are polled with the API key",
        load_processor=_techforge,
        needs_secret=False,
        polls=True,
        check=_check_techforge,
    ),
    "labelbox": VendorInfo(
        verification="X-Hub-Signature-256 / X-Hub-Signature HMAC of the raw body; LABEL_CREATED/UPDATED",
        load_processor=_labelbox,
        check=_check_labelbox,
    ),
    "scale": VendorInfo(
        verification="static scale-callback-auth header (constant-time); completed tasks are processed",
        load_processor=_scale,
        check=_check_scale,
    ),
}
