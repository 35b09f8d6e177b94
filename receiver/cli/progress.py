"""Progress for long CLI work: tqdm's bar on a terminal, one plain line per item otherwise (logs, CI).

tqdm (rather than a hand-drawn bar) sizes the bar to the terminal as it is now (`dynamic_ncols`: an
80-column terminal never wraps an update into a new line), shows rate and ETA, and ends the bar
with a newline so the command's final message starts on a line of its own.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO


class Progress:
    """``with Progress(total, "polling", unit="job") as bar: bar.advance("job-1")``."""

    def __init__(self, total: int, label: str, *, unit: str = "item", stream: TextIO | None = None) -> None:
        self.total = max(total, 0)
        self.label = label
        self.stream = stream or sys.stderr
        self.done = 0
        self.tty = self.stream.isatty()
        self._bar: Any = None
        if self.tty and self.total:
            from tqdm import tqdm

            self._bar = tqdm(
                total=self.total,
                desc=label,
                unit=unit,
                file=self.stream,
                dynamic_ncols=True,
                mininterval=0.1,
                leave=True,
            )

    def __enter__(self) -> Progress:
        return self

    def advance(self, item: str = "") -> None:
        self.done += 1
        if self._bar is not None:
            # The item's name is a hint (a path's last part, cut short): the bar keeps most of the width.
            self._bar.set_postfix_str(item.rsplit("/", 1)[-1][:16], refresh=False)
            self._bar.update(1)
        else:
            self.stream.write(f"{self.label}: {self.done}/{self.total} {item}\n")
            self.stream.flush()

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()
