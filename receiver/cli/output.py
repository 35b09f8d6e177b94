"""Tables for one-shot commands: aligned columns on stdout, or JSON with `--json`; vendor text made safe.

Job ids, states and error reasons come from vendors (or from whoever can reach a vendor's API). An
ESC sequence in one of them would reach the operator's terminal raw through `labelhook jobs` or
`dead list`: retitle the window, hide lines, rewrite what was printed above. `printable` writes every
control character (C0, DEL, C1) and the Unicode bidirectional overrides (which reorder what is shown)
as Python-style escapes instead, so the text stays readable and nothing is interpreted.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

_BIDI = [*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C]
_ESCAPES = {code: f"\\x{code:02x}" for code in [*range(0x00, 0x20), *range(0x7F, 0xA0)]}
_ESCAPES.update({code: f"\\u{code:04x}" for code in _BIDI})


def printable(value: object) -> str:
    """``str(value)`` with control and bidi-override characters written as visible escapes."""
    return str(value).translate(_ESCAPES)


def print_rows(rows: Sequence[dict[str, Any]], as_json: bool) -> None:
    """Print `rows` (dicts with the same keys) as a table, or as a JSON list."""
    if as_json:
        print(json.dumps(list(rows), indent=2))
        return
    if not rows:
        print("(none)")
        return
    # Cells hold vendor strings: escapes and bidi overrides are shown, never sent to the terminal.
    cells = [{c: printable(r[c]) for c in rows[0]} for r in rows]
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(r[c]) for r in cells)) for c in columns}
    print("  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip())
    for row in cells:
        print("  ".join(row[c].ljust(widths[c]) for c in columns).rstrip())
