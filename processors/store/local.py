"""`file://` store: a local folder; each object written to a temp file, fsynced, then renamed."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from processors.store.base import Store, StoreError

_CHUNK = 1024 * 1024
#: `LocalStore.sync` fsyncs files one by one up to this many, and syncs the system past it.
_FSYNC_EACH_UP_TO = 32


def _copy(source: IO[bytes], target: IO[bytes]) -> None:
    while chunk := source.read(_CHUNK):
        target.write(chunk)


@contextlib.contextmanager
def _fsynced_temp(path: Path, fill: bytes | IO[bytes], *, fsync: bool = True) -> Iterator[str]:
    """A complete, fsynced temp file beside ``path`` for the caller to publish (rename or link);
    removed on the way out unless publishing moved it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            if isinstance(fill, bytes):
                out.write(fill)
            else:
                _copy(fill, out)
            out.flush()
            if fsync:
                os.fsync(out.fileno())
        yield tmp
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


class LocalStore(Store):
    """Objects are files under ``root``; `os.replace` makes each write atomic.

    By default each write is fsynced before it is published. ``sync_each=False`` (bulk writers such
    as `labelhook export`, which commit many files at a time) leaves that to `sync`: writes are
    still atomic to readers, and durable once `sync` returns.
    """

    def __init__(self, root: str | os.PathLike[str], *, sync_each: bool = True) -> None:
        self.root = Path(root)
        self.sync_each = sync_each
        self._unsynced: set[Path] = set()

    @classmethod
    def from_url(cls, url: str) -> LocalStore:
        # file://./var/out (relative), file:///abs/path
        return cls(url[len("file://") :] or ".")

    def _path(self, key: str) -> Path:
        parts = [p for p in key.split("/") if p]
        if not parts or any(p in (".", "..") for p in parts):
            raise StoreError(f"invalid key {key!r}", retryable=False)
        return self.root.joinpath(*parts)

    def _write(self, key: str, fill: bytes | IO[bytes]) -> None:
        path = self._path(key)
        try:
            with _fsynced_temp(path, fill, fsync=self.sync_each) as tmp:
                os.replace(tmp, path)
        except OSError as exc:
            raise StoreError(f"cannot write {key}: {exc.strerror or exc}") from exc
        if not self.sync_each:
            self._unsynced.add(path)

    def sync(self) -> None:
        """fsync every file written since the last call, then their folders (the renames).

        Past a few dozen files one ``sync()`` of the whole system is far cheaper than an fsync per
        file and per folder (each forces its own journal commit); it is what ``cp … && sync`` does.
        """
        if len(self._unsynced) > _FSYNC_EACH_UP_TO:
            os.sync()
            self._unsynced.clear()
            return
        folders: set[Path] = set()
        try:
            for path in sorted(self._unsynced):
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
                folders.add(path.parent)
            for folder in sorted(folders):
                fd = os.open(folder, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        except OSError as exc:
            raise StoreError(f"cannot sync {self.root}: {exc.strerror or exc}") from exc
        self._unsynced.clear()

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self._write(key, data)

    def put_stream(self, key: str, stream: IO[bytes], content_type: str = "application/octet-stream") -> None:
        self._write(key, stream)

    def create_exclusive(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        try:
            with _fsynced_temp(path, data) as tmp:
                # link() fails if the name exists (like O_EXCL) but publishes a complete, fsynced file:
                # no reader or crash ever leaves a claim marker that exists but is empty.
                os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError as exc:
            raise StoreError(f"cannot create {key}: {exc.strerror or exc}") from exc
        return True

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise KeyError(key) from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> list[str]:
        base = self.root.joinpath(*[p for p in prefix.split("/") if p])
        if not base.exists():
            return []
        return sorted(
            p.relative_to(self.root).as_posix()
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".tmp-")
        )

    def ping(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create {self.root}: {exc.strerror}") from exc
        if not os.access(self.root, os.W_OK):
            raise StoreError(f"{self.root} is not writable")

    def sweep_temporary(self, older_than: float = 3600.0, now: float | None = None) -> int:
        # A writer killed between mkstemp and rename (kill -9, power cut) leaves its `.tmp-*` behind;
        # a live one keeps writing to it, so an hour without a change means nobody will publish it.
        now = time.time() if now is None else now
        swept = 0
        for folder, _dirs, files in os.walk(self.root):
            for name in files:
                if not name.startswith(".tmp-"):
                    continue
                path = os.path.join(folder, name)
                with contextlib.suppress(FileNotFoundError):
                    if now - os.stat(path).st_mtime >= older_than:
                        os.unlink(path)
                        swept += 1
        return swept

    def describe(self) -> str:
        # An absolute `file:///…` URL: `file://var/out` would parse with `var` as the host.
        return self.root.absolute().as_uri()
