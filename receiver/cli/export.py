"""`labelhook export --format coco|coco-panoptic|voc --out DIR|s3://… [--source S]… [--project P]…`."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from processors.config import Settings

if TYPE_CHECKING:
    from processors.store import Store


def add_parser(sub: Any) -> None:
    """Register the ``export`` subcommand on the CLI's subparsers."""
    # The names only: the export package (numpy, Pillow) loads when the command runs.
    export = sub.add_parser(
        "export",
        help="one dataset (COCO, COCO panoptic, VOC) from every finished job",
        description="Write one dataset (COCO, COCO panoptic or VOC) from every finished job in the store.",
    )
    export.add_argument(
        "--format",
        required=True,
        choices=("coco", "coco-panoptic", "voc"),
        help="dataset layout (CVAT/Datumaro)",
    )
    export.add_argument("--out", required=True, help="output folder, or s3://bucket/prefix")
    export.add_argument("--source", action="append", default=[], help="only jobs of this source (repeatable)")
    export.add_argument(
        "--project", action="append", default=[], help="only jobs of this project (repeatable)"
    )
    export.add_argument("--json", action="store_true", help="print the report as JSON")


def export(settings: Settings, args: argparse.Namespace) -> int:
    """Run the export; 0 on success, 1 when a store fails, 2 on bad arguments or an unusable output."""
    import json

    from processors.export import StateError, export_dataset
    from processors.store import StoreError, open_store
    from receiver.cli.progress import Progress

    # --source matches the source named in each job's manifest: it need not be configured here (a
    # laptop exporting a production bucket has none of its sources), so a typo shows as no jobs.
    try:
        store = open_store(settings.store_url, endpoint_url=settings.aws_endpoint_url)
        out = _open_out(args.out, settings)
    except ValueError as exc:
        print(f"labelhook export: {exc}", file=sys.stderr)
        return 2
    bar: Progress | None = None

    def on_total(total: int) -> None:
        nonlocal bar
        bar = Progress(total, f"export {args.format}", unit="job").__enter__()

    def on_job(prefix: str) -> None:
        if bar is not None:
            bar.advance(prefix)

    try:
        report = export_dataset(
            store,
            out,
            args.format,
            sources=args.source,
            projects=args.project,
            on_job=on_job,
            on_total=on_total,
        )
    except StateError as exc:
        print(f"labelhook export: {exc}", file=sys.stderr)
        return 2
    except StoreError as exc:
        print(f"labelhook export: {exc.reason}", file=sys.stderr)
        return 1
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    summary = {
        "format": args.format,
        "out": out.describe(),
        "added": len(report.added),
        "updated": len(report.updated),
        "unchanged": report.unchanged,
        "skipped": report.skipped,
        "items": report.items,
        "annotations": report.annotations,
        "categories": report.categories,
    }
    if args.json:
        print(json.dumps(summary, indent=2, sort_keys=True))
    else:
        print(
            f"labelhook export: {summary['items']} items, {summary['annotations']} annotations, "
            f"{summary['categories']} categories in {summary['out']} ({summary['added']} jobs added, "
            f"{summary['updated']} updated, {summary['unchanged']} unchanged, {len(report.skipped)} skipped)"
        )
        for prefix, reason in sorted(report.skipped.items()):
            print(f"  skipped {prefix}: {reason}")
        if not report.items and (args.source or args.project):
            print("  no finished job matches --source/--project", file=sys.stderr)
    return 0


def _open_out(out: str, settings: Settings) -> Store:
    """A folder path, ``file://`` or ``s3://`` URL → the output store.

    A folder is written without an fsync per file: the export syncs its files in batches before
    it records them (thousands of small files, each fsynced, would cost more than the export).
    """
    from processors.store import open_store
    from processors.store.local import LocalStore

    if out.startswith("s3://"):
        return open_store(out, endpoint_url=settings.aws_endpoint_url)
    if "://" in out and not out.startswith("file://"):
        raise ValueError(f"--out must be a folder or s3://bucket/prefix, not {out!r}")
    return LocalStore(
        LocalStore.from_url(out if out.startswith("file://") else f"file://{out}").root, sync_each=False
    )
