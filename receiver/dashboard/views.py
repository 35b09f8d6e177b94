"""The dashboard's pages as HTML: the overview, a delivery, a job (previews, legend, files)."""

from __future__ import annotations

from html import escape
from typing import Any
from urllib.parse import urlencode

from processors.history import mask_url_queries
from processors.store.base import MANIFEST
from receiver.dashboard.api import STATUS_NAMES, STATUSES, DashboardData
from receiver.dashboard.markup import (
    ago,
    colour,
    delivery_link,
    flash,
    job_link,
    replay_form,
    select,
    status_html,
    swatch,
    table,
    when,
)

_NO_FRAMES = "<p class=empty>no mask frames</p>"
PAGE_SIZE = 50
REFRESH_SECONDS = 10
STALE_HEARTBEAT_SECONDS = 90.0  # workers write one at least every 30 s


def workers_section(workers: list[dict[str, Any]], now: float) -> str:
    rows = []
    for w in workers:
        stale = now - w["heartbeat_at"] > STALE_HEARTBEAT_SECONDS
        state = "stopped" if w["stopped_at"] else ("silent" if stale else "up")
        totals = w["totals"]
        rows.append(
            [
                f"<code>{escape(w['worker'])}</code>",
                f"<span class='beat {state}'>{state}</span>",
                f"{ago(w['heartbeat_at'], now)} <small>({when(w['heartbeat_at'])})</small>",
                str(w["in_flight"]),
                str(totals["processed"]),
                str(totals["duplicate"] + totals["progress"] + totals["batch"]),
                str(totals["retried"]),
                str(totals["dead"]),
            ]
        )
    return (
        "<section id=workers><h2>Workers</h2>"
        + table(
            ["worker", "state", "last heartbeat", "in flight", "processed", "other acks", "retried", "dead"],
            rows,
            "no worker has reported yet (workers write a heartbeat to the store every few seconds)",
        )
        + "</section>"
    )


def pager(page: int, more: bool, query: dict[str, str]) -> str:
    def href(to: int) -> str:
        return escape("?" + urlencode({**query, "page": str(to)}) + "#deliveries")

    links = []
    if page > 0:
        links.append(f"<a rel=prev href='{href(page - 1)}'>← newer</a>")
    links.append(f"<span>page {page + 1}</span>")
    if more:
        links.append(f"<a rel=next href='{href(page + 1)}'>older →</a>")
    return f"<nav class=pager>{' '.join(links)}</nav>"


def overview(
    data: DashboardData,
    view: dict[str, Any],
    csrf: str,
) -> str:
    depth, deliveries, dead, jobs = view["depth"], view["deliveries"], view["dead"], view["jobs"]
    source, status, page = view["source"], view["status"], view["page"]
    depth_html = " ".join(
        f"<span class=pill>{escape(STATUS_NAMES.get(k, k))} {v}</span>" for k, v in sorted(depth.items())
    )
    refresh = view["refresh"]
    filters = (
        "<form method=get class=filters>"
        f"{select('source', 'sources', {s: s for s in data.sources}, source)}"
        f"{select('status', 'statuses', {s: STATUS_NAMES[s] for s in STATUSES}, status)}"
        f"<input type=hidden name=refresh value={'1' if refresh else '0'}>"
        "<button>filter</button></form>"
    )
    query = {k: v for k, v in (("source", source), ("status", status)) if v}
    toggle = urlencode({**query, "refresh": "0" if refresh else "1"})
    refresh_html = (
        f"<p class=refresh>{f'refreshing every {REFRESH_SECONDS} s' if refresh else 'auto-refresh off'}"
        f" · <a href='?{escape(toggle)}'>{'stop' if refresh else 'start'}</a></p>"
    )
    delivery_rows = [
        [
            delivery_link(d["id"]),
            escape(d["source"]),
            status_html(d["status"]),
            job_link(d["source"], d["job"]),
            str(d["attempts"]),
            f"{d['latency_s']:.3f} s",
            when(d["received_at"]),
            escape(d["last_error"] or ""),
        ]
        for d in deliveries[:PAGE_SIZE]
    ]
    hidden = f"<input type=hidden name=csrf value='{escape(csrf)}'>"
    dead_rows = [
        [
            delivery_link(d["id"]),
            escape(d["source"]),
            delivery_link(d["id"], d["job"]),
            str(d["attempts"]),
            escape(d["last_error"] or ""),
            when(d["updated_at"]),
            replay_form(hidden, d["id"]),
        ]
        for d in dead
    ]
    replay_all = (
        f"<form method=post action='/dashboard/replay'>{hidden}<input type=hidden name=all value=1>"
        "<button>replay all</button></form>"
        if dead
        else ""
    )
    job_rows = [
        [
            escape(j["source"]),
            job_link(j["source"], j["job_id"]),
            escape(j["state"]),
            escape(j.get("vendor_state") or ""),
            when(j["updated_at"]),
            escape(j.get("output") or ""),
        ]
        for j in jobs[:PAGE_SIZE]
    ]
    more_jobs = (
        f"<p class=note>the {PAGE_SIZE} most recently updated of {len(jobs)} jobs; "
        "<code>labelhook jobs</code> or <code>/api/jobs</code> lists them all</p>"
        if len(jobs) > PAGE_SIZE
        else ""
    )
    return (
        flash(view.get("replayed"))
        + refresh_html
        + f"<section id=queue><h2>Queue</h2>{depth_html}</section>"
        + workers_section(view["workers"], view["now"])
        + f"<section id=deliveries><h2>Recent deliveries</h2>{filters}"
        + table(
            ["delivery", "source", "status", "job", "attempts", "latency", "received (UTC)", "last error"],
            delivery_rows,
        )
        + pager(page, len(deliveries) > PAGE_SIZE, {**query, "refresh": "1" if refresh else "0"})
        + f"</section><section id=dead><h2>Dead letters</h2>{replay_all}"
        + table(
            ["delivery", "source", "job", "attempts", "reason", "since (UTC)", ""],
            dead_rows,
            "no dead letters",
        )
        + "</section><section id=jobs><h2>Jobs</h2>"
        + table(["source", "job", "state", "vendor state", "updated (UTC)", "output"], job_rows)
        + more_jobs
        + "</section><form method=post action='/dashboard/logout'>"
        + f"{hidden}<button class=link>log out</button></form>"
    )


