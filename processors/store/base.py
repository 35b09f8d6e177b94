"""The store interface and `JobWriter`, which writes one job's output set with its manifest last.

A store maps keys (`vendor/project/job/file`) to bytes. Backends must make each `put` atomic: a reader
sees the old object or the whole new one, never a prefix. `JobWriter` builds on that: it records the
size and sha256 of every file it writes and writes `manifest.json` after all of them, so a reader that
finds a manifest finds a complete job. Outputs are deterministic, so writing a job twice (a redelivery
after a crash) rewrites identical bytes.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1


class StoreError(Exception):
    """A store operation failed; ``retryable`` says whether trying again may help."""

    def __init__(self, reason: str, *, retryable: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


class Store(ABC):
    """Key → bytes, atomic per object. Keys use `/` and never start with one."""

    @abstractmethod
    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        """Write ``data`` at ``key`` atomically."""

    @abstractmethod
    def put_stream(self, key: str, stream: IO[bytes], content_type: str = "application/octet-stream") -> None:
        """Write a large object from a file-like object without holding it in memory."""

    @abstractmethod
    def get(self, key: str) -> bytes:
        """Read the object at ``key``; `KeyError` if absent."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def create_exclusive(self, key: str, data: bytes) -> bool:
        """Create ``key`` with ``data`` only if absent; True if this call created it.

        Atomic across processes and machines sharing the store: of any number of concurrent calls for one
        key, exactly one returns True. A reader never sees a partial object. This is the primitive for
        claim markers (exactly-once processing over an at-least-once queue).
        """

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Keys under ``prefix`` (recursive), sorted."""

    def sync(self) -> None:  # noqa: B027 - a no-op for backends whose puts are durable on return
        """Make every write so far durable (see `LocalStore(sync_each=False)`)."""

    @abstractmethod
    def ping(self) -> None:
        """Raise `StoreError` unless the store can be written."""

    @abstractmethod
    def describe(self) -> str:
        """Where the store points, for logs (no credentials)."""

    def sweep_temporary(self, older_than: float = 3600.0, now: float | None = None) -> int:
        """Delete temporary files that writers killed mid-write left behind, untouched for
        ``older_than`` seconds; returns how many. Only stores that write temporaries have any."""
        return 0


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    sha256: str
    content_type: str


class _HashingReader:
    """Wraps a stream, counting and hashing what the store reads from it."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self.size = 0
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        chunk = self._stream.read(size)
        self.size += len(chunk)
        self.digest.update(chunk)
        return chunk


class JobWriter:
    """Writes one job's files under ``prefix`` and, last, its manifest."""

    def __init__(self, store: Store, prefix: str) -> None:
        self.store = store
        self.prefix = prefix.strip("/")
        self._files: dict[str, FileEntry] = {}

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    def write(self, name: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self.store.put(self.key(name), data, content_type)
        self._files[name] = FileEntry(name, len(data), hashlib.sha256(data).hexdigest(), content_type)

    def write_json(self, name: str, value: Any) -> None:
        self.write(name, dump_json(value), "application/json")

    def write_stream(
        self, name: str, stream: IO[bytes], content_type: str = "application/octet-stream"
    ) -> None:
        reader = _HashingReader(stream)
        self.store.put_stream(self.key(name), reader, content_type)  # type: ignore[arg-type]
        self._files[name] = FileEntry(name, reader.size, reader.digest.hexdigest(), content_type)

    @property
    def files(self) -> Iterator[FileEntry]:
        return iter(sorted(self._files.values(), key=lambda f: f.path))

    def finish(self, meta: Mapping[str, Any]) -> dict[str, Any]:
        """Write `manifest.json` (files with size and sha256, plus ``meta``) and return it."""
        manifest: dict[str, Any] = {
            "manifest_version": MANIFEST_VERSION,
            **meta,
            "files": [
                {"path": f.path, "size": f.size, "sha256": f.sha256, "content_type": f.content_type}
                for f in self.files
            ],
        }
        self.store.put(self.key(MANIFEST), dump_json(manifest), "application/json")
        return manifest


def dump_json(value: Any) -> bytes:
    """The one JSON encoding of outputs: sorted keys, 2-space indent, trailing newline (deterministic)."""
    return (json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")
