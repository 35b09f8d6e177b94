"""The job commands of the CLI: `labelhook submit`, `labelhook poll`, `labelhook jobs`."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from typing import TYPE_CHECKING

from processors.config import Settings
from receiver.cli.backends import open_backends
from receiver.cli.output import print_rows, printable

if TYPE_CHECKING:
    from processors.vendors.base import Processor

log = logging.getLogger("labelhook")


def _check_source(settings: Settings, name: str) -> None:
    if settings.source(name) is None:
        raise SystemExit(f"labelhook: no source named {name!r} (configured: {', '.join(settings.sources)})")


def _processor(settings: Settings, name: str) -> Processor:
    """The source's processor; use it in a ``with`` block so its HTTP clients close with the command."""
    from processors.vendors import VENDORS

    _check_source(settings, name)
    source = settings.source(name)
    assert source is not None
    return VENDORS[source.vendor].processor_class()(source, settings)


def submit(settings: Settings, args: argparse.Namespace) -> int:
    with _processor(settings, args.source) as processor:
        return _submit(settings, args, processor)


def _submit(settings: Settings, args: argparse.Namespace, processor: Processor) -> int:
    from processors.errors import ProcessingError
    from processors.jobs import JobBook
    from processors.store import open_store
    from receiver.cli.progress import Progress

    try:
        with open(args.input, "rb") as handle:
            payload = json.load(handle)
    except (OSError, ValueError) as exc:
        print(f"labelhook: cannot read {args.input}: {exc}", file=sys.stderr)
        return 2
    callback_url = processor.callback_url()
    if callback_url is None:
        log.warning("LABELHOOK_PUBLIC_URL is unset: the vendor gets no callback URL; run `labelhook poll`")
    try:
        total, jobs = processor.prepare_submit(payload, callback_url)
    except ProcessingError as exc:
        print(f"labelhook: submit failed: {printable(exc.reason)}", file=sys.stderr)
        return 2
    book = JobBook(open_store(settings.store_url, endpoint_url=settings.aws_endpoint_url))
    source = processor.source
    submitted = []
    failure = None
    with Progress(total, f"submitting to {source.name}", unit="job") as bar:
        try:
            # Record each job as soon as the vendor accepts it: if job 6 of 10 fails, jobs 1-5 exist at
            # the vendor and must still be polled.
            for job in jobs:
                book.note(
                    source=source.name,
                    vendor=source.vendor,
                    job_id=job.job_id,
                    project=job.project,
                    state="open",
                    vendor_state=job.vendor_state,
                    meta=job.meta,
                )
                submitted.append(job)
                bar.advance(job.job_id)
        except ProcessingError as exc:
            failure = exc.reason
    print_rows(
        [{"job": j.job_id, "project": j.project, "vendor_state": j.vendor_state} for j in submitted],
        args.json,
    )
    if failure is not None:
        print(
            f"labelhook: submit failed after {len(submitted)} of {total} job(s): {printable(failure)}",
            file=sys.stderr,
        )
        return 2
    return 0


def poll(settings: Settings, args: argparse.Namespace) -> int:
    with _processor(settings, args.source) as processor:
        return _poll(settings, args, processor)


def _poll(settings: Settings, args: argparse.Namespace, processor: Processor) -> int:
    from processors.jobs import JobBook
    from processors.polling import poll_source
    from receiver.cli.progress import Progress

    if not processor.can_poll:
        print(f"labelhook: vendor {processor.source.vendor!r} cannot be polled", file=sys.stderr)
        return 2

    async def main() -> int:
        # poll writes to the queue (the worker picks its finds up later): it may be the first to open it.
        queue, store = open_backends(settings)
        book = JobBook(store)
        try:
            todo = [j for j in book.list(args.source) if j.open and not j.enqueued]
            with Progress(len(todo), f"polling {args.source}", unit="job") as bar:
                summary = await poll_source(
                    settings, args.source, processor, queue, book, on_job=lambda job: bar.advance(job.job_id)
                )
        finally:
            await queue.close()
        result = {
            "checked": summary.checked,
            "open": summary.still_open,
            "enqueued": summary.enqueued,
            "failed": summary.failed,
            "stuck": summary.stuck,
            "errors": summary.errors,
        }
        print(
            json.dumps(result)
            if args.json
            else f"checked {summary.checked}: {summary.enqueued} enqueued, {summary.still_open} still open, "
            f"{summary.failed} failed, {len(summary.stuck)} past deadline, {len(summary.errors)} errors"
        )
        for error in summary.errors:
            if not args.json:
                print(f"  error: {printable(error)}")
        return 1 if summary.errors else 0

    return asyncio.run(main())


def jobs(settings: Settings, args: argparse.Namespace) -> int:
    from processors.jobs import JobBook
    from processors.store import open_store

    if args.source is not None:
        _check_source(settings, args.source)
    store = open_store(settings.store_url, endpoint_url=settings.aws_endpoint_url)
    records = JobBook(store).list(args.source)
    if not records:
        # Say where we looked: an empty answer from the wrong directory or bucket looks like "no jobs".
        print(f"labelhook: no jobs recorded in {store.describe()} (LABELHOOK_STORE)", file=sys.stderr)
    if args.json:
        print(json.dumps([r.to_json() for r in records], indent=2))
        return 0
    print_rows(
        [
            {
                "source": r.source,
                "job": r.job_id,
                "state": r.state,
                "vendor_state": r.vendor_state or "",
                "last_delivery": r.last_delivery or "",
                "output": r.output or "",
                "reason": r.reason or "",
            }
            for r in records
        ],
        False,
    )
    return 0
