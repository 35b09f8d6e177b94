"""The CLI's manners, as a user meets them in a shell: help everywhere, errors that name the thing,
no traceback on a closed pipe, no queue conjured up in the wrong directory, honest `decode`, a
progress bar that fits the terminal, and logs with RFC 3339 times and no third-party chatter."""

from __future__ import annotations

import argparse
import io
import json
import os
import pty
import re
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image

from processors.jobs import JobBook
from processors.queue.sqlite import SQLiteQueue
from processors.store import open_store
from processors.store.local import LocalStore
from receiver.cli import build_parser
from tests.support import cli_env, run_cli, serving

RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _parsers(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(parser.prog, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                found += _parsers(child)
    return found


def test_every_command_option_and_argument_has_help() -> None:
    missing = []
    for prog, parser in _parsers(build_parser()):
        if not parser.description and prog != "labelhook":
            missing.append(f"{prog}: description")
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                missing += [f"{prog} {c.dest}" for c in action._choices_actions if not c.help]
            elif not action.help:
                missing.append(f"{prog} {action.dest}")
    assert missing == []


def test_help_and_version_from_the_shell(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    serve = run_cli("serve", "--help", env=env, cwd=tmp_path)
    run = run_cli("run", "--help", env=env, cwd=tmp_path)
    assert serve.returncode == run.returncode == 0
    assert "else 0.0.0.0" in serve.stdout and "127.0.0.1" not in serve.stdout  # serve is for a PaaS
    assert "else 127.0.0.1" in run.stdout
    for command in (["dead", "replay"], ["dead", "list"], ["jobs"], ["decode"], ["poll"], ["sources"]):
        done = run_cli(*command, "--help", env=env, cwd=tmp_path)
        assert done.returncode == 0 and done.stdout.startswith(f"usage: labelhook {' '.join(command)}")
    version = run_cli("--version", env=env, cwd=tmp_path)
    assert version.returncode == 0 and re.fullmatch(r"labelhook \S+\n", version.stdout)


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    book = JobBook(open_store(f"file://{tmp_path}/out"))
    for i in range(400):  # ~100 KiB of JSON: more than a pipe buffer holds
        book.note(source="acme", vendor="standard", job_id=f"job-{i:04}", project="acme", state="open")
    proc = subprocess.Popen(
        [sys.executable, "-m", "receiver", "jobs", "--json"],
        env=cli_env(tmp_path),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.read(10)  # `| head -c 10`
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(60) == 141, stderr
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr


def test_unknown_ids_and_sources_are_named_with_a_failing_status(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    SQLiteQueue(str(tmp_path / "queue.db"))  # an empty queue where the configuration points
    replay = run_cli("dead", "replay", "nonexist", env=env, cwd=tmp_path)
    assert replay.returncode == 1
    assert "no dead letter with id 'nonexist'" in replay.stderr
    jobs = run_cli("jobs", "--source", "nope", env=env, cwd=tmp_path)
    assert jobs.returncode == 1 and "no source named 'nope'" in jobs.stderr and "acme" in jobs.stderr
    poll = run_cli("poll", "nope", env=env, cwd=tmp_path)
    assert poll.returncode == 1 and "no source named 'nope'" in poll.stderr
    limit = run_cli("dead", "list", "--limit", "-3", env=env, cwd=tmp_path)
    assert limit.returncode == 2 and "'-3' is not a positive whole number" in limit.stderr
    neither = run_cli("dead", "replay", env=env, cwd=tmp_path)
    assert neither.returncode == 2 and "--all" in neither.stderr


def test_queue_readers_never_create_a_queue(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = cli_env(tmp_path, LABELHOOK_QUEUE="sqlite:///./var/queue.db")
    for command in (["dead", "list"], ["dead", "replay", "--all"], ["dead", "replay", "some-id"]):
        done = run_cli(*command, env=env, cwd=elsewhere)
        assert done.returncode == 1, (command, done.stderr)
        assert f"no queue at {elsewhere}/var/queue.db" in done.stderr
        assert "LABELHOOK_QUEUE" in done.stderr
    assert list(elsewhere.iterdir()) == []
    jobs = run_cli("jobs", env=env, cwd=elsewhere)
    assert jobs.returncode == 0 and f"no jobs recorded in file://{tmp_path}/out" in jobs.stderr


def _mask(path: Path, colours: list[tuple[int, int, int]]) -> Path:
    image = Image.new("RGBA", (len(colours), 4))
    for x, colour in enumerate(colours):
        for y in range(4):
            image.putpixel((x, y), (*colour, 255))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue())
    return path


def test_decode_names_the_json_warns_and_guards_its_out_dir(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    red, green, odd = (255, 0, 0), (0, 255, 0), (1, 2, 3)
    masks = [str(_mask(tmp_path / f"f{i}.png", [red, green, odd])) for i in range(3)]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"legend": ["#ff0000"]}))
    done = run_cli(
        "decode", masks[0], "--result", str(bad), "--out", str(tmp_path / "o"), env=env, cwd=tmp_path
    )
    assert done.returncode == 2 and f"{bad}: segmentation result has no legend object" in done.stderr
    assert "f0.png" not in done.stderr
    result = tmp_path / "result.json"
    result.write_text(json.dumps({"legend": {"#ff0000": "car", "#00ff00": "road"}}))
    out = tmp_path / "out"
    first = run_cli("decode", *masks, "--result", str(result), "--out", str(out), env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "warning: 1 unknown colour(s), 12 px left unlabeled: #010203 (12 px)" in first.stderr
    strict = run_cli(
        "decode",
        masks[0],
        "--result",
        str(result),
        "--out",
        str(tmp_path / "s"),
        "--strict",
        env=env,
        cwd=tmp_path,
    )
    assert strict.returncode == 1
    again = run_cli("decode", masks[0], "--result", str(result), "--out", str(out), env=env, cwd=tmp_path)
    assert again.returncode == 2 and "not empty" in again.stderr and "--force" in again.stderr
    (out / "notes.txt").write_text("mine")
    forced = run_cli(
        "decode", masks[0], "--result", str(result), "--out", str(out), "--force", env=env, cwd=tmp_path
    )
    assert forced.returncode == 0, forced.stderr
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["0"]  # no stale frames 1 and 2
    assert (out / "notes.txt").read_text() == "mine"  # only decode's own files are replaced


def _in_a_terminal(args: list[str], env: dict[str, str], cwd: Path, columns: int) -> str:
    """Run ``labelhook ARGS`` with stderr on a pseudo-terminal ``columns`` wide; its stderr."""
    import fcntl
    import struct
    import termios

    main_fd, child_fd = pty.openpty()
    fcntl.ioctl(child_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "receiver", *args],
        env={**env, "COLUMNS": str(columns)},
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=child_fd,
    )
    os.close(child_fd)
    chunks = []
    while True:
        try:
            chunk = os.read(main_fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(60)
    os.close(main_fd)
    return b"".join(chunks).decode()


def test_progress_fits_an_80_column_terminal_with_rate_and_eta(tmp_path: Path) -> None:
    result = tmp_path / "result.json"
    result.write_text(json.dumps({"legend": {"#ff0000": "car"}}))
    masks = [
        str(_mask(tmp_path / f"frame-with-a-long-name-{i:03}.png", [(255, 0, 0)] * 8)) for i in range(40)
    ]
    env = cli_env(tmp_path)
    text = _in_a_terminal(
        ["decode", *masks, "--result", str(result), "--out", str(tmp_path / "o")], env, tmp_path, 80
    )
    updates = [u for line in text.replace("\r\n", "\n").split("\n") for u in line.split("\r") if u.strip()]
    bars = [u for u in updates if u.startswith("decoding")]
    assert bars, text
    assert all(len(u) <= 80 for u in bars), max(bars, key=len)
    assert "40/40" in bars[-1] and "frame/s" in bars[-1] and "<" in bars[-1]  # rate and ETA
    # The bar ends its line: whatever is printed next (here on stdout) starts on a line of its own.
    assert text.endswith("\n"), repr(text[-100:])
    plain = run_cli(
        "decode", *masks[:2], "--result", str(result), "--out", str(tmp_path / "p"), env=env, cwd=tmp_path
    )
    assert [line for line in plain.stderr.splitlines() if line.startswith("decoding")] == [
        f"decoding: 1/2 {masks[0]}",
        f"decoding: 2/2 {masks[1]}",
    ]


def test_logs_have_rfc3339_times_and_no_third_party_info(
    tmp_path: Path, aws_env: dict[str, str], bucket: str
) -> None:
    with serving(tmp_path):
        time.sleep(0.5)
    [log_file] = tmp_path.glob("labelhook-*.log")
    lines = [json.loads(line) for line in log_file.read_text().splitlines() if line.startswith("{")]
    assert lines and all(RFC3339_UTC.match(line["ts"]) for line in lines)
    starting = next(line for line in lines if line["msg"] == "starting")
    assert starting["store"] == f"file://{tmp_path}/out"
    # boto3 with credentials from the environment: botocore says so at INFO on every command.
    env = cli_env(tmp_path, LABELHOOK_STORE=f"s3://{bucket}/out", **aws_env)
    done = run_cli("jobs", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Found credentials" not in done.stderr and "botocore" not in done.stderr


def test_a_relative_store_is_described_as_an_absolute_file_url(tmp_path: Path) -> None:
    os_cwd = Path.cwd()
    url = LocalStore("var/out").describe()
    assert url == (os_cwd / "var/out").as_uri() and url.startswith("file:///")


def test_a_missing_sqs_queue_is_named(tmp_path: Path, aws_env: dict[str, str]) -> None:
    env = cli_env(tmp_path, LABELHOOK_QUEUE="sqs://no-such-queue-22", **aws_env)
    done = run_cli("dead", "list", env=env, cwd=tmp_path)
    assert done.returncode == 1
    assert "queue unavailable (sqs://no-such-queue-22)" in done.stderr and "Traceback" not in done.stderr
