"""The baseline for bench/ingest.py: a bare Starlette endpoint that reads the body and answers 202."""

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def hook(request: Request) -> JSONResponse:
    await request.body()
    return JSONResponse({"delivery_id": "0" * 32, "duplicate": False}, status_code=202)


app = Starlette(routes=[Route("/hooks/{source}", hook, methods=["POST"])])
