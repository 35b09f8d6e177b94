"""Progress for long CLI work: a bar on a terminal, one plain line per item otherwise (logs, CI)."""

from __future__ import annotations

import sys
from typing import TextIO


class Progress:
    """``with Progress(total, "polling") as bar: bar.advance("job-1")``."""

    def __init__(self, total: int, label: str, *, stream: TextIO | None = None, width: int = 30) -> None:
        self.total = max(total, 0)
        self.label = label
        self.stream = stream or sys.stderr
        self.width = width
        self.done = 0
        self.tty = self.stream.isatty()

    def __enter__(self) -> Progress:
        return self

    def advance(self, item: str = "") -> None:
        self.done += 1
        if self.tty:
            filled = self.width * self.done // self.total if self.total else self.width
            bar = "#" * filled + "." * (self.width - filled)
            self.stream.write(f"\r{self.label} [{bar}] {self.done}/{self.total} {item[:40]:<40}")
        else:
            self.stream.write(f"{self.label}: {self.done}/{self.total} {item}\n")
        self.stream.flush()

    def __exit__(self, *exc: object) -> None:
        if self.tty and self.total:
            self.stream.write("\n")
            self.stream.flush()
