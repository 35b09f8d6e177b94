"""`RequestLimit`: at most N requests in the app at once; above it a JSON 503, except for `/healthz`.

uvicorn's own ``--limit-concurrency`` counts open *connections* as well as requests, so a client
holding idle keep-alive sockets (130 of them, at no cost) made every request, `/healthz` included,
answer 503. Counting here, in the app, counts only requests that are actually being served; idle
connections are bounded separately by the protocol (`receiver.protocol`: short idle deadline, and the
oldest idle connections closed when there are too many).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from receiver.errors import json_messages

#: Answered whatever the load: the platform's liveness probe must not restart a busy instance.
EXEMPT_PATHS = frozenset({"/healthz"})
_BODY = b'{"error":"overloaded","detail":"too many concurrent requests; retry later"}'


class RequestLimit:
    """Pure ASGI: admits at most ``limit`` concurrent HTTP requests (None = unlimited)."""

    def __init__(self, app: ASGIApp, limit: int | None) -> None:
        self.app = app
        self.limit = limit
        self.active = 0  # one event loop per process: a plain counter, no lock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.limit is None or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        if self.active >= self.limit:
            for message in json_messages(503, _BODY, close=True, headers=((b"retry-after", b"1"),)):
                await send(message)
            return
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1
