"""`/dashboard` and `/api/…`: the ops pages (HTML, escaped), behind ``LABELHOOK_DASHBOARD_TOKEN``.

Credentials and CSRF are checked by `receiver.dashboard.auth`; the JSON behind the pages is
`receiver.dashboard.api`. Without a configured token none of these routes exist (404).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import parse_qs, quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from processors.config import Secret
from processors.fleet import Fleet
from processors.queue import Queue
from processors.store import Store
from receiver.dashboard import markup, views
from receiver.dashboard.api import STATUSES, DashboardData, api_routes
from receiver.dashboard.auth import COOKIE, SESSION_SECONDS, DashboardAuth, check_origin
from receiver.errors import BadRequest, NotFound


async def form_fields(request: Request) -> dict[str, list[str]]:
    """An urlencoded form body (the app caps body size); no multipart parser needed."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        raise BadRequest("expected an HTML form")
    return parse_qs((await request.body()).decode("utf-8", "replace"))


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
            data.deliveries(view["source"], view["status"], views.PAGE_SIZE + 1, page * views.PAGE_SIZE),
            data.dead_letters(),
            data.jobs(),
            data.workers(),
        )
        body = views.overview(data, view, auth.csrf_token(identity))
        return markup.page("dashboard", body, refresh=views.REFRESH_SECONDS if view["refresh"] else None)

    async def delivery_page(request: Request) -> Response:
        identity = auth.require(request)
        delivery_id = request.path_params["id"]
        detail = await data.delivery(delivery_id)
        if detail is None:
            return markup.page(
                "no such delivery", markup.not_found(f"No delivery {delivery_id!r} in the queue's log."), 404
            )
        body = views.delivery_page(detail, auth.csrf_token(identity), request.query_params.get("replayed"))
        return markup.page(
            f"delivery {delivery_id}", body, refresh=None if detail["status"] == "dead" else 10
        )

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
            links = "".join(
                f"<li>{markup.delivery_link(d['id'])} {markup.status_html(d['status'])}</li>" for d in related
            )
            text = f"No output or record for job {job_id!r} of source {source!r} yet."
            extra = f"<h2>Its deliveries</h2><ul>{links}</ul>" if links else ""
            return markup.page(f"job {job_id}", markup.not_found(text) + extra, 404)
        return markup.page(f"job {job_id}", views.job_page(source, job_id, detail))

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
        # ASCII digits only, and few (`isdigit` admits "²", and int() refuses 4300+ digits: both were 500s).
        if not (frame.isascii() and frame.isdigit() and len(frame) <= 9):
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
        return markup.page("log in", _LOGIN_FORM)

    async def login(request: Request) -> Response:
        check_origin(request)
        fields = await form_fields(request)
        if not auth.check_token((fields.get("token") or [""])[0]):
            return markup.page("log in", "<p class=error>wrong token</p>" + _LOGIN_FORM, status=401)
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
