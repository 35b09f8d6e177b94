"""A fake Labelbox (Starlette) for tests: the GraphQL export flow, composite-mask downloads, export files.

Follows the SDK's calls (Labelbox/labelbox-python; tests/conformance/payloads/labelbox/): ``POST /graphql``
with ``Authorization: Bearer <key>`` (401 otherwise), dispatched on the SDK's operation names —
``exportDataRowsInProject`` (filters checked: one ``data_row_id`` search), ``GetUserPyApi``,
``GetUserCreatedTasksPyApi`` (``IN_PROGRESS`` for ``polls_until_complete`` polls, then ``COMPLETE``
or ``FAILED``), ``GetExportMetadataHeaderPyApi``, ``GetExportFileFromOffsetPyApi`` (chunks of
``chunk_size`` bytes, each a ``file`` URL on the *files* origin). Masks are served at
``/api/v1/tasks/{task}/masks/{mask}/index/{n}`` (Bearer required on the API origin) and export files
at ``/exports/{task}/{offset}`` (no auth): run the app on two ports and give `files_url` the second,
so a test can check which origin saw the key.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


@dataclass
class Seen:
    method: str
    path: str
    host: str
    headers: dict[str, str]
    body: bytes
    operation: str = ""
    at: float = field(default_factory=time.monotonic)


@dataclass
class ExportTask:
    project_id: str
    data_row_id: str
    polls_left: int
    complete: bool = False
    data: bytes = b""


@dataclass
class FakeLabelbox:
    api_key: str = "lb-test-key"
    user_id: str = "ckuser000000000000000001"
    #: project id → data row id → export v2 row (JSON value) or raw bytes (one NDJSON line as is).
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: path (``/api/v1/tasks/…/index/1``) → (bytes, status)
    masks: dict[str, tuple[bytes, int]] = field(default_factory=dict)
    files_url: str = ""  # origin of the export files (another LiveServer of this app)
    chunk_size: int = 1 << 20
    polls_until_complete: int = 1
    fail_exports: bool = False
    extra_rows: int = 0  # other data rows' lines around the wanted one (the filter is best effort)
    tasks: dict[str, ExportTask] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- test controls ------------------------------------------------------------------------------

    def add_row(self, project_id: str, row: Any) -> None:
        data_row_id = row["data_row"]["id"] if isinstance(row, dict) else json.loads(row)["data_row"]["id"]
        self.rows.setdefault(project_id, {})[data_row_id] = row

    def add_mask(self, path: str, data: bytes, status: int = 200) -> None:
        self.masks[path] = (data, status)

    def operations(self) -> list[str]:
        return [s.operation for s in self.seen if s.path == "/graphql"]

    # -- the app ------------------------------------------------------------------------------------

    @property
    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/graphql", self._graphql, methods=["POST"]),
                Route("/api/v1/tasks/{task}/masks/{mask}/index/{n}", self._mask, methods=["GET"]),
                Route("/exports/{task}/{offset}", self._export_file, methods=["GET"]),
                Route("/plain/{name}", self._mask, methods=["GET"]),
            ]
        )

    async def _record(self, request: Request, operation: str = "") -> Seen:
        seen = Seen(
            request.method,
            request.url.path,
            request.headers.get("host", ""),
            {k.lower(): v for k, v in request.headers.items()},
            await request.body(),
            operation,
        )
        self.seen.append(seen)
        return seen

    def _authorised(self, seen: Seen) -> bool:
        return seen.headers.get("authorization") == f"Bearer {self.api_key}"

    async def _graphql(self, request: Request) -> Response:
        seen = await self._record(request)
        try:
            payload = json.loads(seen.body)
            query, variables = payload["query"], payload.get("variables") or {}
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"errors": [{"message": "Must provide query string."}]}, status_code=400)
        seen.operation = query.split("(")[0].split("{")[0].split()[-1]
        if not self._authorised(seen):
            return JSONResponse({"message": "Unauthorized"}, status_code=401)
        handlers = {
            "exportDataRowsInProjectPyApi": self._create_export,
            "GetUserPyApi": lambda v: {"user": {"id": self.user_id}},
            "GetUserCreatedTasksPyApi": self._task_status,
            "GetExportMetadataHeaderPyApi": self._header,
            "GetExportFileFromOffsetPyApi": self._chunk,
        }
        handler = handlers.get(seen.operation)
        if handler is None:
            return JSONResponse({"errors": [{"message": f"unknown operation {seen.operation}"}]})
        try:
            return JSONResponse({"data": handler(variables)})
        except LookupError as exc:
            return JSONResponse({"data": None, "errors": [{"message": str(exc.args[0])}]})

    def _create_export(self, variables: dict[str, Any]) -> dict[str, Any]:
        spec = variables["input"]
        project_id = spec["filters"]["projectId"]
        [search] = spec["filters"]["searchQuery"]["query"]
        assert search["type"] == "data_row_id" and search["operator"] == "is", search
        [data_row_id] = search["ids"]
        with self._lock:
            task_id = f"cktask{len(self.tasks) + 1:018d}"
            self.tasks[task_id] = ExportTask(project_id, data_row_id, self.polls_until_complete)
        return {"exportDataRowsInProject": {"taskId": task_id, "isStreamable": True}}

    def _task_status(self, variables: dict[str, Any]) -> dict[str, Any]:
        if variables.get("userId") != self.user_id:
            raise LookupError("User not found")
        task = self.tasks.get(variables["taskId"])
        if task is None:
            return {"user": {"createdTasks": []}}
        if task.polls_left > 0:
            task.polls_left -= 1
            status = "IN_PROGRESS"
        else:
            status = "FAILED" if self.fail_exports else "COMPLETE"
        if status == "COMPLETE" and not task.complete:
            task.data, task.complete = self._ndjson(task), True
        record = {"id": variables["taskId"], "status": status, "type": "export-data-rows", "name": "export"}
        record["errors"] = "export failed: internal error" if status == "FAILED" else None
        return {"user": {"createdTasks": [record]}}

    def _ndjson(self, task: ExportTask) -> bytes:
        lines: list[bytes] = []
        for n in range(self.extra_rows):
            lines.append(json.dumps({"data_row": {"id": f"other-{n}"}, "projects": {}}).encode())
        row = self.rows.get(task.project_id, {}).get(task.data_row_id)
        if row is not None:
            lines.append(row if isinstance(row, bytes) else json.dumps(row).encode())
        return b"".join(line + b"\n" for line in lines)

    def _ready(self, variables: dict[str, Any]) -> ExportTask:
        task = self.tasks.get(variables["where"]["id"])
        if task is None or not task.complete:
            raise LookupError("Task not found or not complete")
        return task

    def _header(self, variables: dict[str, Any]) -> dict[str, Any]:
        task = self._ready(variables)
        assert variables["streamType"] == "RESULT"
        lines = task.data.count(b"\n")
        return {"task": {"exportMetadataHeader": {"totalSize": len(task.data), "totalLines": lines}}}

    def _chunk(self, variables: dict[str, Any]) -> dict[str, Any]:
        task = self._ready(variables)
        task_id = variables["where"]["id"]
        offset = int(variables["offset"])
        # Chunks end on a line boundary, at least ``chunk_size`` bytes long (or the rest).
        end = min(len(task.data), offset + self.chunk_size)
        newline = task.data.find(b"\n", end - 1)
        end = len(task.data) if newline < 0 else newline + 1
        start_line = task.data[:offset].count(b"\n")
        return {
            "task": {
                "exportFileFromOffset": {
                    "offsets": {"start": str(offset), "end": str(end - 1)},
                    "lines": {"start": str(start_line), "end": str(task.data[:end].count(b"\n") - 1)},
                    "file": f"{self.files_url}/exports/{task_id}/{offset}?X-Goog-Signature=abc",
                }
            }
        }

    async def _export_file(self, request: Request) -> Response:
        await self._record(request)
        task = self.tasks.get(request.path_params["task"])
        if task is None or not task.complete:
            return Response(b"NoSuchKey", status_code=404)
        offset = int(request.path_params["offset"])
        end = offset + self.chunk_size
        newline = task.data.find(b"\n", min(end, len(task.data)) - 1)
        stop = len(task.data) if newline < 0 else newline + 1
        return Response(task.data[offset:stop], media_type="application/x-ndjson")

    async def _mask(self, request: Request) -> Response:
        seen = await self._record(request)
        path = request.url.path
        if path.startswith("/api/") and not self._authorised(seen):
            return JSONResponse({"message": "Unauthorized"}, status_code=401)
        if path not in self.masks:
            return Response(b"Not found", status_code=404)
        data, status = self.masks[path]
        return Response(data, status_code=status, media_type="image/png" if status == 200 else "text/plain")
