"""`labelhook dead list|replay`: the dead letters and putting them back on the queue."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING

from processors.config import Settings
from receiver.cli.backends import open_backends
from receiver.cli.output import print_rows

if TYPE_CHECKING:
    from processors.queue import Queue


def dead(settings: Settings, args: argparse.Namespace) -> int:
    """`labelhook dead list` and `labelhook dead replay IDS… | --all`."""

    async def main() -> int:
        queue, _ = open_backends(settings)
        try:
            if args.dead_command == "list":
                letters = await queue.dead_letters(limit=args.limit)
                rows = [
                    {
                        "id": d.id,
                        "source": d.source,
                        "job": d.job_id,
                        "attempts": d.attempts,
                        "reason": d.last_error or "",
                    }
                    for d in letters
                ]
                print_rows(rows, args.json)
                return 0
            if not args.all and not args.ids:
                print("labelhook: dead replay needs delivery ids or --all", file=sys.stderr)
                return 2
            count = await (replay_all(queue) if args.all else queue.replay(args.ids))
            print(f"replayed {count} dead letter(s)")
            return 0 if count or args.all else 1
        finally:
            await queue.close()

    return asyncio.run(main())


async def replay_all(queue: Queue, chunk: int = 50) -> int:
    """`dead replay --all` with a progress bar: list the dead letters, replay them in chunks, then
    sweep once more for any that died meanwhile (or lay beyond what one listing shows)."""
    from receiver.cli.progress import Progress

    ids = [d.id for d in await queue.dead_letters(limit=1_000_000)]
    count = 0
    with Progress(len(ids), "replaying") as bar:
        for start in range(0, len(ids), chunk):
            batch = ids[start : start + chunk]
            count += await queue.replay(batch)
            for delivery_id in batch:
                bar.advance(delivery_id)
    return count + await queue.replay(None)
