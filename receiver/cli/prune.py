"""`labelhook prune`: apply the queue's retention now and sweep abandoned temporaries from the store.

The worker does both on its own (pruning every few minutes, sweeping at start); this is for an
operator who wants disk back now, or runs `serve` without a SQLite worker for a while.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from processors.config import Settings


def add_parser(sub: Any) -> None:
    """Register the `prune` subcommand on the CLI's subparsers."""
    prune = sub.add_parser(
        "prune",
        help="apply the queue's retention now; sweep abandoned temp files",
        description="Apply the queue's retention now and sweep abandoned temporaries from the store.",
    )
    prune.add_argument(
        "--temp-age",
        type=float,
        default=3600.0,
        help="seconds a store temp file must be untouched before it is swept (default 3600)",
    )
    prune.add_argument("--json", action="store_true", help="print what was removed as JSON")


def prune(settings: Settings, args: argparse.Namespace) -> int:
    """Run `Queue.prune` and `Store.sweep_temporary` once; print what they removed."""
    from receiver.cli.backends import open_backends

    async def main() -> dict[str, int]:
        queue, store = open_backends(settings, existing=True)  # prune never creates a queue
        try:
            pruned = await queue.prune()
            swept = await asyncio.to_thread(store.sweep_temporary, args.temp_age)
        finally:
            await queue.close()
        return {"bodies_dropped": pruned.bodies, "rows_deleted": pruned.rows, "temp_files_swept": swept}

    result = asyncio.run(main())
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"dropped {result['bodies_dropped']} bodies, deleted {result['rows_deleted']} rows,"
            f" swept {result['temp_files_swept']} temp file(s)"
        )
    return 0
