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

#: Enough to hold every dead letter a real deployment keeps; `dead_letters` has no "all".
_EVERY = 1_000_000


def dead(settings: Settings, args: argparse.Namespace) -> int:
    """`labelhook dead list` and `labelhook dead replay IDS… | --all`."""

    async def main() -> int:
        queue, _ = open_backends(settings, existing=True)
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
            if args.all == bool(args.ids):
                print("labelhook: dead replay takes delivery ids or --all (not both)", file=sys.stderr)
                return 2
            if args.all:
                count = await replay_all(queue)
                print(f"replayed {count} dead letter(s)")
                return 0
            return await replay_ids(queue, args.ids)
        finally:
            await queue.close()

    return asyncio.run(main())


async def replay_ids(queue: Queue, ids: list[str]) -> int:
    """Replay the named dead letters; name every id that is not one, and fail if any was not."""
    dead_ids = {d.id for d in await queue.dead_letters(limit=_EVERY)}
    unknown = [i for i in dict.fromkeys(ids) if i not in dead_ids]
    known = [i for i in dict.fromkeys(ids) if i in dead_ids]
    count = await queue.replay(known) if known else 0
    print(f"replayed {count} dead letter(s)")
    for delivery_id in unknown:
        print(f"labelhook: no dead letter with id {delivery_id!r}", file=sys.stderr)
    return 1 if unknown or count < len(known) else 0


async def replay_all(queue: Queue, chunk: int = 50) -> int:
    """`dead replay --all` with a progress bar: list the dead letters, replay them in chunks, then
    sweep once more for any that died meanwhile (or lay beyond what one listing shows)."""
    from receiver.cli.progress import Progress

    ids = [d.id for d in await queue.dead_letters(limit=_EVERY)]
    count = 0
    with Progress(len(ids), "replaying", unit="letter") as bar:
        for start in range(0, len(ids), chunk):
            batch = ids[start : start + chunk]
            count += await queue.replay(batch)
            for delivery_id in batch:
                bar.advance(delivery_id)
    return count + await queue.replay(None)