def delivery_page(d: dict[str, Any], csrf: str, replayed: str | None) -> str:
    facts = [
        ("status", status_html(d["status"])),
        ("source", escape(d["source"])),
        ("vendor", escape(d["vendor"])),
        ("job", job_link(d["source"], d["job"])),
        ("attempts", str(d["attempts"])),
        ("received (UTC)", when(d["received_at"])),
        ("updated (UTC)", when(d["updated_at"])),
        ("last error", escape(d["last_error"] or "")),
    ]
    dl = "".join(f"<dt>{escape(k)}</dt><dd>{v}</dd>" for k, v in facts)
    hidden = f"<input type=hidden name=csrf value='{escape(csrf)}'>"
    replay = (
        f"<section id=replay><h2>Replay</h2><p>Put this dead letter back on the queue with a fresh"
        f" attempt count.</p>{replay_form(hidden, d['id'], back='delivery')}</section>"
        if d["status"] == "dead"
        else ""
    )
    rows = [
        [
            str(a.get("attempt", "")),
            when(a.get("started_at")),
            when(a.get("finished_at")),
            "<span class='status {0}'>{0}</span>".format(escape(str(a.get("outcome", "")))),
            escape(str(a.get("reason") or "")),
            f"<code>{escape(str(a.get('worker', '')))}</code>",
        ]
        for a in d["history"]
    ]
    empty = (
        "processed at its first attempt: no failures recorded"
        if d["status"] == "done"
        else "no finished attempt recorded yet"
    )
    return (
        flash(replayed)
        + f"<section id=delivery><h2>Delivery <code>{escape(d['id'])}</code></h2><dl>{dl}</dl></section>"
        + replay
        + "<section id=attempts><h2>Attempts</h2>"
        + table(["#", "started (UTC)", "finished (UTC)", "outcome", "reason", "worker"], rows, empty)
        + f"</section><section id=headers><h2>Request headers</h2>{_headers(d.get('headers'))}</section>"
        + f"<section id=body><h2>Callback body (preview)</h2>{_body(d)}</section>"
    )


#: Where a delivery page's body preview came from, in the page's words.
BODY_SOURCES = {
    "queue": "from the queue, which keeps bodies until the retention period",
    "job": "from the job's stored callback.json, written by this delivery",
    "history": "from the delivery's failure history",
}


def _headers(headers: object) -> str:
    if not isinstance(headers, dict) or not headers:
        return (
            "<p class=empty>not recorded: the queue no longer keeps this delivery (retention), it came"
            " from polling, or it arrived before headers were recorded</p>"
        )
    # A header may carry a presigned URL (a referer, a callback URL): its query string is a credential.
    rows = [[f"<code>{escape(str(k))}</code>", escape(mask_url_queries(str(v)))] for k, v in headers.items()]
    return table(["header", "value"], rows, "") + (
        "<p class=note>Values of credential headers (authorization, cookies, signatures, tokens,"
        " keys and each source's own secret header) were redacted when the callback arrived.</p>"
    )


