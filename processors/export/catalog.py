"""The finished jobs of a store: every ``<vendor>/<project>/<job>/manifest.json``, and their files.

A job is finished when its manifest exists (the worker writes it last). Only jobs with mask outputs
(``annotations.json`` in the manifest) can go into a dataset; the others are counted and skipped.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from processors.store import Store
from processors.store.base import MANIFEST

_JOB_DEPTH = 3  # vendor / project / job


class JobSkipped(Exception):
    """This job cannot go into the dataset; ``reason`` says why (reported, the export goes on)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class FinishedJob:
    """One finished job: its store prefix (also its item-name prefix) and its manifest."""

    prefix: str
    manifest: Mapping[str, Any]
    fingerprint: str  # sha256 of the manifest bytes: a reprocessed job has a new one
    files: frozenset[str] = field(default=frozenset())

    @property
    def source(self) -> str:
        return str(self.manifest.get("source") or "")

    @property
    def project(self) -> str:
        return str(self.manifest.get("project") or "")

    @property
    def vendor(self) -> str:
        return str(self.manifest.get("vendor") or self.prefix.split("/", 1)[0])

    @property
    def has_masks(self) -> bool:
        return "annotations.json" in self.files and "labelmap.json" in self.files


def job_prefixes(store: Store) -> list[str]:
    """Prefixes of every job with a manifest, sorted (internal folders such as ``_jobs`` left out)."""
    prefixes: list[str] = []
    for key in store.list(""):
        parts = key.split("/")
        if len(parts) == _JOB_DEPTH + 1 and parts[-1] == MANIFEST and not parts[0].startswith(("_", ".")):
            prefixes.append("/".join(parts[:-1]))
    return prefixes


def finished_jobs(
    store: Store, *, sources: Collection[str] = (), projects: Collection[str] = ()
) -> Iterator[FinishedJob]:
    """Finished jobs in prefix order, filtered by source name and project (id or path segment)."""
    for prefix in job_prefixes(store):
        raw = _manifest_bytes(store, prefix)
        job = _job(prefix, raw) if raw is not None else None
        if job is None:
            continue
        if projects and job.project not in projects and prefix.split("/")[1] not in projects:
            continue
        if sources and job.source not in sources:
            continue
        yield job


def _manifest_bytes(store: Store, prefix: str) -> bytes | None:
    try:
        return store.get(f"{prefix}/{MANIFEST}")
    except KeyError:  # deleted between listing and reading
        return None


def _job(prefix: str, raw: bytes) -> FinishedJob | None:
    try:
        manifest = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(manifest, dict):
        return None
    files = manifest.get("files")
    names = (
        frozenset(str(f["path"]) for f in files if isinstance(f, dict) and isinstance(f.get("path"), str))
        if isinstance(files, list)
        else frozenset()
    )
    return FinishedJob(prefix, manifest, hashlib.sha256(raw).hexdigest(), names)
