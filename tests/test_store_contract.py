"""The store contract, run against every backend: LocalStore on tmp_path, S3Store on moto over real HTTP."""

from __future__ import annotations

import hashlib
import threading
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from processors.store import Store, StoreError
from processors.store.local import LocalStore
from processors.store.s3 import S3Store

STREAM_BYTES = 40 * 1024 * 1024


class PatternStream:
    """A read-only stream of ``size`` deterministic bytes, generated on demand and hashed as it goes."""

    def __init__(self, size: int) -> None:
        self.remaining = size
        self.block = hashlib.sha256(b"labelhook").digest() * 2048  # 64 KiB
        self.digest = hashlib.sha256()
        self.largest_read = 0

    def read(self, size: int = -1) -> bytes:
        size = self.remaining if size < 0 else min(size, self.remaining)
        self.largest_read = max(self.largest_read, size)
        reps, extra = divmod(size, len(self.block))
        chunk = self.block * reps + self.block[:extra]
        self.remaining -= len(chunk)
        self.digest.update(chunk)
        return chunk


class StoreContract:
    """Behaviour every store backend must show. Subclasses provide the `store` fixture."""

    # Streaming means reading the source in bounded pieces and, where measurable, a peak of Python
    # allocations far below the object size.
    largest_read_limit = 1024 * 1024
    stream_memory_limit: int | None = 8 * 1024 * 1024

    def test_put_get_exists_round_trip(self, store: Store) -> None:
        assert not store.exists("v/p/j/result.json")
        store.put("v/p/j/result.json", b'{"a": 1}', "application/json")
        assert store.exists("v/p/j/result.json")
        assert store.get("v/p/j/result.json") == b'{"a": 1}'
        store.put("v/p/j/result.json", b"{}")  # overwrite replaces the whole object
        assert store.get("v/p/j/result.json") == b"{}"

    def test_get_of_a_missing_key_is_a_key_error(self, store: Store) -> None:
        with pytest.raises(KeyError):
            store.get("v/p/j/absent.json")

    def test_list_is_recursive_sorted_and_scoped_to_the_prefix(self, store: Store) -> None:
        for key in ("v/p/j2/a", "v/p/j1/masks/0/semantic.png", "v/p/j1/b", "w/other"):
            store.put(key, b"x")
        assert store.list("v/p/j1") == ["v/p/j1/b", "v/p/j1/masks/0/semantic.png"]
        assert store.list("v/p/j1/") == store.list("v/p/j1")
        assert store.list("v") == ["v/p/j1/b", "v/p/j1/masks/0/semantic.png", "v/p/j2/a"]
        assert store.list("") == [*store.list("v"), "w/other"]
        assert store.list("nothing/here") == []

    def test_put_stream_of_40_mib_keeps_memory_bounded(self, store: Store) -> None:
        stream = PatternStream(STREAM_BYTES)
        tracemalloc.start()
        try:
            store.put_stream("v/p/j/media/video.bin", stream)  # type: ignore[arg-type]
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert stream.largest_read <= self.largest_read_limit
        if self.stream_memory_limit is not None:
            assert peak < self.stream_memory_limit, f"peak {peak / 2**20:.1f} MiB"
        data = store.get("v/p/j/media/video.bin")
        assert len(data) == STREAM_BYTES
        assert hashlib.sha256(data).digest() == stream.digest.digest()

    def test_create_exclusive_racing_from_8_threads_has_exactly_one_winner(self, store: Store) -> None:
        barrier = threading.Barrier(8)
        results: dict[int, bool | BaseException] = {}

        def contender(i: int) -> None:
            barrier.wait()
            try:
                results[i] = store.create_exclusive("_claims/dedupe-key", b"claimed by %d" % i)
            except BaseException as exc:
                results[i] = exc

        threads = [threading.Thread(target=contender, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(results) == list(range(8)), results
        assert all(isinstance(r, bool) for r in results.values()), results
        [winner] = [i for i, won in results.items() if won]
        assert store.get("_claims/dedupe-key") == b"claimed by %d" % winner
        assert store.create_exclusive("_claims/dedupe-key", b"late") is False

    def test_create_exclusive_does_not_replace_a_put_object(self, store: Store) -> None:
        store.put("v/p/j/manifest.json", b"{}")
        assert store.create_exclusive("v/p/j/manifest.json", b"other") is False
        assert store.get("v/p/j/manifest.json") == b"{}"
        assert store.create_exclusive("v/p/j/new.json", b"new") is True
        assert store.get("v/p/j/new.json") == b"new"

    def test_ping_succeeds_on_a_usable_store(self, store: Store) -> None:
        store.ping()
        assert store.describe()

    @pytest.mark.parametrize("key", ["", "/", "../escape", "v/../../escape", "v/./x"])
    def test_invalid_keys_are_refused_permanently(self, store: Store, key: str) -> None:
        for write in (lambda: store.put(key, b"x"), lambda: store.create_exclusive(key, b"x")):
            with pytest.raises(StoreError) as info:
                write()
            assert info.value.retryable is False


class TestLocalStore(StoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Store:
        return LocalStore(tmp_path / "out")

    def test_unwritable_root_fails_ping(self, tmp_path: Path) -> None:
        blocker = tmp_path / "file"
        blocker.write_text("not a directory")
        with pytest.raises(StoreError):
            LocalStore(blocker / "out").ping()


class TestS3Store(StoreContract):
    # boto3 reads the stream in 16 MiB parts (S3Store's multipart chunk size). The moto server runs in
    # this process and keeps every part in memory, so tracemalloc would count the server too: the
    # multipart test below checks the upload really went in parts instead.
    largest_read_limit = 16 * 1024 * 1024
    stream_memory_limit = None

    @pytest.fixture
    def store(self, s3_client: Any, bucket: str) -> Store:
        return S3Store(bucket, "out", client=s3_client)

    def test_put_stream_goes_multipart(self, store: Store, s3_client: Any, bucket: str) -> None:
        store.put_stream("v/p/j/media/video.bin", PatternStream(STREAM_BYTES))  # type: ignore[arg-type]
        etag = s3_client.head_object(Bucket=bucket, Key="out/v/p/j/media/video.bin")["ETag"]
        assert etag.strip('"').endswith("-3")  # multipart ETag: md5-of-parts "-" part count (16+16+8 MiB)

    def test_missing_bucket_fails_ping_permanently(self, s3_client: Any) -> None:
        with pytest.raises(StoreError) as info:
            S3Store("lh-no-such-bucket", client=s3_client).ping()
        assert "NoSuchBucket" in info.value.reason and info.value.retryable is False
