"""uvicorn's httptools protocol with the limits it lacks: request-head size, request time, JSON errors.

httptools (llhttp) buffers headers without any bound — 50 MB of headers were accepted and held in
memory — and a client dribbling bytes keeps a connection (and a `--limit-concurrency` slot) forever,
because every byte resets uvicorn's keep-alive timer. This subclass adds:

- a cap on the request line + headers (``max_head_bytes``, default 64 KiB): 431, then close;
- a deadline for the whole request to arrive (``request_seconds``): before the head is complete the
  client gets 408; after it, the connection is closed and the app sees a disconnect (the intake then
  stores nothing). The deadline ends when the body is complete, so an enqueue is never interrupted;
- JSON bodies, in the service's error format, for what uvicorn answers itself: the 400 for an
  unparsable request and the 503 over `--limit-concurrency` (uvicorn's own are `text/plain`).

It relies on three uvicorn internals (`send_400_response`, `_start_asgi_task`, the parser callbacks);
`tests/test_bad_input_matrix.py` pins the behaviour so an upgrade that moves them fails loudly.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from typing import Any

from uvicorn.protocols.http.flow_control import service_unavailable
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from receiver.errors import json_messages

MAX_HEAD_BYTES = 64 * 1024
REQUEST_SECONDS = 30.0  # the PaaS router's own request timeout: a slower request is already lost


def _raw_response(status: int, reason: str, code: str, detail: str) -> bytes:
    body = json.dumps({"error": code, "detail": detail}, separators=(",", ":")).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


async def _json_service_unavailable(scope: Any, receive: Any, send: Any) -> None:
    body = b'{"error":"overloaded","detail":"too many concurrent requests; retry later"}'
    for message in json_messages(503, body, close=True, headers=((b"retry-after", b"1"),)):
        await send(message)


class _Deadlines:
    """One timer per event loop that expires request deadlines, instead of a timer per request.

    Arming a `call_later` handle for each request and cancelling it when the request completes cost
    ~5% of ingest throughput (bench/ingest.py); a connection now only stamps its deadline, and this
    sweep — a few times per deadline period — closes the ones that passed it.
    """

    _by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Deadlines] = weakref.WeakKeyDictionary()

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.connections: set[BoundedHttpTools] = set()
        self.interval = 1.0
        self._timer: asyncio.TimerHandle | None = None

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> _Deadlines:
        sweeper = cls._by_loop.get(loop)
        if sweeper is None:
            sweeper = cls._by_loop[loop] = cls(loop)
        return sweeper

    def add(self, connection: BoundedHttpTools) -> None:
        self.connections.add(connection)
        self.interval = min(self.interval, connection.request_seconds / 5)
        if self._timer is None:
            self._timer = self.loop.call_later(self.interval, self._sweep)

    def discard(self, connection: BoundedHttpTools) -> None:
        self.connections.discard(connection)

    def _sweep(self) -> None:
        self._timer = None
        now = self.loop.time()
        for connection in [c for c in self.connections if c.deadline is not None and c.deadline <= now]:
            connection.deadline = None
            connection._timed_out()
        if self.connections:
            self._timer = self.loop.call_later(self.interval, self._sweep)


class BoundedHttpTools(HttpToolsProtocol):
    """`HttpToolsProtocol` plus a head-size cap, a request deadline and JSON for its own errors."""

    max_head_bytes = MAX_HEAD_BYTES
    request_seconds = REQUEST_SECONDS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._chunk_bytes = 0
        self._heads = 0  # heads completed on this connection
        self.deadline: float | None = None  # loop time by which the current request must be in
        self._deadlines = _Deadlines.of(self.loop)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadlines.add(self)
        self._arm()  # an idle new connection is not yet covered by uvicorn's keep-alive timer

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._deadlines.discard(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # The cap is checked on raw bytes, and only when this read could take the head past it: no
        # Python callback per header line on the hot path (a per-header hook cost ~30% of throughput).
        if self._in_head and self._chunk_bytes + len(data) > self.max_head_bytes:
            end = data.find(b"\r\n\r\n")
            head = self._chunk_bytes + (len(data) if end < 0 else end + 4)
            if head > self.max_head_bytes:
                self._reject(431, "Request Header Fields Too Large", "headers_too_large", self._too_large)
                return
        was_in_head, heads = self._in_head, self._heads
        super().data_received(data)
        # A head spread over several reads is counted read by read; a read that also completed a
        # head (and maybe a whole request) was checked above.
        if was_in_head and self._in_head and heads == self._heads:
            self._chunk_bytes += len(data)

    @property
    def _too_large(self) -> str:
        return f"request line and headers exceed {self.max_head_bytes} bytes"

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        if self.deadline is None:
            self._arm()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._chunk_bytes = 0
        self._heads += 1
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self._in_head = True  # whatever follows on this connection is the next request's head
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        self._disarm()
        self.transport.write(_raw_response(400, "Bad Request", "bad_request", msg))
        self.transport.close()

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        if app is service_unavailable:
            app = _json_service_unavailable
        super()._start_asgi_task(cycle, app)

    def _arm(self) -> None:
        self.deadline = self.loop.time() + self.request_seconds

    def _disarm(self) -> None:
        self.deadline = None

    def _timed_out(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        if self._in_head and (self.cycle is None or self.cycle.response_complete):
            self._reject(
                408,
                "Request Timeout",
                "request_timeout",
                f"request not received within {self.request_seconds:g} s",
            )
            return
        self.transport.close()  # mid-body: the app sees a disconnect and stores nothing

    def _reject(self, status: int, reason: str, code: str, detail: str) -> None:
        self._disarm()
        self.logger.warning("rejected request: %s", code)
        self.transport.write(_raw_response(status, reason, code, detail))
        self.transport.close()
