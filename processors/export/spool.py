"""One large COCO-style JSON file assembled from per-job fragments without holding it in memory.

Each job's ``images``/``annotations`` are kept as a small fragment in the dataset; the index file is
rebuilt from them on every run, through temporary files on local disk, and uploaded as a stream.
Memory is one fragment; the bytes depend only on the fragments and their order (deterministic).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from processors.store import Store

_CHUNK = 1024 * 1024


def _encode(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode("utf-8")


def write_json_index(
    out: Store,
    key: str,
    head: Mapping[str, Any],
    sections: Sequence[str],
    fragments: Iterable[Mapping[str, Sequence[Any]]],
) -> None:
    """Write ``{**head, section: [items of every fragment, in order], …}`` to ``key`` as one stream."""
    with contextlib.ExitStack() as stack:
        spools = {name: stack.enter_context(tempfile.TemporaryFile()) for name in sections}
        counts = dict.fromkeys(sections, 0)
        for fragment in fragments:
            for name in sections:
                spool = spools[name]
                for item in fragment.get(name, ()):
                    if counts[name]:
                        spool.write(b",")
                    spool.write(_encode(item))
                    counts[name] += 1
        with tempfile.TemporaryFile() as document:
            document.write(b"{")
            for name, value in head.items():
                document.write(_encode(name) + b":" + _encode(value) + b",")
            for position, name in enumerate(sections):
                document.write(_encode(name) + b":[")
                spool = spools[name]
                spool.seek(0)
                shutil.copyfileobj(spool, document, _CHUNK)
                document.write(b"]" + (b"," if position < len(sections) - 1 else b"}\n"))
            document.seek(0)
            out.put_stream(key, document, "application/json")
