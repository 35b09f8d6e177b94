"""A delivery's attempt history, kept in the store for the dashboard's delivery page.

The queue keeps a delivery's status, attempt count and last error; an on-call engineer looking at a
dead letter wants every attempt: when, which worker, what happened. The worker appends one entry
per finished attempt to ``_deliveries/<delivery id>.json`` — on the failure path, and on the
success that ends a history of failures (found by one read), so a delivery processed at its first
attempt costs one store read and no write. The file also carries a short preview of the callback
body, secrets masked.
"""

from __future__ import annotations

import json
import re
from typing import Any

from processors.store import Store, dump_json

PREFIX = "_deliveries/"
PREVIEW_BYTES = 4096
MAX_ENTRIES = 50  # a delivery replayed forever keeps its latest attempts, not an unbounded file
_DELIVERY_ID = re.compile(r"^[0-9a-f]{12,64}$")
#: JSON keys whose values are credentials in vendors' callbacks (API keys, tokens, signed URLs' parts).
_SECRET_KEY = re.compile(
    r"(secret|token|password|passwd|api[_-]?key|signature|authorization|credential)", re.I
)
#: Query strings of URLs: presigned result URLs (S3 `X-Amz-Signature`, GCS `Signature`) are credentials.
_URL_QUERY = re.compile(r"(https?://[^\s\"'?#]+)\?[^\s\"'#]*")


def history_key(delivery_id: str) -> str | None:
    """The store key of a delivery's history, or None when ``delivery_id`` is not one of ours."""
    return f"{PREFIX}{delivery_id}.json" if _DELIVERY_ID.match(delivery_id) else None


def body_preview(body: bytes, limit: int = PREVIEW_BYTES) -> str:
    """The first ``limit`` bytes of a callback body as text, values of secret-looking keys and URL
    query strings masked. JSON is re-indented for reading; anything else is shown as decoded text."""
    try:
        text = json.dumps(_mask(json.loads(body)), indent=2, ensure_ascii=False)
    except ValueError:
        text = body[: limit * 2].decode("utf-8", "replace")
    text = mask_url_queries(text)
    return text if len(text) <= limit else text[:limit] + "\n… (cut)"


def mask_url_queries(text: str) -> str:
    """``text`` with the query string of every http(s) URL in it replaced by ``(query masked)``."""
    return _URL_QUERY.sub(r"\1?(query masked)", text)


def _mask(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "(masked)" if _SECRET_KEY.search(str(k)) else _mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v) for v in value]
    return value


def record_attempt(
    store: Store, delivery_id: str, body: bytes, entry: dict[str, Any], *, only_if_exists: bool = False
) -> None:
    """Append ``entry`` (attempt, started_at, finished_at, outcome, reason, worker) to the history;
    with ``only_if_exists``, only to a history already there (a success after failures or a replay).

    Blocking (store I/O). One worker holds a delivery's lease at a time, so read-modify-write is
    safe enough; a lost entry after a lease expiry only shortens the history shown.
    """
    key = history_key(delivery_id)
    if key is None:
        return
    try:
        history = json.loads(store.get(key))
    except (KeyError, ValueError):
        if only_if_exists:
            return
        history = {"delivery_id": delivery_id, "body_preview": body_preview(body), "attempts": []}
    history["attempts"] = [*history.get("attempts", []), entry][-MAX_ENTRIES:]
    store.put(key, dump_json(history), "application/json")


def read_history(store: Store, delivery_id: str) -> dict[str, Any] | None:
    """The stored history of ``delivery_id``, or None (blocking)."""
    key = history_key(delivery_id)
    if key is None:
        return None
    try:
        history = json.loads(store.get(key))
    except (KeyError, ValueError):
        return None
    return history if isinstance(history, dict) else None
