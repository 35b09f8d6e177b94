"""`/dashboard` and `/api/…`: the ops pages (HTML, escaped), behind ``LABELHOOK_DASHBOARD_TOKEN``.

Credentials and CSRF are checked by `receiver.dashboard.auth`; the JSON behind the pages is
`receiver.dashboard.api`. Without a configured token none of these routes exist (404).
"""

from __future__ import annotations

import asyncio
import re
import time
from html import escape
from importlib.resources import files
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from processors.config import Secret
from processors.fleet import Fleet
from processors.queue import Queue
from processors.store import Store
from processors.store.base import MANIFEST
from receiver.dashboard.api import STATUS_NAMES, STATUSES, DashboardData, api_routes
from receiver.dashboard.auth import COOKIE, SESSION_SECONDS, DashboardAuth, check_origin
from receiver.errors import BadRequest, NotFound

_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")
_CSS = files("receiver.dashboard").joinpath("static/dashboard.css").read_text()


async def form_fields(request: Request) -> dict[str, list[str]]:
    """An urlencoded form body (the app caps body size); no multipart parser needed."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        raise BadRequest("expected an HTML form")
    return parse_qs((await request.body()).decode("utf-8", "replace"))


# -- HTML ----------------------------------------------------------------------------------------


def _page(title: str, body: str, status: int = 200, refresh: int | None = None) -> HTMLResponse:
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


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) if ts else ""


def _ago(ts: float, now: float) -> str:
    seconds = max(0, int(now - ts))
    if seconds < 120:
        return f"{seconds} s ago"
    return f"{seconds // 60} min ago" if seconds < 7200 else f"{seconds // 3600} h ago"


def _status(status: str) -> str:
    return f"<span class='status {escape(status)}'>{escape(STATUS_NAMES.get(status, status))}</span>"


def _delivery_link(delivery_id: str, text: str | None = None) -> str:
    href = f"/dashboard/deliveries/{quote(delivery_id, safe='')}"
    label = escape(text) if text else f"<code class=id>{escape(delivery_id)}</code>"
    return f"<a href='{escape(href)}'>{label}</a>"


def _table(headers: list[str], rows: list[list[str]], empty: str = "nothing yet") -> str:
    if not rows:
        return f"<p class=empty>{escape(empty)}</p>"
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _colour(value: Any) -> str:
    # Legend colours come from the vendor: only a plain #rrggbb goes into a style attribute.
    return value if isinstance(value, str) and _HEX.match(value) else "#000000"


def _swatch(colour: Any) -> str:
    # A border and the hex code beside it: two close colours stay tellable apart.
    return f"<span class=swatch style='background:{_colour(colour)}' title='{_colour(colour)}'></span>"


def _job_link(source: str, job: str) -> str:
    href = f"/dashboard/jobs/{quote(source, safe='')}/{quote(job, safe='')}"
    return f"<a href='{escape(href)}'>{escape(job)}</a>"


def _select(name: str, plural: str, options: dict[str, str], chosen: str | None) -> str:
    items = [f"<option value=''>all {plural}</option>"] + [
        f"<option value='{escape(value)}'{' selected' if value == chosen else ''}>{escape(label)}</option>"
        for value, label in options.items()
    ]
    return f"<select name={name} aria-label={name}>{''.join(items)}</select>"


def _workers_section(workers: list[dict[str, Any]], now: float) -> str:
    rows = []
    for w in workers:
        stale = now - w["heartbeat_at"] > STALE_HEARTBEAT_SECONDS
        state = "stopped" if w["stopped_at"] else ("silent" if stale else "up")
        totals = w["totals"]
        rows.append(
            [
                f"<code>{escape(w['worker'])}</code>",
                f"<span class='beat {state}'>{state}</span>",
                f"{_ago(w['heartbeat_at'], now)} <small>({_when(w['heartbeat_at'])})</small>",
                str(w["in_flight"]),
                str(totals["processed"]),
                str(totals["duplicate"] + totals["progress"] + totals["batch"]),
                str(totals["retried"]),
                str(totals["dead"]),
            ]
        )
    return (
        "<section id=workers><h2>Workers</h2>"
        + _table(
            ["worker", "state", "last heartbeat", "in flight", "processed", "other acks", "retried", "dead"],
            rows,
            "no worker has reported yet (workers write a heartbeat to the store every few seconds)",
        )
        + "</section>"
    )


def _pager(page: int, more: bool, query: dict[str, str]) -> str:
    def href(to: int) -> str:
        return escape("?" + urlencode({**query, "page": str(to)}) + "#deliveries")

    links = []
    if page > 0:
        links.append(f"<a rel=prev href='{href(page - 1)}'>← newer</a>")
    links.append(f"<span>page {page + 1}</span>")
    if more:
        links.append(f"<a rel=next href='{href(page + 1)}'>older →</a>")
    return f"<nav class=pager>{' '.join(links)}</nav>"


def _overview(
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
        f"{_select('source', 'sources', {s: s for s in data.sources}, source)}"
        f"{_select('status', 'statuses', {s: STATUS_NAMES[s] for s in STATUSES}, status)}"
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
            _delivery_link(d["id"]),
            escape(d["source"]),
            _status(d["status"]),
            _job_link(d["source"], d["job"]),
            str(d["attempts"]),
            f"{d['latency_s']:.3f} s",
            _when(d["received_at"]),
            escape(d["last_error"] or ""),
        ]
        for d in deliveries[:PAGE_SIZE]
    ]
    hidden = f"<input type=hidden name=csrf value='{escape(csrf)}'>"
    dead_rows = [
        [
            _delivery_link(d["id"]),
            escape(d["source"]),
            _delivery_link(d["id"], d["job"]),
            str(d["attempts"]),
            escape(d["last_error"] or ""),
            _when(d["updated_at"]),
            _replay_form(hidden, d["id"]),
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
            _job_link(j["source"], j["job_id"]),
            escape(j["state"]),
            escape(j.get("vendor_state") or ""),
            _when(j["updated_at"]),
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
        _flash(view.get("replayed"))
        + refresh_html
        + f"<section id=queue><h2>Queue</h2>{depth_html}</section>"
        + _workers_section(view["workers"], view["now"])
        + f"<section id=deliveries><h2>Recent deliveries</h2>{filters}"
        + _table(
            ["delivery", "source", "status", "job", "attempts", "latency", "received (UTC)", "last error"],
            delivery_rows,
        )
        + _pager(page, len(deliveries) > PAGE_SIZE, {**query, "refresh": "1" if refresh else "0"})
        + f"</section><section id=dead><h2>Dead letters</h2>{replay_all}"
        + _table(
            ["delivery", "source", "job", "attempts", "reason", "since (UTC)", ""],
            dead_rows,
            "no dead letters",
        )
        + "</section><section id=jobs><h2>Jobs</h2>"
        + _table(["source", "job", "state", "vendor state", "updated (UTC)", "output"], job_rows)
        + more_jobs
        + "</section><form method=post action='/dashboard/logout'>"
        + f"{hidden}<button class=link>log out</button></form>"
    )


def _replay_form(hidden: str, delivery_id: str, back: str = "") -> str:
    return (
        f"<form method=post action='/dashboard/replay'>{hidden}"
        f"<input type=hidden name=id value='{escape(delivery_id)}'>"
        f"<input type=hidden name=back value='{escape(back)}'>"
        f"<button class=replay data-id='{escape(delivery_id)}'>replay</button></form>"
    )


def _flash(replayed: str | None) -> str:
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


def _delivery_page(d: dict[str, Any], csrf: str, replayed: str | None) -> str:
    facts = [
        ("status", _status(d["status"])),
        ("source", escape(d["source"])),
        ("vendor", escape(d["vendor"])),
        ("job", _job_link(d["source"], d["job"])),
        ("attempts", str(d["attempts"])),
        ("received (UTC)", _when(d["received_at"])),
        ("updated (UTC)", _when(d["updated_at"])),
        ("last error", escape(d["last_error"] or "")),
    ]
    dl = "".join(f"<dt>{escape(k)}</dt><dd>{v}</dd>" for k, v in facts)
    hidden = f"<input type=hidden name=csrf value='{escape(csrf)}'>"
    replay = (
        f"<section id=replay><h2>Replay</h2><p>Put this dead letter back on the queue with a fresh"
        f" attempt count.</p>{_replay_form(hidden, d['id'], back='delivery')}</section>"
        if d["status"] == "dead"
        else ""
    )
    rows = [
        [
            str(a.get("attempt", "")),
            _when(a.get("started_at")),
            _when(a.get("finished_at")),
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
    preview = d.get("body_preview")
    body = (
        f"<pre class=body>{escape(preview)}</pre><p class=note>Values of secret-looking keys and URL query"
        " strings are masked.</p>"
        if preview
        else "<p class=empty>kept only for deliveries that failed an attempt; a processed callback's"
        " body is among the job's output files</p>"
    )
    return (
        _flash(replayed)
        + f"<section id=delivery><h2>Delivery <code>{escape(d['id'])}</code></h2><dl>{dl}</dl></section>"
        + replay
        + "<section id=attempts><h2>Attempts</h2>"
        + _table(["#", "started (UTC)", "finished (UTC)", "outcome", "reason", "worker"], rows, empty)
        + f"</section><section id=body><h2>Callback body (preview)</h2>{body}</section>"
    )


def _job_page(source: str, job_id: str, detail: dict[str, Any]) -> str:
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
            f"{_swatch(a['color'])}{escape(str(a['name']))}",
            str(a["id"]),
            f"{a['area']:,}",
            f"{a['share'] * 100:.1f} %",
        ]
        for a in detail["class_areas"]
    ]
    legend = "".join(
        f"<li>{_swatch(a['color'])}{escape(str(a['name']))} <code>{escape(_colour(a['color']))}</code></li>"
        for a in detail["class_areas"]
        if a["id"] != 0
    )
    warnings = detail["warnings"]
    warning_items = []
    for colour, count in (warnings.get("unknown_colors") or {}).items():
        warning_items.append(f"<li>unknown colour <code>{escape(colour)}</code>: {int(count):,} px</li>")
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
        + _table(["class", "id", "pixels", "share"], area_rows, "no class areas")
        + f"</section><section id=warnings><h2>Warnings</h2>{warnings_html}</section>"
        "<section id=files><h2>Files (manifest)</h2>"
        + _table(["path", "bytes", "content type"], file_rows, "no manifest yet")
        + "</section>"
    )


_NO_FRAMES = "<p class=empty>no mask frames</p>"
PAGE_SIZE = 50
REFRESH_SECONDS = 10
STALE_HEARTBEAT_SECONDS = 90.0  # workers write one at least every 30 s


def _not_found(text: str) -> str:
    back = "<p><a href='/dashboard'>back to the dashboard</a></p>"
    return f"<section class=notfound><p>{escape(text)}</p>{back}</section>"


_LOGIN_FORM = (
    "<form method=post action='/dashboard/login' class=login><label>Dashboard token "
    "<input type=password name=token autocomplete=current-password autofocus></label>"
    "<button>log in</button></form>"
)


def dashboard_routes(
    token: Secret, queue: Queue, store: Store, sources: list[str], fleet: Fleet | None = None
) -> list[Route]:
    """All dashboard and `/api` routes; mount them only when a token is configured."""
    auth = DashboardAuth(token)
    data = DashboardData(queue, store, sources, fleet)

    async def overview(request: Request) -> Response:
        identity = auth.require(request)
        q = request.query_params
        source = q.get("source") or None
        status = q.get("status") or None
        page = int(q["page"]) if q.get("page", "").isdigit() and int(q["page"]) < 1000 else 0
        view: dict[str, Any] = {
            "source": source if source in data.sources else None,
            "status": status if status in STATUSES else None,
            "page": page,
            "refresh": q.get("refresh", "1") != "0",
            "replayed": q.get("replayed"),
            "now": time.time(),
        }
        # One row more than a page tells whether an older page exists.
        view["depth"], view["deliveries"], view["dead"], view["jobs"], view["workers"] = await _gather(
            data.depth(),
            data.deliveries(view["source"], view["status"], PAGE_SIZE + 1, page * PAGE_SIZE),
            data.dead_letters(),
            data.jobs(),
            data.workers(),
        )
        body = _overview(data, view, auth.csrf_token(identity))
        return _page("dashboard", body, refresh=REFRESH_SECONDS if view["refresh"] else None)

    async def delivery_page(request: Request) -> Response:
        identity = auth.require(request)
        delivery_id = request.path_params["id"]
        detail = await data.delivery(delivery_id)
        if detail is None:
            return _page(
                "no such delivery", _not_found(f"No delivery {delivery_id!r} in the queue's log."), 404
            )
        body = _delivery_page(detail, auth.csrf_token(identity), request.query_params.get("replayed"))
        return _page(f"delivery {delivery_id}", body, refresh=None if detail["status"] == "dead" else 10)

    async def job_page(request: Request) -> Response:
        auth.require(request)
        source, job_id = request.path_params["source"], request.path_params["job"]
        detail = await data.job(source, job_id)
        if detail is None:
            # A job the job book has not recorded (its delivery never got that far): say so in HTML,
            # and point at its deliveries, rather than answer an engineer's click with raw JSON.
            related = [
                d
                for d in await data.deliveries(source if source in data.sources else None)
                if d["job"] == job_id
            ]
            links = "".join(f"<li>{_delivery_link(d['id'])} {_status(d['status'])}</li>" for d in related)
            text = f"No output or record for job {job_id!r} of source {source!r} yet."
            extra = f"<h2>Its deliveries</h2><ul>{links}</ul>" if links else ""
            return _page(f"job {job_id}", _not_found(text) + extra, 404)
        return _page(f"job {job_id}", _job_page(source, job_id, detail))

    async def file(request: Request) -> Response:
        auth.require(request)
        q = request.query_params
        found = await data.file(q.get("source", ""), q.get("job", ""), q.get("path", ""))
        if found is None:
            raise NotFound("no such file in the job's manifest", code="unknown_file")
        content, content_type = found
        name = q.get("path", "").rsplit("/", 1)[-1]
        inline = content_type.startswith("image/png") or content_type in ("application/json", "text/plain")
        headers = {
            "Cache-Control": "private, no-store",
            "X-Content-Type-Options": "nosniff",
            # Vendor bytes: never run as a page of ours, whatever they contain.
            "Content-Security-Policy": "sandbox; default-src 'none'; img-src 'self'",
            "Content-Disposition": ("inline" if inline else "attachment") + f'; filename="{quote(name)}"',
        }
        # JSON shown as text: a browser renders it as-is, and no type sniffing turns it into HTML.
        media = "text/plain; charset=utf-8" if content_type == "application/json" else content_type
        return Response(content, media_type=media, headers=headers)

    async def mask(request: Request) -> Response:
        auth.require(request)
        q = request.query_params
        frame = q.get("frame", "")
        if not frame.isdigit():
            raise BadRequest("frame must be a frame index")
        png = await data.mask(q.get("source", ""), q.get("job", ""), int(frame), q.get("kind", ""))
        if png is None:
            raise NotFound("no such mask", code="unknown_mask")
        return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=60"})

    async def replay(request: Request) -> Response:
        fields = await form_fields(request)
        auth.require(request, unsafe=True, csrf=(fields.get("csrf") or [""])[0])
        ids = None if fields.get("all") == ["1"] else fields.get("id") or []
        count = await data.replay(ids)
        if fields.get("back") == ["delivery"] and ids:
            target = f"/dashboard/deliveries/{quote(ids[0], safe='')}?replayed={count}"
            return RedirectResponse(target, status_code=303)
        return RedirectResponse(f"/dashboard?replayed={count}#dead", status_code=303)

    async def login_form(request: Request) -> Response:
        return _page("log in", _LOGIN_FORM)

    async def login(request: Request) -> Response:
        check_origin(request)
        fields = await form_fields(request)
        if not auth.check_token((fields.get("token") or [""])[0]):
            return _page("log in", "<p class=error>wrong token</p>" + _LOGIN_FORM, status=401)
        response = RedirectResponse("/dashboard", status_code=303)
        response.set_cookie(
            COOKIE,
            auth.new_session(),
            max_age=SESSION_SECONDS,
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    async def logout(request: Request) -> Response:
        fields = await form_fields(request)
        auth.require(request, unsafe=True, csrf=(fields.get("csrf") or [""])[0])
        response = RedirectResponse("/dashboard/login", status_code=303)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response

    return [
        Route("/dashboard", overview, methods=["GET"]),
        Route("/dashboard/login", login_form, methods=["GET"]),
        Route("/dashboard/login", login, methods=["POST"]),
        Route("/dashboard/logout", logout, methods=["POST"]),
        Route("/dashboard/replay", replay, methods=["POST"]),
        Route("/dashboard/mask", mask, methods=["GET"]),
        Route("/dashboard/file", file, methods=["GET"]),
        Route("/dashboard/deliveries/{id}", delivery_page, methods=["GET"]),
        Route("/dashboard/jobs/{source}/{job:path}", job_page, methods=["GET"]),
        *api_routes(data, auth.require),
    ]


async def _gather(*aws: Any) -> list[Any]:
    return list(await asyncio.gather(*aws))
