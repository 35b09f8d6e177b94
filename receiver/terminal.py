"""`printable`: vendor-supplied text made safe to print on an operator's terminal.

Job ids, states and error reasons come from vendors (or from whoever can reach a vendor's API). An
ESC sequence in one of them would reach the operator's terminal raw through `labelhook jobs` or
`dead list`: retitle the window, hide lines, rewrite what was printed above. Every control character
(C0, DEL, C1) and the Unicode bidirectional overrides (which reorder what is shown) are printed as
Python-style escapes instead, so the text stays readable and nothing is interpreted.
"""

from __future__ import annotations

_BIDI = [*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C]
_ESCAPES = {code: f"\\x{code:02x}" for code in [*range(0x00, 0x20), *range(0x7F, 0xA0)]}
_ESCAPES.update({code: f"\\u{code:04x}" for code in _BIDI})


def printable(value: object) -> str:
    """``str(value)`` with control and bidi-override characters written as visible escapes."""
    return str(value).translate(_ESCAPES)
