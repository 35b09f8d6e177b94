"""The `labelhook` console script: the parser and the dispatch; one module per command group.

serve.py    run / serve / work: the long-running processes
sources.py  sources             dead.py     dead list / replay
jobs.py     submit / poll / jobs decode.py  decode (offline)
export.py   export (one dataset from every finished job)
prune.py    prune (retention now)
backends.py the queue + store a command opens; output.py tables and JSON; progress.py the bar

Each command group is imported only when it runs, so `labelhook sources` stays instant.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from processors.config import ConfigError, load_settings


class _PrintVersion(argparse.Action):
    """`--version`, resolved only when asked: reading package metadata costs ~20 ms of start-up."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        from processors.version import VERSION

        print(f"labelhook {VERSION}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="labelhook", description="Receiver for annotation-vendor callbacks."
    )
    parser.add_argument("--version", action=_PrintVersion, help="print the installed version and exit")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="web + worker in one process (local mode)")
    run.add_argument("--demo", action="store_true", help="also send signed sample callbacks to itself")
    serve = sub.add_parser("serve", help="web only (Procfile web)")
    for p in (run, serve):
        p.add_argument("--host", default=None, help="bind address (default: HOST, or 127.0.0.1 for run)")
        p.add_argument("--port", type=int, default=None, help="port (default: $PORT or 8000)")
    sub.add_parser("work", help="worker only (Procfile worker)")
    sources = sub.add_parser("sources", help="configured sources (secrets redacted)")
    sources.add_argument("--json", action="store_true")
    dead = sub.add_parser("dead", help="dead letters")
    dead_sub = dead.add_subparsers(dest="dead_command", required=True)
    dead_list = dead_sub.add_parser("list", help="list dead letters with their reasons")
    dead_list.add_argument("--limit", type=int, default=100)
    dead_list.add_argument("--json", action="store_true")
    replay = dead_sub.add_parser("replay", help="re-queue dead letters")
    replay.add_argument("ids", nargs="*")
    replay.add_argument("--all", action="store_true")
    submit = sub.add_parser("submit", help="create a job at the vendor and record it")
    submit.add_argument("source")
    submit.add_argument("input", help="INPUT.json: the job(s) in the vendor's create-job shape")
    submit.add_argument("--json", action="store_true")
    poll = sub.add_parser("poll", help="poll a source's open jobs once; enqueue the finished ones")
    poll.add_argument("source")
    poll.add_argument("--json", action="store_true")
    jobs = sub.add_parser("jobs", help="known jobs: state, last delivery, output location")
    jobs.add_argument("--source", default=None)
    jobs.add_argument("--json", action="store_true")
    from receiver.cli import prune

    prune.add_parser(sub)
    decode = sub.add_parser("decode", help="decode one vendor mask offline")
    decode.add_argument("mask", nargs="+", help="the mask PNG; several are a video's frames 0, 1, …")
    decode.add_argument("--result", required=True, help="the vendor result JSON (legend, instances)")
    decode.add_argument("--out", required=True, help="output directory")
    from receiver.cli import export

    export.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, load and validate the configuration once, run the command; the exit status."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run" and args.demo and not os.environ.get("LABELHOOK_SOURCES"):
            from receiver.demo.sender import load_demo_settings

            settings = load_demo_settings(os.environ)  # adds the Playment sandbox source
        else:
            settings = load_settings()
    except ConfigError as exc:
        print(f"labelhook: configuration error: {exc}", file=sys.stderr)
        return 2
    from processors.logs import configure_logging

    # Long-running processes log to stdout (the PaaS log stream); one-shot commands keep stdout for data.
    configure_logging(stream=sys.stdout if args.command in ("run", "serve", "work") else sys.stderr)
    if args.command in ("run", "serve"):
        from receiver.cli import serve

        serve.warn_demo_key(settings)
        if args.host is None:
            # run is local mode: not reachable from the network unless asked; serve is for a PaaS.
            args.host = settings.host or ("127.0.0.1" if args.command == "run" else "0.0.0.0")
        return serve.serve(
            settings, args, with_worker=args.command == "run", demo=getattr(args, "demo", False)
        )
    if args.command == "work":
        from receiver.cli import serve

        return serve.work(settings)
    if args.command == "sources":
        from receiver.cli import sources

        return sources.sources(settings, args.json)
    if args.command == "dead":
        from receiver.cli import dead

        return dead.dead(settings, args)
    if args.command == "decode":
        from receiver.cli import decode

        return decode.decode(settings, args)
    if args.command == "export":
        from receiver.cli import export

        return export.export(settings, args)
    if args.command == "prune":
        from receiver.cli import prune

        return prune.prune(settings, args)
    if args.command in ("submit", "poll", "jobs"):
        from receiver.cli import jobs

        command: int = getattr(jobs, args.command)(settings, args)
        return command
    return 2
