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


def _copy(source: IO[bytes], target: IO[bytes]) -> None:
    while chunk := source.read(_CHUNK):
        target.write(chunk)


@contextlib.contextmanager
def _fsynced_temp(path: Path, fill: bytes | IO[bytes]) -> Iterator[str]:
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
            os.fsync(out.fileno())
        yield tmp
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


class LocalStore(Store):
    """Objects are files under ``root``; `os.replace` makes each write atomic."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

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
            with _fsynced_temp(path, fill) as tmp:
                os.replace(tmp, path)
        except OSError as exc:
            raise StoreError(f"cannot write {key}: {exc.strerror or exc}") from exc

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
        return f"file://{self.root}"
