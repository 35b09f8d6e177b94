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
import signal
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


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="labelhook",
        description="Receiver for annotation-vendor callbacks: verify, queue durably, fetch results, "
        "decode masks, store outputs. Configuration comes from LABELHOOK_* environment variables.",
        epilog="`labelhook COMMAND --help` explains each command.",
    )
    parser.add_argument("--version", action=_PrintVersion, help="print the installed version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser(
        "run",
        help="web + worker in one process (local mode)",
        description="Web and worker in one process, bound to 127.0.0.1 unless HOST or --host says otherwise.",
    )
    run.add_argument("--demo", action="store_true", help="also send signed sample callbacks to itself")
    serve = sub.add_parser(
        "serve", help="web only (Procfile web)", description="The web process alone: intake, dashboard, API."
    )
    for p, default_host in ((run, "127.0.0.1"), (serve, "0.0.0.0")):
        p.add_argument("--host", default=None, help=f"bind address (default: $HOST, else {default_host})")
        p.add_argument("--port", type=int, default=None, help="port (default: $PORT, else 8000)")
    sub.add_parser(
        "work",
        help="worker only (Procfile worker)",
        description="The worker alone: claim deliveries, fetch, decode, store; SIGTERM drains.",
    )
    json_help = "print JSON instead of a table"
    sources = sub.add_parser(
        "sources", help="configured sources (secrets redacted)", description="The configured sources."
    )
    sources.add_argument("--json", action="store_true", help=json_help)
    dead = sub.add_parser("dead", help="dead letters: list, replay", description="Dead letters.")
    dead_sub = dead.add_subparsers(dest="dead_command", required=True, metavar="SUBCOMMAND")
    dead_list = dead_sub.add_parser(
        "list", help="list dead letters with their reasons", description="Dead letters, newest first."
    )
    dead_list.add_argument(
        "--limit", type=_positive, default=100, help="show at most this many (default: %(default)s)"
    )
    dead_list.add_argument("--json", action="store_true", help=json_help)
    replay = dead_sub.add_parser(
        "replay",
        help="re-queue dead letters",
        description="Put dead letters back on the queue with a fresh attempt count.",
    )
    replay.add_argument("ids", nargs="*", metavar="ID", help="delivery ids (as `dead list` shows them)")
    replay.add_argument("--all", action="store_true", help="replay every dead letter")
    source_help = "a configured source name (see `labelhook sources`)"
    submit = sub.add_parser(
        "submit",
        help="create jobs at the vendor and record them",
        description="Create jobs at the vendor and record them, so callbacks and polls find them.",
    )
    submit.add_argument("source", help=source_help)
    submit.add_argument("input", help="INPUT.json: the job(s) in the vendor's create-job shape")
    submit.add_argument("--json", action="store_true", help=json_help)
    poll = sub.add_parser(
        "poll",
        help="poll a source's open jobs once; enqueue the finished ones",
        description="Ask the vendor about every open job of SOURCE once; enqueue the finished ones.",
    )
    poll.add_argument("source", help=source_help)
    poll.add_argument("--json", action="store_true", help="print the summary as JSON")
    jobs = sub.add_parser(
        "jobs",
        help="known jobs: state, last delivery, output location",
        description="The jobs the job book knows, from the store.",
    )
    jobs.add_argument("--source", default=None, help="only this source's jobs")
    jobs.add_argument("--json", action="store_true", help=json_help)
    from receiver.cli import prune

    prune.add_parser(sub)
    decode = sub.add_parser(
        "decode",
        help="decode vendor masks offline",
        description="Decode vendor mask PNGs into class/instance maps, a labelmap and COCO annotations.",
    )
    decode.add_argument("mask", nargs="+", help="the mask PNG; several are a video's frames 0, 1, …")
    decode.add_argument("--result", required=True, help="the vendor result JSON (legend, instances)")
    decode.add_argument("--out", required=True, help="output directory (must be empty unless --force)")
    decode.add_argument(
        "--force", action="store_true", help="decode into a used --out, replacing an earlier decode's files"
    )
    decode.add_argument(
        "--strict", action="store_true", help="exit 1 when the decode had warnings (e.g. unknown colours)"
    )
    from receiver.cli import export

    export.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, load and validate the configuration once, run the command; the exit status."""
    try:
        return _main(argv)
    except BrokenPipeError:
        # `labelhook jobs --json | head`: the reader left. Exit quietly, as `cat` would; point stdout
        # at /dev/null first so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except KeyboardInterrupt:
        return 128 + signal.SIGINT


def _main(argv: Sequence[str] | None) -> int:
    from processors.queue import QueueUnavailable
    from receiver.cli.backends import NoQueue

    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except NoQueue as exc:
        print(f"labelhook: {exc}", file=sys.stderr)
        return 1
    except QueueUnavailable as exc:
        # Name the queue: "NonExistentQueue" alone does not say which one was looked for.
        where = os.environ.get("LABELHOOK_QUEUE") or "the default sqlite:///./var/queue.db"
        print(f"labelhook: queue unavailable ({where}): {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    try:
        if args.command == "run" and args.demo and not os.environ.get("LABELHOOK_SOURCES"):
            from receiver.demo.sender import load_demo_settings

            environ = dict(os.environ)
            if not environ.get("LABELHOOK_DASHBOARD_TOKEN"):
                # The demo shows its dashboard: a token made for this run, printed once it is up
                # (local mode listens on 127.0.0.1 only, like a notebook server's login token).
                import secrets

                args.demo_token = environ["LABELHOOK_DASHBOARD_TOKEN"] = secrets.token_urlsafe(18)
            settings = load_demo_settings(environ)  # adds the Playment sandbox source
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
