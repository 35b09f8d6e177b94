"""The dashboard's HTML building blocks: the page shell (CSP, no script), tables, links, labels.

Everything that comes from a vendor or a caller is escaped here or by the caller; colours go into a
style attribute only as a plain ``#rrggbb``.
"""

from __future__ import annotations

import re
import time
from html import escape
from importlib.resources import files
from typing import Any
from urllib.parse import quote

from starlette.responses import HTMLResponse

from receiver.dashboard.api import STATUS_NAMES

_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")
_CSS = files("receiver.dashboard").joinpath("static/dashboard.css").read_text()


def page(title: str, body: str, status: int = 200, refresh: int | None = None) -> HTMLResponse:
    # Auto-refresh without script (the CSP allows none): the browser reloads the page itself.
    meta = f"<meta http-equiv=refresh content={refresh}>" if refresh else ""
    html = (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)} · labelhook</title>"
        f"<meta name=viewport content='width=device-width'>{meta}<style>{_CSS}</style></head><body>"
        f"<header><a href='/dashboard'>labelhook</a> <span>{escape(title)}</span></header>"
        f"<main>{body}</main></body></html>"
    )
    headers = {"Cache-Control": "no-store", "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin"}
    headers["Content-Security-Policy"] = "default-src 'self'; style-src 'unsafe-inline'; img-src 'self'"
    return HTMLResponse(html, status_code=status, headers=headers)


def when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) if ts else ""


def ago(ts: float, now: float) -> str:
    seconds = max(0, int(now - ts))
    if seconds < 120:
        return f"{seconds} s ago"
    return f"{seconds // 60} min ago" if seconds < 7200 else f"{seconds // 3600} h ago"


def status_html(status: str) -> str:
    return f"<span class='status {escape(status)}'>{escape(STATUS_NAMES.get(status, status))}</span>"


def delivery_link(delivery_id: str, text: str | None = None) -> str:
    href = f"/dashboard/deliveries/{quote(delivery_id, safe='')}"
    label = escape(text) if text else f"<code class=id>{escape(delivery_id)}</code>"
    return f"<a href='{escape(href)}'>{label}</a>"


def table(headers: list[str], rows: list[list[str]], empty: str = "nothing yet") -> str:
    if not rows:
        return f"<p class=empty>{escape(empty)}</p>"
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def colour(value: Any) -> str:
    # Legend colours come from the vendor: only a plain #rrggbb goes into a style attribute.
    return value if isinstance(value, str) and _HEX.match(value) else "#000000"


def swatch(value: Any) -> str:
    # A border and the hex code beside it: two close colours stay tellable apart.
    return f"<span class=swatch style='background:{colour(value)}' title='{colour(value)}'></span>"


def job_link(source: str, job: str) -> str:
    href = f"/dashboard/jobs/{quote(source, safe='')}/{quote(job, safe='')}"
    return f"<a href='{escape(href)}'>{escape(job)}</a>"


def select(name: str, plural: str, options: dict[str, str], chosen: str | None) -> str:
    items = [f"<option value=''>all {plural}</option>"] + [
        f"<option value='{escape(value)}'{' selected' if value == chosen else ''}>{escape(label)}</option>"
        for value, label in options.items()
    ]
    return f"<select name={name} aria-label={name}>{''.join(items)}</select>"


def replay_form(hidden: str, delivery_id: str, back: str = "") -> str:
    return (
        f"<form method=post action='/dashboard/replay'>{hidden}"
        f"<input type=hidden name=id value='{escape(delivery_id)}'>"
        f"<input type=hidden name=back value='{escape(back)}'>"
        f"<button class=replay data-id='{escape(delivery_id)}'>replay</button></form>"
    )


def flash(replayed: str | None) -> str:
    if replayed is None or not replayed.isdigit():
        return ""
    count = int(replayed)
    text = (
        f"Replayed {count} dead letter{'s' if count != 1 else ''}: "
        "back on the queue with a fresh attempt count."
        if count
        else "Nothing replayed: the delivery is no longer a dead letter."
    )
    return f"<p class=flash role=status>{escape(text)}</p>"


def not_found(text: str) -> str:
    back = "<p><a href='/dashboard'>back to the dashboard</a></p>"
    return f"<section class=notfound><p>{escape(text)}</p>{back}</section>"
