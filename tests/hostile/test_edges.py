"""#10–13 and #15: replay and dashboard inputs, the decode CLI, terminal output, config, /readyz."""

from __future__ import annotations

import asyncio
import resource
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import httpx
import pytest

from processors.errors import Permanent
from processors.queue import RetryPolicy
from processors.queue.sqlite import SQLiteQueue
from processors.store import open_store
from receiver.app import create_app
from tests.hostile.inputs import deep_json
from tests.support import ROOT, LiveServer, acme_delivery, cli_env, run_cli

TOKEN = "dashboard-token-0123456789abcdef"


def _dashboard(make_settings: Any, tmp: Path) -> Any:
    settings = make_settings(LABELHOOK_DASHBOARD_TOKEN=TOKEN)
    return create_app(settings, SQLiteQueue(str(tmp / "queue.db")), open_store(settings.store_url))


def test_replay_with_a_deep_body_and_mask_with_a_huge_frame_are_400s(
    make_settings: Any, tmp_path: Path
) -> None:
    auth = {"authorization": f"Bearer {TOKEN}"}
    with LiveServer(_dashboard(make_settings, tmp_path)) as live:
        for depth in (100, 100_000):
            answer = httpx.post(
                f"{live.url}/api/replay",
                content=deep_json(depth),
                headers={**auth, "content-type": "application/json", "origin": live.url},
            )
            assert answer.status_code == 400, answer.text
            assert answer.json()["error"] in ("too_deep", "malformed_body")
        for frame in ("9" * 5000, "²", "1e3", "-1"):
            answer = httpx.get(
                f"{live.url}/dashboard/mask",
                params={"source": "acme", "job": "j", "frame": frame},
                headers=auth,
            )
            assert answer.status_code == 400, (frame[:10], answer.status_code)


def _huge_png(path: Path, width: int) -> None:
    """A valid 8-bit grey PNG ``width`` × 1, all zeros: ~100 KB for 100 M pixels."""
    import struct

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    packer = zlib.compressobj(9)
    row = bytes(1 << 20)
    parts = [packer.compress(b"\x00")]
    for _ in range(width // len(row)):
        parts.append(packer.compress(row))
    parts.append(packer.compress(bytes(width % len(row))) + packer.flush())
    header = struct.pack(">IIBBBBB", width, 1, 8, 0, 0, 0, 0)
    png = (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")
    )
    path.write_bytes(png)


def _limit_memory() -> None:  # runs in the child: a small address space makes MemoryError certain
    resource.setrlimit(resource.RLIMIT_AS, (1536 * 1024 * 1024, 1536 * 1024 * 1024))


@pytest.mark.parametrize("max_pixels", [None, "100000000"], ids=["default-limit", "limit-admits-it"])
def test_decode_of_a_mask_too_big_for_memory_is_one_line(tmp_path: Path, max_pixels: str | None) -> None:
    """100 000 000 × 1: refused from its header by the default limit; where the limit admits it, in a
    1.5 GiB address space, decoded or refused in one line, never a `MemoryError` traceback."""
    _huge_png(tmp_path / "wide.png", 100_000_000)
    (tmp_path / "result.json").write_text('{"legend": {"#ffffff": "thing"}}')
    env = cli_env(tmp_path) if max_pixels is None else cli_env(tmp_path, LABELHOOK_MAX_PIXELS=max_pixels)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "receiver",
            "decode",
            str(tmp_path / "wide.png"),
            "--result",
            str(tmp_path / "result.json"),
            "--out",
            str(tmp_path / "out"),
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_limit_memory,
    )
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    if max_pixels is None:
        assert done.returncode == 2 and "over the limit" in done.stderr
    else:
        assert done.returncode in (0, 2), done.stderr[-2000:]
        if done.returncode == 2:
            assert done.stderr.splitlines()[-1].startswith("labelhook decode:")


def test_escape_sequences_from_vendors_never_reach_the_terminal(tmp_path: Path) -> None:
    hostile = "job\x1b]0;owned\x07\x1b[2J\u202e"

    async def make_dead_letter() -> None:
        queue = SQLiteQueue(str(tmp_path / "queue.db"), RetryPolicy(1, 0.01, 0.01))
        await queue.enqueue(acme_delivery(hostile))
        [lease] = await queue.claim(1, 30, 1)
        await queue.fail(lease, Permanent(f"vendor said {hostile}"))
        await queue.close()

    asyncio.run(make_dead_letter())
    done = run_cli("dead", "list", env=cli_env(tmp_path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout and "\x07" not in done.stdout and "\u202e" not in done.stdout
    assert "job\\x1b]0;owned\\x07\\x1b[2J\\u202e" in done.stdout


@pytest.mark.parametrize("value", ["abc", "-5", "0", "1e9"])
def test_a_bad_tolerance_is_a_one_line_configuration_error(tmp_path: Path, value: str) -> None:
    done = run_cli("sources", env=cli_env(tmp_path, LABELHOOK_ACME_TOLERANCE_SECONDS=value), cwd=tmp_path)
    assert done.returncode == 2
    assert "TOLERANCE_SECONDS" in done.stderr and "Traceback" not in done.stderr


def test_readyz_shows_queue_figures_only_to_token_holders(make_settings: Any, tmp_path: Path) -> None:
    with LiveServer(_dashboard(make_settings, tmp_path)) as live:
        anonymous = httpx.get(f"{live.url}/readyz")
        assert anonymous.status_code == 200 and "depth" not in anonymous.json()
        assert httpx.get(f"{live.url}/metrics").status_code == 401  # the same rule as /metrics
        holder = httpx.get(f"{live.url}/readyz", headers={"authorization": f"Bearer {TOKEN}"})
        assert holder.status_code == 200 and "queued" in holder.json()["depth"]
    assert ROOT.exists()
