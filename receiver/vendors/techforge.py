"""TechForge sources take no callbacks: the vendor has no webhooks, so every POST is refused with 404.

Its jobs reach the queue only through polling (`labelhook poll`, the poller in `work`/`run`). A
source with nothing to verify must not accept anything: a hook that answered 2xx would let anyone
inject "finished" jobs.
"""

from __future__ import annotations

from receiver.errors import NotFound
from receiver.vendors.base import Callback, IncomingRequest, VendorAdapter


class TechForgeAdapter(VendorAdapter):
    vendor = "techforge"

    def verify(self, request: IncomingRequest, now: float) -> Callback:
        raise NotFound(
            f"source {self.source.name!r} (techforge) takes no callbacks: its jobs are polled",
            code="callbacks_not_supported",
        )
