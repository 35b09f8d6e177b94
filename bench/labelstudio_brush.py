"""Benchmark: Label Studio brush RLE decode, labelhook against the SDK's `decode_rle`, on real editor output.

    .venv/bin/python bench/labelstudio_brush.py [--repeat N]

Inputs: the editor's own examples in tests/conformance/payloads/labelstudio/ (magic wand 3000×2860, brush with
anti-aliased alpha 2242×2802, and a 1 MB stream with 5 839 multi-value literal chunks). (a) labelhook
`decode_alpha` (alpha only, vectorised literal chunks); (b) label-studio-sdk `decode_rle` as published
(a '0'/'1' string of the whole stream, one Python step per value of a literal chunk), then its
``reshape(…)[:, :, 3]``, transcribed in `tests/test_labelstudio_masks.py`. Both outputs are compared.
Also: one `v1,` HMAC check against one `v1a,` ed25519 check of a 2 KB Standard Webhooks body.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hmac
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from processors.vendors.labelstudio.brush import decode_alpha
from tests.test_labelstudio_masks import reference_decode

DATA = Path(__file__).resolve().parents[1] / "tests" / "conformance" / "payloads" / "labelstudio"


def samples() -> list[tuple[str, bytes, int, int]]:
    out = []
    for name in ("brush_rle_sample_magicwand.json", "brush_rle_sample_image_tools.json"):
        result = json.loads((DATA / name).read_text())["result"]
        item = next(r for r in result if r["type"] in ("magicwand", "brush"))
        out.append((name, bytes(item["value"]["rle"]), item["original_width"], item["original_height"]))
    multi = json.loads(gzip.decompress((DATA / "brush_rle_sample_multiliteral.json.gz").read_bytes()))
    out.append(("brush_rle_sample_multiliteral.json.gz", bytes(multi["result"]["value"]["rle"]), 2242, 2802))
    return out


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, value = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), value


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"{'sample':40} {'bytes':>9} {'pixels':>10} {'labelhook ms':>13} {'SDK ms':>9} {'ratio':>7}")
    for name, rle, width, height in samples():
        ours_s, ours = timed(lambda r=rle, w=width, h=height: decode_alpha(r, w, h), args.repeat)
        ref_s, ref = timed(
            lambda r=rle, w=width, h=height: reference_decode(list(r))[3::4].reshape(h, w), args.repeat
        )
        assert (ours == np.minimum(ref, 255)).all(), name
        print(
            f"{name:40} {len(rle):>9} {width * height:>10} {ours_s * 1000:>13.1f} {ref_s * 1000:>9.1f} "
            f"{ref_s / ours_s:>6.1f}x"
        )
    verify_costs()


def verify_costs() -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    body = json.dumps({"type": "job.completed", "data": {"pad": "x" * 1950}}).encode()
    signed = b"msg_1.1700000000." + body
    key = b"k" * 32
    private = Ed25519PrivateKey.generate()
    public, signature = private.public_key(), private.sign(signed)
    expected = hmac.digest(key, signed, "sha256")
    n = 20000
    start = time.perf_counter()
    for _ in range(n):
        hmac.compare_digest(hmac.digest(key, signed, "sha256"), expected)
    v1 = (time.perf_counter() - start) / n
    start = time.perf_counter()
    for _ in range(n // 10):
        public.verify(signature, signed)
    v1a = (time.perf_counter() - start) / (n // 10)
    print(
        f"\nStandard Webhooks, {len(body)} B body: v1 HMAC {v1 * 1e6:.1f} µs, v1a ed25519 {v1a * 1e6:.1f} µs "
        f"({v1a / v1:.0f}x); signature {base64.b64encode(signature)[:12].decode()}…"
    )


if __name__ == "__main__":
    main()
