"""The callback intake: `POST /hooks/{source}` as a pure ASGI handler in front of the Starlette app.

This is the one hot path of the service: vendors retry when it is slow, and a burst of job
completions must be acknowledged fast, and only once durable. It therefore skips what Starlette's
stack does per request (Request object, router scan, exception-middleware wrappers) and does exactly
the contract's steps: find the source, cap the body while it streams, check the content type, let the
vendor adapter verify, record the headers (secrets redacted, `receiver.header_record`), enqueue durably
(group commit), answer. Every other route, and every other
method on `/hooks/…` (405), goes to the Starlette app behind it, so both speak the same JSON errors.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from itertools import count
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

from processors.delivery import Delivery
from processors.metrics import IntakeCounters
from processors.queue import Queue, QueueUnavailable
from receiver.errors import (
    NotFound,
    PayloadTooLarge,
    ReceiverError,
    Unavailable,
    UnsupportedMedia,
    json_messages,
)
from receiver.header_record import HeaderRecorder
from receiver.vendors import IncomingRequest, VendorAdapter

log = logging.getLogger("labelhook.receiver")
PREFIX = "/hooks/"


def _dump(payload: dict[str, object]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def _ack(delivery_id: str, duplicate: bool) -> bytes:
    """The acknowledgement body. Formatted directly — a tenth of `json.dumps` on the hot path — since
    delivery ids are our own hex strings; anything else still goes through the encoder."""
    if not delivery_id.isalnum():
        return _dump({"delivery_id": delivery_id, "duplicate": duplicate})
    return b'{"delivery_id":"%s","duplicate":%s}' % (delivery_id.encode(), b"true" if duplicate else b"false")


class _Ids:
    """Delivery ids: millisecond time, a per-process random tag and a counter — no syscall per id.

    32 hex digits like `new_delivery_id`, sortable by arrival, unique across processes (48 random bits
    per process) and within one (a 32-bit counter).
    """

    def __init__(self) -> None:
        self._tag = os.urandom(6).hex()
        self._counter = count()

    def __call__(self) -> str:
        return f"{int(time.time() * 1000):012x}{self._tag}{next(self._counter) & 0xFFFFFFFF:08x}"


def _is_json(content_type: str | None) -> bool:
    if content_type == "application/json":  # what nearly every vendor sends: no parsing needed
        return True
    if content_type is None:
        return True  # absent: try to parse; the adapter answers 400 if it is not JSON
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def _source_name(path: str) -> str:
    """``/hooks/<source>`` or ``/hooks/<source>/``: super.AI documents callback URLs with a trailing
    slash, other vendors without, so both reach the same source (one slash only: ``a//`` is no name)."""
    name = path[len(PREFIX) :]
    return name[:-1] if name.endswith("/") else name


class Intake:
    """Pure ASGI: handles `POST /hooks/<source>[/]`, passes everything else to ``app``."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        adapters: Mapping[str, VendorAdapter],
        queue: Queue,
        max_body_bytes: int,
        clock: Callable[[], float] = time.time,
        counters: IntakeCounters | None = None,
    ) -> None:
        self.app = app
        self.adapters = adapters
        self.queue = queue
        self.max_body_bytes = max_body_bytes
        self.clock = clock
        self.new_id = _Ids()
        # One recorder per source: each knows its adapter's secret headers (a configured token header).
        self.recorders = {name: HeaderRecorder(a.secret_headers()) for name, a in adapters.items()}
        # Plain ints, read by /metrics at scrape time: no lock on the hot path.
        self.counters = counters if counters is not None else IntakeCounters(adapters)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        try:
            status, body = await self._intake(scope, receive)
        except ReceiverError as exc:
            status, body = exc.status_code, _dump({"error": exc.code, "detail": exc.detail})
            self.counters.reject(_source_name(scope["path"]), exc.code)
            if status == 401:
                log.info("rejected", extra={"path": scope["path"], "reason": exc.code})
        except _Disconnected:
            return  # the vendor hung up before sending its body: nothing to answer, nothing stored
        except Exception:  # never a traceback to the vendor
            log.exception("unhandled error", extra={"path": scope["path"]})
            self.counters.reject(_source_name(scope["path"]), "internal_error")
            status, body = 500, _dump({"error": "internal_error", "detail": "internal error"})
        # After a 413 the rest of the oversized body is not read: close the connection.
        start, content = json_messages(status, body, close=status == 413)
        await send(start)
        await send(content)
        if status < 300:
            self.counters.observe_ack(time.perf_counter() - started)

    async def _intake(self, scope: Scope, receive: Receive) -> tuple[int, bytes]:
        name = _source_name(scope["path"])
        adapter = self.adapters.get(name)
        counters = self.counters
        counters.received[counters.source(name)] += 1
        if adapter is None:
            raise NotFound(f"no source named {name!r}", code="unknown_source")
        headers: dict[str, str] = {}
        for key, value in scope["headers"]:
            headers.setdefault(key.decode("latin-1"), value.decode("latin-1"))
        # The source is known from the path before a byte of body is read: its own cap applies
        # (Label Studio sends whole brush annotations), else the global one.
        cap = adapter.source.max_body_bytes or self.max_body_bytes
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > cap:
            raise PayloadTooLarge(f"request body exceeds {cap} bytes")
        if not _is_json(headers.get("content-type")):
            raise UnsupportedMedia("callbacks must be application/json")
        body = await self._read_body(receive, cap)
        query_string = scope.get("query_string", b"")
        query = dict(parse_qsl(query_string.decode("latin-1"))) if query_string else {}
        now = self.clock()
        callback = adapter.verify(IncomingRequest(headers, query, body), now)
        counters.verified[name] += 1
        if not callback.enqueue:
            return 200, _dump({"delivery_id": None, "duplicate": False, "queued": False})
        delivery = Delivery(
            id=self.new_id(),
            source=name,
            vendor=adapter.source.vendor,
            dedupe_key=callback.dedupe_key,
            job_id=callback.job_id,
            project=callback.project,
            body=body if callback.signed_body is None else callback.signed_body,
            received_at=now,
            state=callback.state,
            kind=callback.kind,
            # After verification: what the delivery page shows of the request, secrets redacted.
            meta={**callback.meta, "headers": self.recorders[name](headers)},
        )
        try:
            result = await self.queue.enqueue(delivery)
        except QueueUnavailable as exc:
            log.error("enqueue failed", extra={"source": name, "error": str(exc)})
            raise Unavailable("queue unavailable; retry later", code="queue_unavailable") from exc
        return (200 if result.duplicate else 202), _ack(result.delivery_id, result.duplicate)

    async def _read_body(self, receive: Receive, cap: int) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > cap:
                raise PayloadTooLarge(f"request body exceeds {cap} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class _Disconnected(Exception):
    pass
