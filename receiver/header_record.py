"""What the delivery page shows of a callback's request headers: names and values, secrets redacted.

The intake records the verified request's headers in the delivery's ``meta["headers"]`` (serialised
into the queue record's head), so an on-call engineer can see what a vendor sent: content type, user
agent, event and delivery-id headers. Credentials never reach the queue: values of the standard
credential headers, of any header whose name looks secret-bearing, and of every header an adapter
reads a secret from (`VendorAdapter.secret_headers`, e.g. a configured Label Studio ``TOKEN_HEADER``)
are replaced by ``(redacted)``. The record is bounded (`MAX_HEADERS`, `MAX_VALUE`) so a hostile
request with many or huge headers cannot bloat every queue row it lands in.

This runs on the intake's hot path, once per enqueued callback: one pass over a dict of usually ten
or so headers, with a per-name verdict cached (vendors send the same names every time).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

REDACTED = "(redacted)"
MAX_HEADERS = 32
MAX_VALUE = 256
_ELLIPSIS = "…"
#: Credential-bearing header names by pattern: signatures, tokens, API keys, auth schemes, secrets.
_SECRET_NAME = re.compile(r"signature|token|key|auth|secret|cookie|password|credential", re.I)
#: Always secret whatever the pattern says (the usual credential headers of HTTP itself).
ALWAYS_SECRET = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
_CACHE_LIMIT = 4096  # distinct header names remembered; a flood of random names cannot grow it further


class HeaderRecorder:
    """Turns a request's headers into the bounded, redacted dict stored with the delivery."""

    def __init__(self, secret_names: Iterable[str] = ()) -> None:
        self._secret = ALWAYS_SECRET | {n.strip().lower() for n in secret_names}
        self._verdicts: dict[str, bool] = {}

    def is_secret(self, name: str) -> bool:
        """Whether the value of header ``name`` (lower case, as ASGI gives it) must not be stored."""
        verdict = self._verdicts.get(name)
        if verdict is None:
            verdict = name in self._secret or _SECRET_NAME.search(name) is not None
            if len(self._verdicts) < _CACHE_LIMIT:
                self._verdicts[name] = verdict
        return verdict

    def __call__(self, headers: Mapping[str, str]) -> dict[str, str]:
        """At most `MAX_HEADERS` entries in arrival order (past that, the last entry, named ``…``, says
        how many were left out); values cut to `MAX_VALUE` characters with an ellipsis, secret ones
        replaced by `REDACTED`; names are cut the same way."""
        recorded: dict[str, str] = {}
        over = len(headers) > MAX_HEADERS
        for name, value in headers.items():
            if over and len(recorded) == MAX_HEADERS - 1:
                recorded[_ELLIPSIS] = f"{len(headers) - len(recorded)} more headers not recorded"
                break
            if self.is_secret(name):
                value = REDACTED
            elif len(value) > MAX_VALUE:
                value = value[: MAX_VALUE - 1] + _ELLIPSIS
            if len(name) > MAX_VALUE:
                name = name[: MAX_VALUE - 1] + _ELLIPSIS
            recorded[name] = value
        return recorded
