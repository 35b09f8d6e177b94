"""`export_dataset`: one training-ready dataset from every finished job of a store (`labelhook export`).

Formats (one module each, layouts as CVAT and Datumaro write them, subset ``default``):
``coco`` (`processors.export.coco`), ``coco-panoptic`` (`.panoptic`), ``voc`` (`.voc`, CVAT
"Segmentation mask 1.1"). Item names are ``<vendor>/<project>/<job>/<frame>``: the store's own job
prefixes, which never collide, so neither do items. Categories are unified by class name.

Incremental and idempotent: the dataset records what it holds (`processors.export.state`); a run
exports only jobs that are new or were reprocessed since, then rewrites the index files, which
depend only on that record (a run with nothing new writes identical bytes). Jobs are read and
written one at a time through the `Store` interface, so S3 in and out stream in bounded memory.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from processors.export.base import DatasetWriter
from processors.export.catalog import FinishedJob, JobSkipped, finished_jobs
from processors.export.job import JobReader
from processors.export.state import ExportState, StateError
from processors.store import Store, StoreError

__all__ = ["FORMATS", "ExportReport", "StateError", "export_dataset"]

#: Save the record every so many jobs, so a crash in a long export loses little work.
_SAVE_EVERY = 100


def _writers() -> dict[str, type[DatasetWriter]]:
    from processors.export.coco import CocoWriter
    from processors.export.panoptic import PanopticWriter
    from processors.export.voc import VocWriter

    return {w.format: w for w in (CocoWriter, PanopticWriter, VocWriter)}


FORMATS = ("coco", "coco-panoptic", "voc")


@dataclass
class ExportReport:
    """What a run did: jobs added (new), updated (reprocessed), unchanged, skipped (with reasons)."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    items: int = 0
    annotations: int = 0
    categories: int = 0


def export_dataset(
    store: Store,
    out: Store,
    format_name: str,
    *,
    sources: Collection[str] = (),
    projects: Collection[str] = (),
    on_job: Callable[[str], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> ExportReport:
    """Export every finished job of ``store`` (filtered by source and project) into ``out``.

    ``on_total`` is told how many jobs will be looked at, ``on_job`` is told after each (progress).
    Raises `StateError` when ``out`` holds a dataset this run cannot continue, `StoreError` when
    either store fails. A job whose outputs cannot be exported is skipped and reported.
    """
    writer_class = _writers().get(format_name)
    if writer_class is None:
        raise ValueError(f"unknown format {format_name!r} (known: {', '.join(FORMATS)})")
    state = ExportState.load(out, format_name)
    writer = writer_class(out, state)
    report = ExportReport()
    jobs = list(finished_jobs(store, sources=sources, projects=projects))
    if on_total is not None:
        on_total(len(jobs))
    changed = 0
    for job in jobs:
        if _export_job(store, writer, state, job, report):
            changed += 1
            if changed % _SAVE_EVERY == 0:
                _commit(out, state)
        if on_job is not None:
            on_job(job.prefix)
    writer.finish()
    _commit(out, state)
    report.items = sum(len(e.items) for e in state.jobs.values())
    report.annotations = sum(e.annotations for e in state.jobs.values())
    report.categories = len(state.categories)
    return report


def _commit(out: Store, state: ExportState) -> None:
    """Files first, durably; then the record that claims them (it never claims a file not written)."""
    out.sync()
    state.save(out)
    out.sync()


def _export_job(
    store: Store, writer: DatasetWriter, state: ExportState, job: FinishedJob, report: ExportReport
) -> bool:
    previous = state.jobs.get(job.prefix)
    if previous is not None and previous.fingerprint == job.fingerprint:
        report.unchanged += 1
        return False
    try:
        entry = writer.add_job(JobReader(store, job))
    except JobSkipped as exc:
        report.skipped[job.prefix] = exc.reason
        return False
    except StoreError:
        raise
    state.jobs[job.prefix] = entry
    (report.updated if previous is not None else report.added).append(job.prefix)
    return True
