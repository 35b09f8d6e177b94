"""A newcomer's first run: `make run` installs only what runs, and `run --demo` says where to look."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support import ROOT, cli_env, free_port, labelhook, wait_for


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_installs_the_runtime_only_and_make_test_the_dev_extras(tmp_path: Path) -> None:
    def plan(target: str) -> str:
        # A throwaway venv path: `make -n` prints the recipe as if nothing were installed yet.
        done = subprocess.run(
            ["make", "-n", target, f"VENV={tmp_path}/venv"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    run = plan("run")
    installs = [line for line in run.splitlines() if "pip install" in line]
    assert len(installs) == 1 and installs[0].rstrip().endswith("-e .")  # no [dev], no [test]
    assert "-q" not in installs[0].split() and "--progress-bar on" in installs[0]
    assert "labelhook run --demo" in run
    assert any(line.rstrip().endswith("-e '.[dev]'") for line in plan("test").splitlines() if "pip" in line)


def test_run_demo_prints_where_outputs_and_the_dashboard_are(tmp_path: Path) -> None:
    port = free_port()
    env = cli_env(tmp_path, PORT=str(port), LABELHOOK_STORE="file://./var/out")
    for key in [k for k in env if k.startswith(("LABELHOOK_SOURCES", "LABELHOOK_ACME"))]:
        del env[key]
    process = labelhook("run", "--demo", env=env, cwd=tmp_path)
    try:

        def banner() -> str | None:
            logs = "".join(p.read_text() for p in tmp_path.glob("labelhook-*.log"))
            return logs if "labelhook is running" in logs else None

        text = wait_for(banner, timeout=60, interval=0.2, what="the banner")
        outputs = re.search(r"^  outputs +(\S+)$", text, re.M)
        assert outputs and outputs.group(1) == f"file://{tmp_path}/var/out"
        dashboard = re.search(
            r"^  dashboard +(\S+) +\(log in with the token (\S+), made for this run\)$", text, re.M
        )
        assert dashboard and dashboard.group(1) == f"http://127.0.0.1:{port}/dashboard"
        token = dashboard.group(2)
        # The printed token logs in, and the demo's outputs are where the banner says.
        queue = httpx.get(f"http://127.0.0.1:{port}/api/queue", headers={"Authorization": f"Bearer {token}"})
        assert queue.status_code == 200
        wait_for(
            lambda: list((tmp_path / "var/out").rglob("manifest.json")), timeout=60, what="a demo manifest"
        )
    finally:
        process.terminate()
        process.wait(30)
