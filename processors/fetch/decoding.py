"""Content-Encoding, decoded in bounded steps: a compressed body can never expand past the byte cap.

httpx decodes each network chunk in one `zlib` call with no output limit, and stacks decoders for
``Content-Encoding: gzip, gzip``: 2.6 KB on the wire became 3 GB in memory before any cap could look
at it. Here the raw body is decoded with ``max_length`` steps of `STEP_BYTES`, so the caller's cap is
checked every 64 KiB of output. Only what we ask for is accepted (``Accept-Encoding: gzip, deflate``,
one layer); anything else — stacked, brotli, zstd, compress — is refused as a permanent failure.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

from processors.errors import Permanent

ACCEPT_ENCODING = "gzip, deflate"
STEP_BYTES = 64 * 1024
_GZIP_WBITS = 16 + zlib.MAX_WBITS


class BoundedDecoder:
    """Decodes one response body's raw chunks into pieces of at most `STEP_BYTES`."""

    def __init__(self, content_encoding: str | None, what: str) -> None:
        codings = [c.strip().lower() for c in (content_encoding or "").split(",")]
        codings = [c for c in codings if c and c != "identity"]
        if len(codings) > 1:
            raise Permanent(f"{what}: stacked Content-Encoding {content_encoding!r} refused")
        self._what = what
        self._coding = codings[0] if codings else None
        if self._coding not in (None, "gzip", "x-gzip", "deflate"):
            raise Permanent(f"{what}: Content-Encoding {self._coding!r} is not supported")
        wbits = _GZIP_WBITS if self._coding in ("gzip", "x-gzip") else zlib.MAX_WBITS
        self._inflate = zlib.decompressobj(wbits) if self._coding else None
        self._first = True

    def feed(self, raw: bytes) -> Iterator[bytes]:
        """The decoded bytes of ``raw``, in pieces of at most `STEP_BYTES` (nothing held beyond one)."""
        if self._inflate is None:
            yield raw
            return
        if self._first and raw:
            self._first = False
            if self._coding == "deflate" and raw[0] & 0x0F != zlib.DEFLATED:
                # "deflate" is often sent raw, without the zlib wrapper (as httpx also accepts).
                self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
        data = raw
        while True:
            try:
                piece = self._inflate.decompress(data, STEP_BYTES)
            except zlib.error as exc:
                raise Permanent(f"{self._what}: body does not decode as {self._coding} ({exc})") from None
            if piece:
                yield piece
            data = self._inflate.unconsumed_tail
            if not data and len(piece) < STEP_BYTES:
                return

    def finish(self) -> None:
        """At the end of the body: a compressed body must be complete."""
        if self._inflate is not None and not self._first and not self._inflate.eof:
            raise Permanent(f"{self._what}: compressed body ends early")
