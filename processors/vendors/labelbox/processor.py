"""Labelbox: a created/updated label → its export row, mask PNGs, masks/, labelmap.json, COCO.

The webhook is a hint: the worker exports the label's data row afresh (`LabelboxClient.export_row`),
so an out-of-order or replayed webhook still yields the label as it is now. The row is stored as
``result.json`` byte for byte; each distinct mask URL is streamed once to ``media/`` and decoded from
there, one frame at a time (`processors.vendors.labelbox.export` says what is drawn, in which order).
Composite-mask URLs stop working 30 days after the export that issued them: a 403/404 on a mask is a
dead letter that says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import IO, TYPE_CHECKING, Any, cast

from processors.errors import Permanent
from processors.fetch import HTTPStatusPermanent, redact_url
from processors.vendors.base import Processor
from processors.vendors.labelbox.api import LabelboxClient
from processors.vendors.labelbox.options import DEFAULT_API_URL, LabelboxOptions

if TYPE_CHECKING:
    from processors.config import Settings, SourceConfig
    from processors.delivery import Delivery
    from processors.fetch import Fetcher
    from processors.masks.decode import FrameMasks
    from processors.source_images import SourceImage
    from processors.store import JobWriter
    from processors.vendors.labelbox.export import LabelFrames

EXPIRED_STATUSES = frozenset({403, 404, 410})
_CONTENT_TYPES = {".png": "image/png", ".json": "application/json"}


class LabelboxProcessor(Processor):
    """Processes ``LABEL_CREATED`` / ``LABEL_UPDATED`` webhooks of one Labelbox organisation."""

    def __init__(
        self,
        source: SourceConfig,
        settings: Settings,
        *,
        fetcher: Fetcher | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(source, settings, fetcher=fetcher)
        self.options = LabelboxOptions.of(source)
        self._sleep = sleep
        self._clock = clock

    def client(self) -> LabelboxClient:
        if self.source.api_key is None:
            raise Permanent("Labelbox API_KEY is not configured")
        return LabelboxClient(
            self.fetcher,
            self.source.api_url or DEFAULT_API_URL,
            self.source.api_key.reveal(),
            sleep=self._sleep,
            clock=self._clock,
        )

    def process(self, delivery: Delivery, out: JobWriter) -> dict[str, Any]:
        from processors.vendors.labelbox.export import find_label, label_frames

        out.write("callback.json", delivery.body, "application/json")
        data_row_id = delivery.meta.get("data_row_id")
        project_id = delivery.meta.get("project_id")
        if not isinstance(data_row_id, str) or not isinstance(project_id, str):
            raise Permanent("Labelbox delivery names no data row and project (not a label webhook)")
        client = self.client()
        raw, row = client.export_row(
            project_id,
            data_row_id,
            interval=self.options.export_poll_seconds,
            timeout=self.options.export_timeout_seconds,
        )
        out.write("result.json", raw + b"\n", "application/json")
        label = find_label(row, project_id, delivery.job_id)
        parsed = label_frames(row, label)
        extra: dict[str, Any] = {
            "labelbox": {
                "event": delivery.meta.get("event"),
                "data_row_id": data_row_id,
                "project_id": project_id,
                "frames": len(parsed.frames),
                "objects": len(parsed.labelmap.segments),
                "skipped": parsed.skipped,
            }
        }
        if parsed.frames:
            media = self._download_masks(client, parsed, out)
            extra["labelbox"]["media"] = sorted(media.values())
            extra["segmentation"] = self._write_masks(row, parsed, media, out, extra["labelbox"])
        return extra

    def _download_masks(self, client: LabelboxClient, parsed: LabelFrames, out: JobWriter) -> dict[str, str]:
        """Stream every distinct mask URL to ``media/mask-<n>.png``; URL → stored name."""
        media: dict[str, str] = {}
        for frame in parsed.frames.values():
            for obj in frame:
                if obj.url is None or obj.url in media:
                    continue
                name = f"media/mask-{len(media) + 1}.png"
                try:
                    with client.open_mask(obj.url) as stream:
                        out.write_stream(name, cast("IO[bytes]", stream), "image/png")
                except HTTPStatusPermanent as exc:
                    if exc.status in EXPIRED_STATUSES:
                        raise Permanent(
                            f"Labelbox mask {redact_url(obj.url)} answered {exc.status}: mask URLs expire "
                            "30 days after the export that issued them (or the API key lost access); "
                            "replay the delivery to export the label again"
                        ) from exc
                    raise Permanent(f"Labelbox mask {redact_url(obj.url)}: {exc.reason}") from exc
                media[obj.url] = name
        return media

    def _source_images(
        self, row: Mapping[str, Any], parsed: LabelFrames, out: JobWriter
    ) -> dict[int, SourceImage]:
        """An image data row's ``row_data`` (its image URL), fetched without the API key; a video's
        frames are not extracted."""
        from processors.source_images import not_fetched, store_image

        if not self.source.fetch_images:
            return {frame: not_fetched(frame, "FETCH_IMAGES=0") for frame in parsed.frames}
        if parsed.video:
            return {
                frame: not_fetched(frame, "a video data row: frames are not extracted")
                for frame in parsed.frames
            }
        data_row = row.get("data_row")
        url = data_row.get("row_data") if isinstance(data_row, Mapping) else None
        if not isinstance(url, str) or not url.strip().lower().startswith(("http://", "https://")):
            return {0: not_fetched(0, "the data row's row_data is not an image URL")}
        url = url.strip()
        return {0: store_image(0, lambda: self.fetcher.open_stream(url), out, hint=url)}

    def _write_masks(
        self,
        row: Mapping[str, Any],
        parsed: LabelFrames,
        media: dict[str, str],
        out: JobWriter,
        notes: dict[str, Any],
    ) -> dict[str, Any]:
        import numpy as np

        from processors.masks.decode import measure_instances, read_rgba
        from processors.masks.segmentation import write_frame_masks
        from processors.vendors.labelbox.export import paint_composite, paint_shape, paint_single

        unknown: dict[str, int] = {}

        def rendered() -> Iterator[tuple[int, FrameMasks]]:
            # One frame's arrays at a time; each mask PNG is read back from media/ when needed.
            for number, objects in parsed.frames.items():
                decoded = {
                    url: self._read_mask(out, media[url], read_rgba)
                    for url in dict.fromkeys(o.url for o in objects if o.url is not None)
                }
                size = _frame_size(decoded, parsed.size, number)
                if size[0] * size[1] > self.settings.max_pixels:
                    raise Permanent(
                        f"frame {number} is {size[0]}x{size[1]} pixels, "
                        f"over the limit of {self.settings.max_pixels}"
                    )
                instances = np.zeros((size[1], size[0]), dtype=np.uint16)
                for url, rgba in decoded.items():
                    composite = [o for o in objects if o.url == url and o.kind == "composite_mask"]
                    if composite:
                        for colour, count in paint_composite(instances, rgba, composite).items():
                            unknown[colour] = unknown.get(colour, 0) + count
                for obj in objects:
                    if obj.kind == "mask" and obj.url is not None:
                        paint_single(instances, decoded[obj.url], obj.number)
                    elif obj.kind in ("bounding_box", "polygon"):
                        paint_shape(instances, obj)
                yield number, measure_instances(instances, parsed.labelmap)

        summary = write_frame_masks(
            parsed.labelmap,
            rendered(),
            lambda key, data: out.write(key, data, _content_type(key)),
            images=self._source_images(row, parsed, out),
        )
        notes["unknown_colors"] = dict(sorted(unknown.items()))
        return summary.as_json()

    def _read_mask(self, out: JobWriter, name: str, read_rgba: Callable[..., Any]) -> Any:
        try:
            return read_rgba(out.store.get(out.key(name)), max_pixels=self.settings.max_pixels)
        except Permanent as exc:
            raise Permanent(f"Labelbox {name}: {exc.reason}") from exc


def _frame_size(decoded: dict[str, Any], media: tuple[int, int] | None, number: int) -> tuple[int, int]:
    """(width, height) of a frame: its masks' (all equal), else the row's media attributes."""
    sizes = {(int(rgba.shape[1]), int(rgba.shape[0])) for rgba in decoded.values()}
    if len(sizes) > 1:
        raise Permanent(f"Labelbox masks of frame {number} differ in size: {sorted(sizes)}")
    if sizes:
        size = sizes.pop()
        if media is not None and size != media:
            raise Permanent(
                f"Labelbox mask of frame {number} is {size[0]}x{size[1]}, "
                f"but the data row's media is {media[0]}x{media[1]}"
            )
        return size
    if media is None:
        raise Permanent(
            f"Labelbox frame {number} has only vector shapes "
            "and the export gives no media_attributes width/height"
        )
    return media


def _content_type(key: str) -> str:
    return next((t for ext, t in _CONTENT_TYPES.items() if key.endswith(ext)), "application/octet-stream")
