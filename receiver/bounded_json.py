"""JSON from the network, bounded: size by the caller's cap, nesting depth here, duplicate keys refused.

Every JSON document a client sends (callback bodies, dashboard API bodies) is parsed through
`loads_bounded`. Depth matters beyond the parse itself: a value stored in a delivery travels on to the
worker, the job book and the dashboard, and any recursive code there (``json.dumps(indent=…)``, deep
copies, the C parser near the interpreter's recursion limit) would fail on it later, far from the
request that caused it. So the bound is applied once, at the edge, to every vendor alike.
"""

from __future__ import annotations

import json
import re
from typing import Any

#: Deepest nesting of arrays/objects accepted. Real callbacks nest 3–6 levels (CVAT's webhook payload,
#: Playment's result envelope, Standard Webhooks' data objects); 64 leaves ample room.
MAX_DEPTH = 64


class JSONRejected(ValueError):
    """The document is not acceptable; ``code`` is the error code the HTTP answer carries."""

    def __init__(self, detail: str, code: str) -> None:
        super().__init__(detail)
        self.code = code


def loads_bounded(body: bytes | str, *, max_depth: int = MAX_DEPTH, unique_keys: bool = False) -> Any:
    """Parse ``body`` (UTF-8 bytes or text) with ``json.loads``; raise `JSONRejected` on anything off.

    ``unique_keys``: refuse an object that repeats a key (where a signature is checked over a
    re-serialised form, a repeated key would let unsigned bytes ride along with signed ones).
    """
    try:
        value = json.loads(body, object_pairs_hook=_unique_object if unique_keys else None)
    except UnicodeDecodeError:
        raise JSONRejected("body is not UTF-8", "malformed_body") from None
    except RecursionError:
        # The C parser's own guard fired (nesting near the interpreter's recursion limit).
        raise JSONRejected(f"JSON nests deeper than {max_depth} levels", "too_deep") from None
    except _DuplicateKey as exc:
        raise JSONRejected(f"JSON object repeats the key {str(exc)[:64]!r}", "duplicate_key") from None
    except ValueError:
        raise JSONRejected("body is not valid JSON", "malformed_body") from None
    if _nesting_exceeds(body, value, max_depth):
        raise JSONRejected(f"JSON nests deeper than {max_depth} levels", "too_deep")
    return value


class _DuplicateKey(ValueError):
    pass


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return result


# A JSON string literal (the document parsed already, so every one is terminated); its two
# alternatives cannot both match a character, so the scan is linear.
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_AS_SQUARE = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def _nesting_exceeds(body: bytes | str, value: Any, max_depth: int) -> bool:
    """True if the document nests deeper than ``max_depth``; all at C speed, without recursion.

    A document with at most ``max_depth`` opening brackets cannot nest deeper: most callbacks are
    done after one count. Otherwise the string literals are dropped, only the brackets kept (braces
    as brackets: the document is valid, so they pair up), and innermost ``[]`` pairs removed one
    level per pass: a document still holding brackets after ``max_depth`` passes is deeper. (Walking
    the parsed tree in Python instead cost ~1 s for 4 MB of small arrays.)
    """
    data = body.encode() if isinstance(body, str) else body
    if data.count(b"[") + data.count(b"{") <= max_depth or not isinstance(value, dict | list):
        return False  # (a scalar document's brackets are all inside its one string)
    brackets = _STRING.sub(b"", data).translate(_AS_SQUARE, _NOT_BRACKETS)
    for _ in range(max_depth):
        brackets = brackets.replace(b"[]", b"")
        if not brackets:
            return False
    return True
