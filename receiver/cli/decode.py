"""`labelhook decode`: decode vendor masks offline, with the same core as the worker."""

from __future__ import annotations

import argparse

from processors.config import Settings


def decode(settings: Settings, args: argparse.Namespace) -> int:
    """Decode one mask, or several as a video's frames 0, 1, … with a progress bar."""
    from processors.masks.segmentation import decode_command
    from receiver.cli.progress import Progress

    if len(args.mask) == 1:
        code: int = decode_command(args.mask[0], args.result, args.out, max_pixels=settings.max_pixels)
        return code
    with Progress(len(args.mask), "decoding") as bar:
        code = decode_command(
            args.mask, args.result, args.out, max_pixels=settings.max_pixels, on_frame=bar.advance
        )
    return code
