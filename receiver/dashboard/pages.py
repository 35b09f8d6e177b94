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
from processors.queue import Queue
from processors.store import Store
from receiver.dashboard.api import STATUSES, DashboardData, api_routes
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


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    html = (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)} · labelhook</title>"
        f"<meta name=viewport content='width=device-width'><style>{_CSS}</style></head><body>"
        f"<header><a href='/dashboard'>labelhook</a> <span>{escape(title)}</span></header>"
        f"<main>{body}</main></body></html>"
    )
    headers = {"Cache-Control": "no-store", "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin"}
    headers["Content-Security-Policy"] = "default-src 'self'; style-src 'unsafe-inline'; img-src 'self'"
    return HTMLResponse(html, status_code=status, headers=headers)


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) if ts else ""


def _table(headers: list[str], rows: list[list[str]], empty: str = "nothing yet") -> str:
    if not rows:
        return f"<p class=empty>{escape(empty)}</p>"
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _colour(value: Any) -> str:
    # Legend colours come from the vendor: only a plain #rrggbb goes into a style attribute.
    return value if isinstance(value, str) and _HEX.match(value) else "#000000"


def _job_link(source: str, job: str) -> str:
    href = f"/dashboard/jobs/{quote(source, safe='')}/{quote(job, safe='')}"
    return f"<a href='{escape(href)}'>{escape(job)}</a>"


def _select(name: str, options: list[str], chosen: str | None) -> str:
    items = [f"<option value=''>all {name}s</option>"] + [
        f"<option{' selected' if o == chosen else ''}>{escape(o)}</option>" for o in options
    ]
    return f"<select name={name}>{''.join(items)}</select>"


def _overview(
    data: DashboardData,
    depth: dict[str, int],
    deliveries: list[dict[str, Any]],
    dead: list[dict[str, Any]],
    jobs: list[dict[str, Any]],
    csrf: str,
    source: str | None,
    status: str | None,
) -> str:
    depth_html = " ".join(f"<span class=pill>{escape(k)} {v}</span>" for k, v in sorted(depth.items()))
    filters = (
        "<form method=get class=filters>"
        f"{_select('source', data.sources, source)}{_select('status', list(STATUSES), status)}"
        "<button>filter</button></form>"
    )
    delivery_rows = [
        [
            escape(d["source"]),
            f"<span class='status {escape(d['status'])}'>{escape(d['status'])}</span>",
            _job_link(d["source"], d["job"]),
            str(d["attempts"]),
            f"{d['latency_s']:.3f} s",
            _when(d["received_at"]),
            escape(d["last_error"] or ""),
        ]
        for d in deliveries
    ]
    hidden = f"<input type=hidden name=csrf value='{escape(csrf)}'>"
    dead_rows = [
        [
            escape(d["source"]),
            _job_link(d["source"], d["job"]),
            str(d["attempts"]),
            escape(d["last_error"] or ""),
            _when(d["updated_at"]),
            f"<form method=post action='/dashboard/replay'>{hidden}"
            f"<input type=hidden name=id value='{escape(d['id'])}'>"
            f"<button class=replay data-id='{escape(d['id'])}'>replay</button></form>",
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
        for j in jobs
    ]
    return (
        f"<section><h2>Queue</h2>{depth_html}</section>"
        f"<section id=deliveries><h2>Recent deliveries</h2>{filters}"
        + _table(
            ["source", "status", "job", "attempts", "latency", "received (UTC)", "last error"],
            delivery_rows,
        )
        + f"</section><section id=dead><h2>Dead letters</h2>{replay_all}"
        + _table(["source", "job", "attempts", "reason", "since (UTC)", ""], dead_rows, "no dead letters")
        + "</section><section id=jobs><h2>Jobs</h2>"
        + _table(["source", "job", "state", "vendor state", "updated (UTC)", "output"], job_rows)
        + "</section><form method=post action='/dashboard/logout'>"
        + f"{hidden}<button class=link>log out</button></form>"
    )


def _job_page(source: str, job_id: str, detail: dict[str, Any]) -> str:
    job = detail["job"]
    facts = "".join(
        f"<dt>{escape(k)}</dt><dd>{escape(str(job.get(k) or ''))}</dd>"
        for k in ("source", "vendor", "project", "state", "vendor_state", "last_delivery", "output", "reason")
    )
    file_rows = [
        [escape(f["path"]), str(f["size"]), escape(f["content_type"] or "")] for f in detail["files"]
    ]
    area_rows = [
        [
            f"<span class=swatch style='background:{_colour(a['color'])}'></span>{escape(str(a['name']))}",
            str(a["id"]),
            f"{a['area']:,}",
            f"{a['share'] * 100:.1f} %",
        ]
        for a in detail["class_areas"]
    ]
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
            f"<figure><figcaption>frame {frame}</figcaption><div class=masks>"
            f"<img class=semantic alt='semantic mask, frame {frame}' src='{escape(sem)}'>"
            f"<img class=instances alt='instance mask, frame {frame}' src='{escape(ins)}'></div></figure>"
        )
    return (
        f"<section><dl>{facts}</dl></section>"
        f"<section id=previews><h2>Masks</h2>{''.join(frames) or _NO_FRAMES}</section>"
        "<section id=areas><h2>Pixels per class</h2>"
        + _table(["class", "id", "pixels", "share"], area_rows, "no class areas")
        + f"</section><section id=warnings><h2>Warnings</h2>{warnings_html}</section>"
        "<section id=files><h2>Files (manifest)</h2>"
        + _table(["path", "bytes", "content type"], file_rows, "no manifest yet")
        + "</section>"
    )


_NO_FRAMES = "<p class=empty>no mask frames</p>"
_LOGIN_FORM = (
    "<form method=post action='/dashboard/login' class=login><label>Dashboard token "
    "<input type=password name=token autocomplete=current-password autofocus></label>"
    "<button>log in</button></form>"
)


def dashboard_routes(token: Secret, queue: Queue, store: Store, sources: list[str]) -> list[Route]:
    """All dashboard and `/api` routes; mount them only when a token is configured."""
    auth = DashboardAuth(token)
    data = DashboardData(queue, store, sources)

    async def overview(request: Request) -> Response:
        identity = auth.require(request)
        source = request.query_params.get("source") or None
        status = request.query_params.get("status") or None
        source = source if source in data.sources else None
        status = status if status in STATUSES else None
        depth, deliveries, dead, jobs = await _gather(
            data.depth(), data.deliveries(source, status), data.dead_letters(), data.jobs()
        )
        body = _overview(data, depth, deliveries, dead, jobs, auth.csrf_token(identity), source, status)
        return _page("dashboard", body)

    async def job_page(request: Request) -> Response:
        auth.require(request)
        source, job_id = request.path_params["source"], request.path_params["job"]
        detail = await data.job(source, job_id)
        if detail is None:
            raise NotFound("no such job", code="unknown_job")
        return _page(f"job {job_id}", _job_page(source, job_id, detail))

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
        await data.replay(None if fields.get("all") == ["1"] else fields.get("id") or [])
        return RedirectResponse("/dashboard#dead", status_code=303)

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
        Route("/dashboard/jobs/{source}/{job:path}", job_page, methods=["GET"]),
        *api_routes(data, auth.require),
    ]


async def _gather(*aws: Any) -> list[Any]:
    return list(await asyncio.gather(*aws))
