"""Scale source options (`ScaleOptions`); no numpy, so the web process can load it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from processors.vendors.options import VendorOptions

if TYPE_CHECKING:
    from processors.config import SourceConfig

DEFAULT_API_URL = "https://api.scale.com"
#: LABELHOOK_<SOURCE>_INDEX_IMAGE value → the response key it selects.
INDEX_IMAGES = {"extended": "extendedIndexedImage", "indexed": "indexedImage"}


@dataclass(frozen=True)
class ScaleOptions(VendorOptions):
    """A Scale source's ``LABELHOOK_<SOURCE>_*`` options (docs/vendors/scale.md)."""

    #: Re-read the task with ``GET /v1/task/{id}`` before processing, when API_KEY is set (the
    #: callback only says *that* a task changed; audits and recalls change it again). 0: always use
    #: the callback's own response.
    fetch_task: bool = True
    #: Which combined index image to decode when the response has both: ``extended`` or ``indexed``.
    index_image: str = "extended"
    #: The output folder's project (default: the task's ``project``, else the source name).
    project: str | None = None

    def fetches_task(self, source: SourceConfig) -> bool:
        return self.fetch_task and source.api_key is not None

    @property
    def index_image_key(self) -> str:
        """The response key ``index_image`` selects (``extendedIndexedImage`` / ``indexedImage``)."""
        return INDEX_IMAGES[self.index_image]

    def validate(self, source: SourceConfig) -> str | None:
        if self.index_image not in INDEX_IMAGES:
            return f"INDEX_IMAGE must be one of {', '.join(INDEX_IMAGES)}, got {self.index_image!r}"
        return None
