"""`LabelStudioClient`: the Label Studio REST calls labelhook makes, errors mapped to Retryable/Permanent.

Two kinds of API key, as the official SDK handles them: a legacy token (sent as ``Authorization:
Token <key>``) and a personal access token, which is a JWT *refresh* token: it is exchanged at ``POST
/api/token/refresh/`` (``{"refresh": …}`` → ``{"access": …}``) for a short-lived access token sent as
``Authorization: Bearer <access>``. The access token is reused until a minute before its ``exp``, and
refreshed once more if the server refuses it with 401 anyway. Credentials go only to the API origin
(the `Fetcher` drops them on a redirect elsewhere).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from processors.errors import Permanent
from processors.fetch import HTTPStatusPermanent, HTTPStatusRetryable

if TYPE_CHECKING:
    from processors.fetch import Fetcher, Stream

#: Cap for JSON answers (a task's annotations with brush RLE can be a few MB per region).
MAX_JSON_BYTES = 256 * 1024 * 1024
#: Bytes of an image read at most to find its size in the header (JPEG EXIF can come first).
MAX_HEADER_BYTES = 16 * 1024 * 1024
#: Refresh an access token this long before it expires (clock skew, slow requests).
EXPIRY_MARGIN_SECONDS = 60.0


def is_jwt(key: str) -> bool:
    """A personal access token is a JWT (three base64url parts); a legacy token is 40 hex digits."""
    parts = key.split(".")
    return len(parts) == 3 and all(parts)


def jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT (not verified: the server does that), or None if it has none."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


class LabelStudioClient:
    """Blocking client for ``{api_url}/api``; every method raises only `Retryable` / `Permanent`.

    Thread-safe: the worker calls one client from several threads; the access token is shared.
    """

    def __init__(
        self,
        fetcher: Fetcher,
        api_url: str,
        api_key: str,
        *,
        auth: str = "auto",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._fetcher = fetcher
        self._base = api_url.rstrip("/")
        self._clock = clock
        self._lock = threading.Lock()
        self._access: tuple[str, float] | None = None
        scheme = api_key.split(" ", 1)[0].lower()
        if scheme in ("token", "bearer") and " " in api_key:
            self._static: str | None = api_key  # already a full header value
            self._refresh = None
        elif auth == "jwt" or (auth == "auto" and is_jwt(api_key)):
            self._static = None
            self._refresh = api_key
        else:
            self._static = f"Token {api_key}"
            self._refresh = None

    def url(self, path: str) -> str:
        return f"{self._base}/api/{path}"

    # -- the calls -------------------------------------------------------------------------------

    def task(self, task_id: str) -> dict[str, Any]:
        """``GET /api/tasks/{id}/``: the task's ``data`` (image URLs), ``project``…"""
        return _object(self.get_json(f"tasks/{quote(task_id, safe='')}/", what=f"task {task_id}"), "task")

    def task_annotations(self, task_id: str) -> list[dict[str, Any]]:
        """``GET /api/tasks/{id}/annotations/``: every annotation of the task (a list)."""
        answer = self.get_json(
            f"tasks/{quote(task_id, safe='')}/annotations/", what=f"task {task_id} annotations"
        )
        if not isinstance(answer, list):
            raise Permanent(f"Label Studio task {task_id} annotations: the answer is not a list")
        return [_object(item, "annotation") for item in answer]

    def project(self, project_id: str) -> dict[str, Any]:
        """``GET /api/projects/{id}/``: its ``label_config`` (classes and colours)."""
        return _object(
            self.get_json(f"projects/{quote(project_id, safe='')}/", what=f"project {project_id}"), "project"
        )

    def image_size(self, url: str) -> tuple[int, int]:
        """``(width, height)`` of a task's image, read from the first bytes of its file.

        ``url`` is the task's data value: an absolute URL, or a path on the Label Studio server
        (``/data/upload/…``, resolved against API_URL). Credentials go only to the API origin.
        """
        import io
        import warnings

        from PIL import Image, UnidentifiedImageError

        buffer = bytearray()
        next_try = 0
        with self.open_image(url) as stream:
            for chunk in stream:
                buffer += chunk
                if len(buffer) < next_try:
                    continue
                next_try = 2 * len(buffer)  # parse attempts double the data: linear overall
                try:
                    with warnings.catch_warnings():
                        # The pixel limit is labelhook's own (checked by the caller), not Pillow's.
                        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                        with Image.open(io.BytesIO(bytes(buffer))) as image:
                            return image.size
                except (UnidentifiedImageError, OSError, Image.DecompressionBombError, SyntaxError):
                    if len(buffer) > MAX_HEADER_BYTES:
                        break
        raise Permanent(f"Label Studio image {stream.url}: no image size in its first {len(buffer)} bytes")

    @contextlib.contextmanager
    def open_image(self, url: str) -> Iterator[Stream]:
        """Stream a task's image: ``url`` absolute, or a path on the Label Studio server (``/data/…``).

        The API credentials go with it only when it is on the API's origin (uploads and local storage
        are served to authenticated users only); a cloud-storage or public URL gets none.
        """
        try:
            target = httpx.URL(self._base + "/").join(url)
        except httpx.InvalidURL:
            raise Permanent(f"Label Studio image URL {url[:100]!r} is not a URL") from None
        headers = {}
        if _origin(target) == _origin(httpx.URL(self._base)):
            headers["Authorization"] = self._authorization()
        try:
            with self._fetcher.open_stream(str(target), headers=headers) as stream:
                yield stream
        except HTTPStatusPermanent as exc:
            raise HTTPStatusPermanent(
                f"Label Studio image: {exc.reason}", status=exc.status, url=exc.url
            ) from exc

    # -- plumbing --------------------------------------------------------------------------------

    def get_json(self, path: str, *, what: str) -> Any:
        """GET ``{api}/api/<path>`` as JSON with the configured credentials."""
        try:
            return self._get(path, self._authorization())
        except HTTPStatusPermanent as exc:
            if exc.status == 401 and self._refresh is not None:
                # The server refused an access token we thought valid (revoked, clock skew): once more.
                try:
                    return self._get(path, self._authorization(force=True))
                except HTTPStatusPermanent as again:
                    exc = again
            raise HTTPStatusPermanent(
                f"Label Studio {what}: {exc.reason}", status=exc.status, url=exc.url
            ) from exc
        except HTTPStatusRetryable as exc:
            raise HTTPStatusRetryable(
                f"Label Studio {what}: {exc.reason}",
                status=exc.status,
                url=exc.url,
                retry_after=exc.retry_after,
            ) from exc

    def _get(self, path: str, authorization: str) -> Any:
        return self._fetcher.get_json(
            self.url(path), headers={"Authorization": authorization}, max_bytes=MAX_JSON_BYTES
        )

    def _authorization(self, *, force: bool = False) -> str:
        if self._static is not None:
            return self._static
        with self._lock:
            now = self._clock()
            if force or self._access is None or self._access[1] - EXPIRY_MARGIN_SECONDS <= now:
                self._access = self._exchange(now)
            return f"Bearer {self._access[0]}"

    def _exchange(self, now: float) -> tuple[str, float]:
        """``POST /api/token/refresh/`` → a fresh access token and when to stop using it."""
        assert self._refresh is not None
        try:
            answer = self._fetcher.post_json(
                self.url("token/refresh/"),
                json_body={"refresh": self._refresh},
                headers={"Content-Type": "application/json"},
                max_bytes=1024 * 1024,
            )
        except HTTPStatusPermanent as exc:
            raise HTTPStatusPermanent(
                f"Label Studio token refresh: {exc.reason} (is API_KEY a valid, unexpired personal "
                "access token?)",
                status=exc.status,
                url=exc.url,
            ) from exc
        access = answer.get("access") if isinstance(answer, dict) else None
        if not isinstance(access, str) or not access:
            raise Permanent("Label Studio token refresh: the answer has no 'access' token")
        expiry = jwt_expiry(access)
        # Without an exp claim, reuse it for five minutes; a 401 refreshes it earlier.
        return access, expiry if expiry is not None else now + 300.0


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default = {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host.lower(), url.port if url.port is not None else default


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Permanent(f"Label Studio {what} is not a JSON object")
    return value
