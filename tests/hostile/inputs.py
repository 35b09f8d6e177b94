"""Hostile inputs shared by the regression tests and `bench/hostile.py`: built, never downloaded."""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import zlib

CVAT_SECRET = "cvat-hostile-secret"


def nested(depth: int, leaf: object = "acceptance") -> object:
    """``[[[…leaf…]]]`` ``depth`` levels deep, built iteratively."""
    value: object = leaf
    for _ in range(depth):
        value = [value]
    return value


def deep_json(depth: int) -> bytes:
    """A JSON document nesting ``depth`` arrays, as text (never built as Python objects)."""
    return b"[" * depth + b"1" + b"]" * depth


def cvat_update_job(stage_depth: int, job_id: int = 7) -> bytes:
    """CVAT's `update:job` webhook body (the shape its docs show) with ``job.stage`` nested deep."""
    stage = b"[" * stage_depth + b'"acceptance"' + b"]" * stage_depth
    head = json.dumps(
        {"event": "update:job", "job": {"id": job_id, "state": "completed", "updated_date": "2024-01-01"}}
    ).encode()
    return head[:-2] + b', "stage": ' + stage + b"}}"


def cvat_headers(body: bytes, secret: str = CVAT_SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"content-type": "application/json", "x-signature-256": f"sha256={digest}"}


def gzip_bomb(decoded_bytes: int, layers: int = 1) -> bytes:
    """Zeros gzip-compressed ``layers`` times (~1000:1 per layer), built in 1 MiB steps: the zeros
    are never held in memory."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block, parts = bytes(1 << 20), []
    for _ in range(decoded_bytes // len(block)):
        parts.append(packer.compress(block))
    parts.append(packer.compress(bytes(decoded_bytes % len(block))) + packer.flush())
    data = b"".join(parts)
    for _ in range(layers - 1):
        data = gzip.compress(data, compresslevel=9)
    return data
