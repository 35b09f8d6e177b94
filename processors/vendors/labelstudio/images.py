"""Where a Label Studio task's images are: the task's ``data`` field each ``<Image>`` of the config reads.

``<Image name="img" value="$image"/>`` draws ``task.data["image"]``; results name the image by
``to_name`` (``img``) and old ones also by ``source`` (``$image``). The value is a URL or a path on the
Label Studio server (``/data/upload/…``, ``/data/local-files/?d=…``); the client resolves and fetches it.
The task is fetched once, and only when an image is actually needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from processors.errors import Permanent
from processors.fetch import redact_url
from processors.source_images import SourceImage, not_fetched, store_image
from processors.vendors.labelstudio.labels import image_fields

if TYPE_CHECKING:
    from processors.store import JobWriter
    from processors.vendors.labelstudio.api import LabelStudioClient


class TaskImages:
    """The images of one task, by the name results use for them (``to_name``)."""

    def __init__(self, client: LabelStudioClient, task_id: str, label_config: str | None) -> None:
        self._client = client
        self._task_id = task_id
        self._fields = image_fields(label_config)
        self._data: dict[str, Any] | None = None
        #: Images whose size had to be read from the file (old results): to_name → URL without query.
        self.sized: dict[str, str] = {}

    def url(self, image: str, source: str | None = None) -> str:
        """The URL or server path of image ``image``; `Permanent` naming what is missing."""
        field = (source or "").removeprefix("$") or self._fields.get(image)
        data = self._task_data()
        if not field and len(data) == 1:
            field = next(iter(data))  # a one-field task: that field is the image
        value = data.get(field) if field else None
        if isinstance(value, list):
            raise Permanent(f"image {image!r}: task data {field!r} is a list of images (not supported)")
        if not isinstance(value, str) or not value.strip():
            raise Permanent(f"image {image!r}: the task's data has no URL for it (field {field!r})")
        return value.strip()

    def size(self, image: str, source: str | None) -> tuple[int, int]:
        """For results without ``original_width/height``: the size from the image file's header."""
        url = self.url(image, source)
        self.sized[image] = url.split("?", 1)[0] if url.startswith("/") else redact_url(url)
        return self._client.image_size(url)

    def store(self, frame: int, image: str, out: JobWriter) -> SourceImage:
        """Copy image ``image`` into ``images/<frame>.<ext>``; a missing or unfetchable image is reported."""
        try:
            url = self.url(image)
        except Permanent as exc:
            return not_fetched(frame, exc.reason)
        return store_image(frame, lambda: self._client.open_image(url), out, hint=url.split("?", 1)[0])

    def _task_data(self) -> dict[str, Any]:
        if self._data is None:
            data = self._client.task(self._task_id).get("data")
            self._data = data if isinstance(data, dict) else {}
        return self._data
