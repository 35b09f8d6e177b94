"""`s3://bucket/prefix` store on boto3; large objects go multipart (aborted by boto3 on failure)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any
from urllib.parse import urlsplit

from processors.store.base import Store, StoreError

_MULTIPART_THRESHOLD = 16 * 1024 * 1024
_CONFLICT_RETRIES = 2
# Codes that no retry can fix; everything else (5xx, throttling, network) is worth another attempt.
_PERMANENT_CODES = {
    "AccessDenied",
    "NoSuchBucket",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidBucketName",
}


@contextmanager
def _translate(action: str) -> Iterator[None]:
    """Map botocore's exceptions to `StoreError` at the edge (retryable unless clearly permanent)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        raise StoreError(f"s3 {action}: {code or exc}", retryable=code not in _PERMANENT_CODES) from exc
    except BotoCoreError as exc:
        raise StoreError(f"s3 {action}: {type(exc).__name__}") from exc


class S3Store(Store):
    """Objects under ``prefix`` in ``bucket``; ``client`` is a boto3 S3 client (injected in tests)."""

    def __init__(
        self, bucket: str, prefix: str = "", *, client: Any = None, endpoint_url: str | None = None
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if client is None:
            import boto3
            from botocore.config import Config

            client = boto3.client(
                "s3",
                endpoint_url=endpoint_url,
                config=Config(
                    retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=30
                ),
            )
        self.client = client

    @classmethod
    def from_url(cls, url: str, *, endpoint_url: str | None = None) -> S3Store:
        parts = urlsplit(url)
        if not parts.netloc:
            raise ValueError("s3 store URL needs a bucket: s3://bucket/prefix")
        return cls(parts.netloc, parts.path, endpoint_url=endpoint_url)

    def _key(self, key: str) -> str:
        # The same keys as LocalStore accepts, so a layout never depends on the backend.
        if not key.strip("/") or any(p in (".", "..") for p in key.split("/")):
            raise StoreError(f"invalid key {key!r}", retryable=False)
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        with _translate(f"put {key}"):
            self.client.put_object(
                Bucket=self.bucket, Key=self._key(key), Body=data, ContentType=content_type
            )

    def put_stream(self, key: str, stream: IO[bytes], content_type: str = "application/octet-stream") -> None:
        from boto3.s3.transfer import TransferConfig

        config = TransferConfig(
            multipart_threshold=_MULTIPART_THRESHOLD,
            multipart_chunksize=_MULTIPART_THRESHOLD,
            max_concurrency=2,
        )
        with _translate(f"upload {key}"):
            self.client.upload_fileobj(
                stream, self.bucket, self._key(key), ExtraArgs={"ContentType": content_type}, Config=config
            )

    def create_exclusive(self, key: str, data: bytes) -> bool:
        from botocore.exceptions import ClientError

        # S3 conditional write: the bucket decides atomically, so this holds across machines. 412 means
        # the object exists. 409 ConditionalRequestConflict means a conflicting operation (a delete, say)
        # was in flight and the outcome is unknown; AWS says to retry, and the retry answers 200 or 412.
        conflicts = 0
        while True:
            try:
                with _translate(f"create {key}"):
                    self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*")
                return True
            except StoreError as exc:
                if not isinstance(exc.__cause__, ClientError):
                    raise
                response = exc.__cause__.response
                code = response.get("Error", {}).get("Code")
                status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                if status == 412 or code == "PreconditionFailed":
                    return False
                conflicts += 1
                if code != "ConditionalRequestConflict" or conflicts > _CONFLICT_RETRIES:
                    raise

    def get(self, key: str) -> bytes:
        from botocore.exceptions import ClientError

        try:
            with _translate(f"get {key}"):
                body: bytes = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
                return body
        except StoreError as exc:
            if isinstance(exc.__cause__, ClientError) and "NoSuchKey" in exc.reason:
                raise KeyError(key) from None
            raise

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise StoreError(f"s3 head {key}: {exc}") from exc
        return True

    def list(self, prefix: str) -> list[str]:
        relative = prefix.strip("/")
        full = "/".join(p for p in (self.prefix, relative) if p)
        full = full + "/" if full else ""
        keys: list[str] = []
        strip: Callable[[str], str] = (lambda k: k[len(self.prefix) + 1 :]) if self.prefix else (lambda k: k)
        with _translate(f"list {prefix}"):
            for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=full
            ):
                keys.extend(strip(obj["Key"]) for obj in page.get("Contents", []))
        return sorted(keys)

    def ping(self) -> None:
        # A one-key listing inside the prefix, not HeadBucket: an IAM policy that scopes s3:ListBucket to
        # the prefix (infra/template.yaml) allows this but denies HeadBucket.
        with _translate("list bucket"):
            prefix = f"{self.prefix}/" if self.prefix else ""
            self.client.list_objects_v2(Bucket=self.bucket, Prefix=prefix, MaxKeys=1)

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"
