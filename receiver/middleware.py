"""Pure ASGI middleware: the request body cap, enforced before and while the body streams in.

A declared Content-Length over the cap is refused before a byte of the body is read. A chunked or
lying body is counted as it arrives and refused the moment it passes the cap, so an attacker cannot
make us buffer more than ``max_body_bytes``. The 413 is sent from here as JSON; handlers never see it.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from receiver.errors import json_messages


class _BodyTooLarge(Exception):
    pass


def _json_413(limit: int) -> tuple[Message, Message]:
    body = json.dumps(
        {"error": "payload_too_large", "detail": f"request body exceeds {limit} bytes"}
    ).encode()
    return json_messages(413, body, close=True)


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body_bytes
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > limit:
                    for message in _json_413(limit):
                        await send(message)
                    return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                for message in _json_413(limit):
                    await send(message)
