"""`labelhook decode`: decode vendor masks offline, with the same core as the worker."""

from __future__ import annotations

import argparse
from typing import Any

from processors.config import Settings


def decode(settings: Settings, args: argparse.Namespace) -> int:
    """Decode one mask, or several as a video's frames 0, 1, … (on the mask threads, under the mask
    memory budget, as the worker does) with a progress bar."""
    from processors.masks.memory import MemoryBudget
    from processors.masks.segmentation import decode_command
    from receiver.cli.progress import Progress

    limits: dict[str, Any] = {
        "max_pixels": settings.max_pixels,
        "threads": settings.mask_threads,
        "budget": MemoryBudget.shared(settings.mask_memory_bytes),
    }
    if len(args.mask) == 1:
        code: int = decode_command(args.mask[0], args.result, args.out, **limits)
        return code
    with Progress(len(args.mask), "decoding") as bar:
        code = decode_command(args.mask, args.result, args.out, on_frame=bar.advance, **limits)
    return code
