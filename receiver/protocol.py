"""uvicorn's httptools protocol with the limits it lacks: head size, idle and request time, JSON errors.

httptools (llhttp) buffers headers without any bound — 50 MB of headers were accepted and held in
memory — and a client dribbling bytes keeps a connection (and a `--limit-concurrency` slot) forever,
because every byte resets uvicorn's keep-alive timer. This subclass adds:

- a cap on the request line + headers (``max_head_bytes``, default 64 KiB): 431, then close;
- a deadline for the whole request to arrive (``request_seconds``): before the head is complete the
  client gets 408; after it, the connection is closed and the app sees a disconnect (the intake then
  stores nothing). The deadline ends when the body is complete, so an enqueue is never interrupted;
- an idle deadline (``idle_seconds``, 5 s): a connection that has sent nothing since it opened, or
  since its last response, is closed — uvicorn's keep-alive timer only starts after a first response;
- a cap on open connections (``max_connections``): past it, a new connection closes the oldest idle
  ones, so idle sockets can never lock out real requests (nor `/healthz`). Requests themselves are
  limited in the app (`receiver.request_limit`), not by uvicorn's ``--limit-concurrency``, which
  counts idle connections as load;
- a JSON body, in the service's error format, for the 400 uvicorn answers an unparsable request with.

These are limits, not speed-ups: uvicorn has no public setting for a head cap or a request deadline
under httptools (``h11_max_incomplete_event_size`` exists for h11 only, at a third of the throughput).
It relies on two uvicorn internals (`send_400_response`, the parser callbacks), so `pyproject.toml`
pins uvicorn to the tested minor range and `tests/test_bad_input_matrix.py` / `tests/hostile/` pin the
behaviour so an upgrade that moves them fails loudly.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD_BYTES = 64 * 1024
REQUEST_SECONDS = 30.0  # the PaaS router's own request timeout: a slower request is already lost
IDLE_SECONDS = 5.0  # uvicorn's keep-alive default; also for a new connection that sends nothing
#: Open connections per process before idle ones are closed for new ones (a few fds each under the
#: default `ulimit -n` of 1024, with room for the queue, store and fetch sockets).
MAX_CONNECTIONS = 512


def _raw_response(status: int, reason: str, code: str, detail: str) -> bytes:
    body = json.dumps({"error": code, "detail": detail}, separators=(",", ":")).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


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
        self.interval = min(self.interval, connection.request_seconds / 5, connection.idle_seconds / 5)
        if len(self.connections) > connection.max_connections:
            self._evict_idle(len(self.connections) - connection.max_connections, keep=connection)
        if self._timer is None:
            self._timer = self.loop.call_later(self.interval, self._sweep)

    def discard(self, connection: BoundedHttpTools) -> None:
        self.connections.discard(connection)

    def _evict_idle(self, count: int, keep: BoundedHttpTools) -> None:
        """Close up to ``count`` idle connections: kept-alive ones first (uvicorn's keep-alive timer
        holds them; no deadline here), then new ones, earliest deadline first."""
        idle = sorted(
            (c for c in self.connections if c is not keep and c.idle),
            key=lambda c: c.deadline or 0.0,
        )
        for connection in idle[:count]:
            connection.deadline = None
            connection.transport.close()

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
    idle_seconds = IDLE_SECONDS
    max_connections = MAX_CONNECTIONS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._chunk_bytes = 0
        self._heads = 0  # heads completed on this connection
        self.deadline: float | None = None  # loop time by which the current request must be in
        self._deadlines = _Deadlines.of(self.loop)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.idle_seconds)  # not covered by uvicorn's keep-alive timer until a response
        self._deadlines.add(self)

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

    @property
    def idle(self) -> bool:
        """Between requests: nothing of a next request received, the last response sent."""
        return (
            self._in_head and self._chunk_bytes == 0 and (self.cycle is None or self.cycle.response_complete)
        )

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._arm(self.request_seconds)  # from the first byte: the whole request, head and body

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

    def _arm(self, seconds: float) -> None:
        self.deadline = self.loop.time() + seconds

    def _disarm(self) -> None:
        self.deadline = None

    def _timed_out(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        if self.idle:
            self.transport.close()  # idle: nothing to answer (uvicorn's keep-alive timeout does the same)
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
