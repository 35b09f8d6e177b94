"""Tables for one-shot commands: aligned columns on stdout, or JSON with `--json`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any


def print_rows(rows: Sequence[dict[str, Any]], as_json: bool) -> None:
    """Print `rows` (dicts with the same keys) as a table, or as a JSON list."""
    if as_json:
        print(json.dumps(list(rows), indent=2))
        return
    if not rows:
        print("(none)")
        return
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    print("  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip())
    for row in rows:
        print("  ".join(str(row[c]).ljust(widths[c]) for c in columns).rstrip())