def _body(d: dict[str, Any]) -> str:
    preview = d.get("body_preview")
    if not preview:
        return (
            "<p class=empty>no longer kept: the queue dropped it after the retention period and no"
            " other copy names this delivery; a processed callback's body is among the job's output"
            " files</p>"
        )
    origin = BODY_SOURCES.get(str(d.get("body_source")), "")
    return (
        f"<p class=note id=body-source>Preview {escape(origin)}. Values of secret-looking keys and URL"
        f" query strings are masked.</p><pre class=body>{escape(preview)}</pre>"
    )


def job_page(source: str, job_id: str, detail: dict[str, Any]) -> str:
    job = detail["job"]
    facts = "".join(
        f"<dt>{escape(k)}</dt><dd>{escape(str(job.get(k) or ''))}</dd>"
        for k in ("source", "vendor", "project", "state", "vendor_state", "last_delivery", "output", "reason")
    )

    def file_href(path: str) -> str:
        return "/dashboard/file?" + urlencode({"source": source, "job": job_id, "path": path})

    file_rows = [
        [
            f"<a href='{escape(file_href(str(f['path'])))}'>{escape(str(f['path']))}</a>",
            str(f["size"]),
            escape(f["content_type"] or ""),
        ]
        for f in detail["files"]
    ]
    if detail["files"]:
        file_rows.append([f"<a href='{escape(file_href(MANIFEST))}'>{MANIFEST}</a>", "", "application/json"])
    area_rows = [
        [
            f"{swatch(a['color'])}{escape(str(a['name']))}",
            str(a["id"]),
            f"{a['area']:,}",
            f"{a['share'] * 100:.1f} %",
        ]
        for a in detail["class_areas"]
    ]
    legend = "".join(
        f"<li>{swatch(a['color'])}{escape(str(a['name']))} <code>{escape(colour(a['color']))}</code></li>"
        for a in detail["class_areas"]
        if a["id"] != 0
    )
    warnings = detail["warnings"]
    warning_items = []
    for hex_colour, count in (warnings.get("unknown_colors") or {}).items():
        warning_items.append(f"<li>unknown colour <code>{escape(hex_colour)}</code>: {int(count):,} px</li>")
    for key in warnings.get("invalid_legend_keys") or []:
        warning_items.append(f"<li>invalid legend key <code>{escape(str(key))}</code></li>")
    for key in warnings.get("empty_instances") or []:
        warning_items.append(f"<li>empty instance <code>{escape(str(key))}</code></li>")
    warnings_html = f"<ul class=warnings>{''.join(warning_items)}</ul>" if warning_items else "<p>none</p>"
    frames = []
    for frame in detail["frames"]:
        query = {"source": source, "job": job_id, "frame": str(frame)}
        sem = "/dashboard/mask?" + urlencode({**query, "kind": "semantic"})
        ins = "/dashboard/mask?" + urlencode({**query, "kind": "instances"})
        frames.append(
            f"<div class=frame><h3>frame {frame}</h3><div class=masks>"
            f"<figure><img class=semantic alt='semantic mask, frame {frame}' src='{escape(sem)}'>"
            "<figcaption><b>semantic</b>: each pixel in its class's colour (legend)</figcaption></figure>"
            f"<figure><img class=instances alt='instance mask, frame {frame}' src='{escape(ins)}'>"
            "<figcaption><b>instances</b>: one colour per object, black = none</figcaption></figure>"
            "</div></div>"
        )
    return (
        f"<section><dl>{facts}</dl></section>"
        f"<section id=previews><h2>Masks</h2>{''.join(frames) or _NO_FRAMES}"
        + (f"<h3>Legend</h3><ul class=legend>{legend}</ul>" if legend and frames else "")
        + "</section>"
        "<section id=areas><h2>Pixels per class</h2>"
        + table(["class", "id", "pixels", "share"], area_rows, "no class areas")
        + f"</section><section id=warnings><h2>Warnings</h2>{warnings_html}</section>"
        "<section id=files><h2>Files (manifest)</h2>"
        + table(["path", "bytes", "content type"], file_rows, "no manifest yet")
        + "</section>"
    )


_NO_FRAMES = "<p class=empty>no mask frames</p>"
PAGE_SIZE = 50
REFRESH_SECONDS = 10
STALE_HEARTBEAT_SECONDS = 90.0  # workers write one at least every 30 s
