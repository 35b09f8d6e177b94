"""HTTP errors of the receiver; one handler turns each into `{"error": code, "detail": ...}`.

ReceiverError(status_code, code)
├── BadRequest         400 malformed body or headers
├── Unauthorized       401 missing, bad or stale signature or token
├── NotFound           404 unknown source or route
├── MethodNotAllowed   405
├── PayloadTooLarge    413
├── UnsupportedMedia   415 not JSON where JSON is required
└── Unavailable        503 the queue cannot make the delivery durable; the vendor will retry
"""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import Message


class ReceiverError(Exception):
    status_code = 500
    code = "internal_error"

    def __init__(self, detail: str, *, code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code

    def response(self, headers: dict[str, str] | None = None) -> JSONResponse:
        return error_response(self.status_code, self.code, self.detail, headers)


class BadRequest(ReceiverError):
    status_code, code = 400, "bad_request"


class Unauthorized(ReceiverError):
    status_code, code = 401, "unauthorized"


class NotFound(ReceiverError):
    status_code, code = 404, "not_found"


class MethodNotAllowed(ReceiverError):
    status_code, code = 405, "method_not_allowed"


class PayloadTooLarge(ReceiverError):
    status_code, code = 413, "payload_too_large"


class UnsupportedMedia(ReceiverError):
    status_code, code = 415, "unsupported_media_type"


class Unavailable(ReceiverError):
    status_code, code = 503, "unavailable"


def error_response(
    status: int, code: str, detail: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


def json_messages(
    status: int, body: bytes, *, close: bool = False, headers: tuple[tuple[bytes, bytes], ...] = ()
) -> tuple[Message, Message]:
    """The two raw ASGI messages of a JSON response, for code below Starlette's Response objects
    (the intake, the body-limit middleware, the HTTP protocol's own 503). ``close`` ends the
    connection after it (the rest of the request is not read)."""
    head = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body)), *headers]
    if close:
        head.append((b"connection", b"close"))
    return (
        {"type": "http.response.start", "status": status, "headers": head},
        {"type": "http.response.body", "body": body},
    )
