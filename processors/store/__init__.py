"""`open_store(url)`: pick a store backend by URL scheme; boto3 is imported only for `s3://`."""

from __future__ import annotations

from processors.store.base import JobWriter, Store, StoreError, dump_json

__all__ = ["JobWriter", "Store", "StoreError", "dump_json", "open_store"]


def open_store(url: str, *, endpoint_url: str | None = None) -> Store:
    """`file://./var/out` (relative), `file:///abs/path`, or `s3://bucket/prefix`."""
    scheme = url.split(":", 1)[0]
    if scheme == "file":
        from processors.store.local import LocalStore

        return LocalStore.from_url(url)
    if scheme == "s3":
        from processors.store.s3 import S3Store

        return S3Store.from_url(url, endpoint_url=endpoint_url)
    raise ValueError(f"no store backend for scheme {scheme!r}")
