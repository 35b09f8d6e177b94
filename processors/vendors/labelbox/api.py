"""`LabelboxClient`: one label's export row through Labelbox's GraphQL export flow, and its mask PNGs.

The flow is the SDK's (``Project.export`` → ``ExportTask``), with its query strings:
``exportDataRowsInProject`` filtered to one data row → the task's status (``user.createdTasks``)
until it leaves ``IN_PROGRESS`` → ``exportMetadataHeader`` (size, lines) → ``exportFileFromOffset``
for each chunk, whose ``file`` is a pre-signed storage URL. The API key (``Authorization: Bearer``)
goes to ``{api}/graphql`` and to mask URLs on the API origin only; chunk files and masks elsewhere
are fetched without it, and the `Fetcher` drops it on a redirect that leaves the origin.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import httpx

from processors.errors import Permanent, Retryable
from processors.fetch import HTTPStatusPermanent, redact_url

if TYPE_CHECKING:
    from processors.fetch import Fetcher, Stream

#: Cap for GraphQL answers; export chunks and masks have the fetch cap.
MAX_JSON_BYTES = 16 * 1024 * 1024

CREATE_EXPORT = (
    "mutation exportDataRowsInProjectPyApi($input: ExportDataRowsInProjectInput!)"
    "{exportDataRowsInProject(input: $input){taskId isStreamable}}"
)
CURRENT_USER = "query GetUserPyApi {user {id}}"
TASK_STATUS = (
    "query GetUserCreatedTasksPyApi($userId: ID!, $taskId: ID!) {"
    " user(where: {id: $userId}) {"
    " createdTasks(where: {id: $taskId} skip: 0 first: 1) {"
    " completionPercentage createdAt errors metadata name result status type id updatedAt } } }"
)
EXPORT_HEADER = (
    "query GetExportMetadataHeaderPyApi($where: WhereUniqueIdInput, $streamType: TaskStreamType!)"
    "{task(where: $where){exportMetadataHeader(streamType: $streamType){totalSize totalLines}}}"
)
EXPORT_CHUNK = (
    "query GetExportFileFromOffsetPyApi"
    "($where: WhereUniqueIdInput, $streamType: TaskStreamType!, $offset: UInt64!)"
    "{task(where: $where){exportFileFromOffset(streamType: $streamType, offset: $offset)"
    "{offsets {start end} lines {start end} file}}}"
)


class LabelboxClient:
    """Blocking client for ``{api_url}``; every method raises only `Retryable` / `Permanent`."""

    def __init__(
        self,
        fetcher: Fetcher,
        api_url: str,
        api_key: str,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetcher = fetcher
        self._base = api_url.rstrip("/")
        self._origin = origin(api_url)
        self._api_key = api_key
        self._sleep = sleep
        self._clock = clock

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}"}

    def graphql(self, query: str, variables: Mapping[str, Any], *, what: str) -> Mapping[str, Any]:
        """POST one GraphQL operation; its ``data``. GraphQL ``errors`` are Permanent, named by ``what``."""
        headers = {**self._auth(), "Content-Type": "application/json"}
        body = json.dumps({"query": query, "variables": variables}, separators=(",", ":")).encode()
        try:
            answer = self._fetcher.post_json(
                f"{self._base}/graphql", content=body, headers=headers, max_bytes=MAX_JSON_BYTES
            )
        except HTTPStatusPermanent as exc:
            raise HTTPStatusPermanent(f"{what}: {exc.reason}", status=exc.status, url=exc.url) from exc
        if not isinstance(answer, Mapping):
            raise Permanent(f"{what}: Labelbox answered no JSON object")
        errors = answer.get("errors")
        if errors:
            first = errors[0] if isinstance(errors, list) and errors else errors
            message = first.get("message") if isinstance(first, Mapping) else first
            raise Permanent(f"{what}: Labelbox answered an error: {str(message).splitlines()[0][:300]}")
        data = answer.get("data")
        if not isinstance(data, Mapping):
            raise Permanent(f"{what}: Labelbox answered no data")
        return data

    def export_row(
        self, project_id: str, data_row_id: str, *, interval: float, timeout: float
    ) -> tuple[bytes, Mapping[str, Any]]:
        """The export v2 row of one data row in one project: its NDJSON line as served, and parsed."""
        what = f"Labelbox export of data row {data_row_id}"
        task_id = self._create_export(project_id, data_row_id, what)
        self._wait(task_id, what, interval=interval, timeout=timeout)
        header = self.graphql(EXPORT_HEADER, {"where": {"id": task_id}, "streamType": "RESULT"}, what=what)
        size, lines = _header(header, what)
        if lines == 0:
            raise Permanent(f"{what}: the export is empty (the data row is not in project {project_id})")
        offset = 0
        while offset < size:
            chunk = self.graphql(
                EXPORT_CHUNK,
                {"where": {"id": task_id}, "streamType": "RESULT", "offset": str(offset)},
                what=what,
            )
            file_url, end = _chunk(chunk, what, offset)
            for line in self._lines(file_url, what):
                try:
                    row = json.loads(line)
                except ValueError:
                    raise Permanent(f"{what}: an export line is not JSON") from None
                if isinstance(row, Mapping) and _row_id(row) == data_row_id:
                    return line, row
            offset = end + 1
        raise Permanent(f"{what}: no row for the data row in the export")

    def _create_export(self, project_id: str, data_row_id: str, what: str) -> str:
        variables = {
            "input": {
                "taskName": f"labelhook {data_row_id}",
                "isStreamableReady": True,
                "filters": {
                    "projectId": project_id,
                    "searchQuery": {
                        "scope": None,
                        "query": [{"ids": [data_row_id], "operator": "is", "type": "data_row_id"}],
                    },
                },
                "params": {
                    "mediaTypeOverride": None,
                    "includeAttachments": False,
                    "includeEmbeddings": False,
                    "includeMetadata": False,
                    "includeDataRowDetails": True,
                    "includeProjectDetails": True,
                    "includePerformanceDetails": False,
                    "includeLabelDetails": True,
                    "includeInterpolatedFrames": False,
                },
                "streamable": True,
            }
        }
        data = self.graphql(CREATE_EXPORT, variables, what=what)
        created = data.get("exportDataRowsInProject")
        task_id = created.get("taskId") if isinstance(created, Mapping) else None
        if not isinstance(task_id, str) or not task_id:
            raise Permanent(f"{what}: Labelbox created no export task")
        return task_id

    def _wait(self, task_id: str, what: str, *, interval: float, timeout: float) -> None:
        user = self.graphql(CURRENT_USER, {}, what=what).get("user")
        user_id = user.get("id") if isinstance(user, Mapping) else None
        if not isinstance(user_id, str):
            raise Permanent(f"{what}: Labelbox answered no current user")
        deadline = self._clock() + timeout
        while True:
            data = self.graphql(TASK_STATUS, {"userId": user_id, "taskId": task_id}, what=what)
            status, errors = _task_status(data, what)
            if status == "COMPLETE":
                return
            if status == "FAILED":
                raise Permanent(f"{what}: the export task failed: {errors or 'no reason given'}")
            if self._clock() + interval > deadline:
                raise Retryable(
                    f"{what}: export task {task_id} not finished within {timeout:g} s (status {status})",
                    retry_after=interval,
                )
            self._sleep(interval)

    def _lines(self, file_url: str, what: str) -> Iterator[bytes]:
        """The non-empty lines of one export chunk (a pre-signed URL: fetched without the key)."""
        try:
            with self._fetcher.open_stream(file_url) as stream:
                data = b"".join(stream)
        except HTTPStatusPermanent as exc:
            raise Permanent(f"{what}: export file {redact_url(file_url)}: {exc.reason}") from exc
        for line in data.splitlines():
            if line.strip():
                yield line.strip()

    def is_api_url(self, url: str) -> bool:
        return origin(url) == self._origin

    @contextlib.contextmanager
    def open_mask(self, url: str) -> Iterator[Stream]:
        """Open a mask PNG: with the key on the API origin only (``…/api/v1/tasks/…/masks/…``)."""
        headers = self._auth() if self.is_api_url(url) else {}
        with self._fetcher.open_stream(url, headers=headers) as stream:
            yield stream


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the scheme's default port filled in; invalid URLs match nothing."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return ("", url, None)
    return parsed.scheme, parsed.host.lower(), parsed.port or {"http": 80, "https": 443}.get(parsed.scheme)


def _row_id(row: Mapping[str, Any]) -> str | None:
    data_row = row.get("data_row")
    value = data_row.get("id") if isinstance(data_row, Mapping) else None
    return value if isinstance(value, str) else None


def _header(data: Mapping[str, Any], what: str) -> tuple[int, int]:
    task = data.get("task")
    header = task.get("exportMetadataHeader") if isinstance(task, Mapping) else None
    try:
        assert isinstance(header, Mapping)
        return int(header["totalSize"]), int(header["totalLines"])
    except (AssertionError, KeyError, TypeError, ValueError):
        raise Permanent(f"{what}: Labelbox answered no export size") from None


def _chunk(data: Mapping[str, Any], what: str, offset: int) -> tuple[str, int]:
    task = data.get("task")
    chunk = task.get("exportFileFromOffset") if isinstance(task, Mapping) else None
    try:
        assert isinstance(chunk, Mapping)
        file_url = chunk["file"]
        end = int(chunk["offsets"]["end"])
        assert isinstance(file_url, str) and file_url
    except (AssertionError, KeyError, TypeError, ValueError):
        raise Permanent(f"{what}: Labelbox answered no export file at offset {offset}") from None
    if end < offset:
        raise Permanent(f"{what}: Labelbox answered a chunk ending before offset {offset}")
    return file_url, end


def _task_status(data: Mapping[str, Any], what: str) -> tuple[str, str | None]:
    user = data.get("user")
    tasks = user.get("createdTasks") if isinstance(user, Mapping) else None
    if not isinstance(tasks, list) or not tasks or not isinstance(tasks[0], Mapping):
        raise Permanent(f"{what}: Labelbox does not know the export task")
    status = str(tasks[0].get("status") or "")
    errors = tasks[0].get("errors")
    return status, (str(errors)[:300] if errors else None)
