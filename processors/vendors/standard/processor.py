"""Standard Webhooks sources: the callback itself is the result; store it as `callback.json`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from processors.vendors.base import Processor

if TYPE_CHECKING:
    from processors.delivery import Delivery
    from processors.store import JobWriter


class StandardProcessor(Processor):
    """Stores the verified callback body byte for byte."""

    def process(self, delivery: Delivery, out: JobWriter) -> dict[str, Any]:
        out.write("callback.json", delivery.body, "application/json")
        return {}
