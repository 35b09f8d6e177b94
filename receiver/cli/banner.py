"""What `labelhook run` tells the person at the terminal once it is up: where to look."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import TextIO

import httpx

from processors.config import Settings
from processors.store import Store


def banner(url: str, settings: Settings, store: Store, *, demo_token: str | None = None) -> str:
    """The lines `run` prints: web, dashboard (and how to log in), outputs, queue."""
    if settings.dashboard_token is None:
        dashboard = "off: set LABELHOOK_DASHBOARD_TOKEN to turn it on"
    elif demo_token is not None:
        dashboard = f"{url}/dashboard  (log in with the token {demo_token}, made for this run)"
    else:
        dashboard = f"{url}/dashboard  (log in with LABELHOOK_DASHBOARD_TOKEN)"
    return (
        "\nlabelhook is running (Ctrl-C stops it)\n"
        f"  callbacks  {url}/hooks/<source>   sources: {', '.join(settings.sources)}\n"
        f"  dashboard  {dashboard}\n"
        f"  outputs    {store.describe()}\n"
        f"  queue      {settings.queue_url}\n"
        f"  metrics    {url}/metrics\n"
    )


async def announce(
    url: str,
    settings: Settings,
    store: Store,
    *,
    demo_token: str | None = None,
    stream: TextIO | None = None,
    timeout: float = 30.0,
) -> None:
    """Print the banner once the server answers `/healthz` (not before: the URL must work)."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=url, timeout=2.0) as client:
        while True:
            try:
                if (await client.get("/healthz")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                return
            await asyncio.sleep(0.1)
    out = stream or sys.stdout
    out.write(banner(url, settings, store, demo_token=demo_token))
    out.flush()
