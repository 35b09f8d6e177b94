"""Structured logs: one JSON object per line on stdout, fields passed with ``extra=``."""

from __future__ import annotations

import json
import logging
import sys
import time
from datetime import UTC, datetime
from typing import Any, TextIO

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is a field.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "taskName"}


def rfc3339(timestamp: float) -> str:
    """``2026-11-30T16:03:32.123Z``: RFC 3339, UTC, milliseconds; what log stores and humans both read."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line: ts, level, logger, msg, then the ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": rfc3339(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_") and key != "color_message":
                entry[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            entry["error_type"] = record.exc_info[0].__name__
        return json.dumps(entry, default=str, separators=(",", ":"))


def configure_logging(level: str = "INFO", *, stream: TextIO | None = None) -> None:
    """Send every logger (ours and uvicorn's error log) through the JSON formatter, on stdout by default.

    Commands that print data for scripts (`dead list --json`, `jobs --json`) log to stderr instead.
    """
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # Third-party libraries log at WARNING and up (botocore's "Found credentials in environment
    # variables." on every command is INFO); our own loggers and uvicorn's start/stop lines at `level`.
    root.setLevel(max(logging.WARNING, logging.getLevelName(level)))
    for name in ("labelhook", "uvicorn.error"):
        logging.getLogger(name).setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # httpx logs every request at INFO; our own lines already say what was fetched and why.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # The access log duplicates what our own delivery log says, and costs throughput on the hot path.
    logging.getLogger("uvicorn.access").disabled = True
    logging.Formatter.converter = time.gmtime
