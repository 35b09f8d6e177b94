"""Who may use the dashboard: the ``LABELHOOK_DASHBOARD_TOKEN`` credentials, sessions and CSRF.

Credentials: `Authorization: Bearer <token>`, HTTP Basic with the token as password, or the session
cookie set by the login form. The cookie never holds the token: it is ``<issued>-<nonce>.<hmac>``,
keyed by a key derived from the token, so rotating the token logs every session out. Every comparison
is constant-time. State-changing requests (replay, logout) refuse a cross-origin ``Origin`` and, when
the credential is one a browser sends by itself (cookie, Basic), need the session's CSRF token too.
Without a configured token none of these routes exist (404).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from processors.config import Secret
from receiver.errors import ReceiverError, Unauthorized

COOKIE = "labelhook_session"
SESSION_SECONDS = 12 * 3600


class DashboardUnauthorized(Unauthorized):
    def response(self, headers: dict[str, str] | None = None) -> Any:
        return super().response({"WWW-Authenticate": 'Bearer realm="labelhook"', **(headers or {})})


class Forbidden(ReceiverError):
    status_code, code = 403, "forbidden"


@dataclass(frozen=True)
class Identity:
    """How a request authenticated; ``session`` keys its CSRF token ("" for a bearer token)."""

    kind: str  # "bearer", "basic" or "cookie"
    session: str


class DashboardAuth:
    """Checks dashboard credentials; issues session cookies and CSRF tokens (stateless, HMAC)."""

    def __init__(self, token: Secret, *, clock: Callable[[], float] = time.time) -> None:
        self._token = token.reveal().encode()
        self._key = hashlib.sha256(b"labelhook-dashboard\0" + self._token).digest()
        self.clock = clock

    def _mac(self, purpose: str, value: str) -> str:
        return hmac.new(self._key, f"{purpose}\0{value}".encode(), hashlib.sha256).hexdigest()

    def check_token(self, candidate: str) -> bool:
        return hmac.compare_digest(candidate.encode(), self._token)

    def new_session(self) -> str:
        session = f"{int(self.clock())}-{secrets.token_urlsafe(16)}"
        return f"{session}.{self._mac('session', session)}"

    def csrf_token(self, identity: Identity) -> str:
        return self._mac("csrf", identity.session)

    def identify(self, request: Request) -> Identity | None:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            return Identity("bearer", "") if self.check_token(value.strip()) else None
        if scheme.lower() == "basic":
            try:
                _, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return None
            return Identity("basic", "basic") if self.check_token(password) else None
        session, _, mac = request.cookies.get(COOKIE, "").partition(".")
        if not session or not hmac.compare_digest(mac.encode(), self._mac("session", session).encode()):
            return None
        issued = session.split("-", 1)[0]
        if not issued.isdigit() or self.clock() - int(issued) > SESSION_SECONDS:
            return None
        return Identity("cookie", session)

    def require(self, request: Request, *, unsafe: bool = False, csrf: str | None = None) -> Identity:
        """The caller's identity, or raise 401; for ``unsafe`` requests also check origin and CSRF."""
        identity = self.identify(request)
        if identity is None:
            raise DashboardUnauthorized(
                "dashboard credentials required: Authorization Bearer <token>, Basic with the token "
                "as password, or log in at /dashboard/login",
                code="unauthorized",
            )
        if unsafe:
            check_origin(request)
            if identity.kind != "bearer" and not hmac.compare_digest(
                (csrf or "").encode(), self.csrf_token(identity).encode()
            ):
                raise Forbidden("missing or bad CSRF token", code="csrf_failed")
        return identity


def check_origin(request: Request) -> None:
    """Refuse a browser request sent from another origin (the cookie is SameSite=Strict as well)."""
    origin = request.headers.get("origin")
    own = f"{request.url.scheme}://{request.headers.get('host', '')}"
    if origin is not None and origin != own:
        raise Forbidden("cross-origin request refused", code="cross_origin")
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        raise Forbidden("cross-site request refused", code="cross_origin")
