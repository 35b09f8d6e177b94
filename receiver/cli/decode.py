"""`labelhook decode`: decode vendor masks offline, with the same core as the worker."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from processors.config import Settings


def decode(settings: Settings, args: argparse.Namespace) -> int:
    """Decode one mask, or several as a video's frames 0, 1, … (on the mask threads, under the mask
    memory budget, as the worker does) with a progress bar."""
    from processors.masks.memory import MemoryBudget
    from processors.masks.segmentation import decode_command
    from receiver.cli.progress import Progress

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        print(f"labelhook decode: --out {out} is not a directory", file=sys.stderr)
        return 2
    if out.is_dir() and any(out.iterdir()) and not args.force:
        # A decode into a used folder would leave the old frames beside the new ones.
        print(
            f"labelhook decode: --out {out} is not empty; pass --force to replace an earlier decode there",
            file=sys.stderr,
        )
        return 2
    options: dict[str, Any] = {
        "max_pixels": settings.max_pixels,
        "threads": settings.mask_threads,
        "budget": MemoryBudget.shared(settings.mask_memory_bytes),
        "replace": args.force,
        "strict": args.strict,
    }
    if len(args.mask) == 1:
        code: int = decode_command(args.mask[0], args.result, args.out, **options)
        return code
    with Progress(len(args.mask), "decoding", unit="frame") as bar:
        code = decode_command(args.mask, args.result, args.out, on_frame=bar.advance, **options)
    return code
