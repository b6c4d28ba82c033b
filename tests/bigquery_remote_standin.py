"""A stand-in for Google's BigQuery remote MCP server (https://bigquery.googleapis.com/mcp),
written from Google's public tool reference, backed by the BigQuery emulator.

Same tool names and arguments (``projectId``, ``query``, ``dryRun``, ``datasetId``,
``tableId``, ``jobId``), the same result shapes (``execute_sql*`` and ``get_query_results``
answer with a BigQuery ``QueryResponse``: ``schema.fields``, rows as ``{"f": [{"v": …}]}``
with values as strings, ``jobReference``, ``jobComplete``; ``get_job`` with a ``Job``
resource), served statelessly over Streamable HTTP with the 2026-07-28 revision, ``projectId``
mirrored into an ``Mcp-Param-Project`` header (``x-mcp-header``), and every request needing a
Google access token (``Authorization: Bearer``) that the token endpoint vouches for.

Run: ``python -m tests.bigquery_remote_standin --port P --project P --endpoint URL
--tokeninfo URL``. Where the reference does not spell out a listing's key, the stand-in uses
``datasetIds`` / ``tableIds``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Callable
from typing import Annotated, Any

import anyio
import httpx
import uvicorn
from google.api_core import exceptions as gexc
from google.cloud import bigquery
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent
from pydantic import Field

from bigquery_mcp.client import make_bigquery_client
from bigquery_mcp.serialize import to_json_value

ProjectId = Annotated[str, Field(description="Project used for execution and billing.",
                                 json_schema_extra={"x-mcp-header": "Project"})]
JobId = Annotated[str, Field(description="Job ID of the query job.")]


def _result(payload: dict[str, Any]) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=json.dumps(payload))],
                          structured_content=payload)


def _cell(value: Any) -> Any:
    value = to_json_value(value)
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value) if isinstance(
        value, dict | list) else str(value).lower() if isinstance(value, bool) else str(value)


def _query_response(job: Any, rows: Any, schema: Any) -> dict[str, Any]:
    fields = [{"name": f.name, "type": f.field_type, "mode": f.mode} for f in schema or []]
    out_rows = [{"f": [{"v": _cell(v)} for v in row.values()]} for row in rows]
    return {"kind": "bigquery#queryResponse", "schema": {"fields": fields}, "rows": out_rows,
            "totalRows": str(len(out_rows)), "jobComplete": True,
            "jobReference": {"projectId": job.project, "jobId": job.job_id,
                             "location": job.location or "US"}}


class RemoteTools:
    def __init__(self, client: bigquery.Client) -> None:
        self.client = client

    async def _run(self, fn: Callable[[], Any]) -> CallToolResult:
        try:
            return _result(await anyio.to_thread.run_sync(fn))
        except gexc.GoogleAPICallError as exc:
            raise ToolError(f"BigQuery error: {exc.message}") from exc
        except (ValueError, TypeError) as exc:
            raise ToolError(f"Invalid request: {exc}") from exc

    def _check_project(self, project_id: str) -> None:
        if project_id != self.client.project:
            raise ToolError(f"Permission denied on project {project_id}")

    async def list_dataset_ids(self, projectId: ProjectId) -> CallToolResult:  # noqa: N803
        """List BigQuery dataset IDs in a Google Cloud project."""
        self._check_project(projectId)
        return await self._run(lambda: {"datasetIds": sorted(
            d.dataset_id for d in self.client.list_datasets())})

    async def get_dataset_info(self, projectId: ProjectId, datasetId: str) -> CallToolResult:  # noqa: N803
        """Get metadata information about a BigQuery dataset."""
        self._check_project(projectId)
        return await self._run(lambda: {"datasetReference": {
            "projectId": projectId, "datasetId": self.client.get_dataset(datasetId).dataset_id}})

    async def list_table_ids(self, projectId: ProjectId, datasetId: str) -> CallToolResult:  # noqa: N803
        """List table ids in a BigQuery dataset."""
        self._check_project(projectId)
        return await self._run(lambda: {"tableIds": sorted(
            t.table_id for t in self.client.list_tables(datasetId))})

    async def get_table_info(self, projectId: ProjectId, datasetId: str,  # noqa: N803
                             tableId: str) -> CallToolResult:  # noqa: N803
        """Get metadata information about a BigQuery table."""
        self._check_project(projectId)

        def run() -> dict[str, Any]:
            table = self.client.get_table(f"{projectId}.{datasetId}.{tableId}")
            return {"tableReference": {"projectId": table.project, "datasetId": table.dataset_id,
                                       "tableId": table.table_id},
                    "schema": {"fields": [{"name": f.name, "type": f.field_type}
                                          for f in table.schema]},
                    "numRows": str(table.num_rows or 0)}

        return await self._run(run)

    async def _query(self, project_id: str, query: str, dry_run: bool,
                     readonly: bool) -> CallToolResult:
        self._check_project(project_id)

        def run() -> dict[str, Any]:
            if dry_run or readonly:
                probe = self.client.query(query, job_config=bigquery.QueryJobConfig(
                    dry_run=True, use_query_cache=False))
                if dry_run:
                    return {"totalBytesProcessed": str(probe.total_bytes_processed or 0),
                            "jobComplete": True}
                if (probe.statement_type or "SELECT") != "SELECT":
                    raise ValueError("only SELECT statements are allowed")
            job = self.client.query(query)
            result = job.result()
            return _query_response(job, result, result.schema)

        return await self._run(run)

    async def execute_sql_readonly(self, projectId: ProjectId, query: str,  # noqa: N803
                                   dryRun: bool = False) -> CallToolResult:  # noqa: N803
        """Run a read-only SQL query in the project and return the result."""
        return await self._query(projectId, query, dryRun, readonly=True)

    async def execute_sql(self, projectId: ProjectId, query: str,  # noqa: N803
                          dryRun: bool = False) -> CallToolResult:  # noqa: N803
        """Run a SQL query in the project and return the result."""
        return await self._query(projectId, query, dryRun, readonly=False)

    async def get_query_results(self, projectId: ProjectId, jobId: JobId,  # noqa: N803
                                location: str | None = None) -> CallToolResult:
        """Fetch results of a query job."""
        self._check_project(projectId)

        def run() -> dict[str, Any]:
            job = self.client.get_job(jobId, location=location)
            result = job.result()
            return _query_response(job, result, result.schema)

        return await self._run(run)

    async def get_job(self, projectId: ProjectId, jobId: JobId,  # noqa: N803
                      location: str | None = None) -> CallToolResult:
        """Get a BigQuery job."""
        self._check_project(projectId)

        def run() -> dict[str, Any]:
            job = self.client.get_job(jobId, location=location)
            status: dict[str, Any] = {"state": job.state}
            if job.error_result:
                status["errorResult"] = job.error_result
            return {"kind": "bigquery#job",
                    "jobReference": {"projectId": job.project, "jobId": job.job_id,
                                     "location": job.location or "US"},
                    "configuration": {"query": {"query": getattr(job, "query", "")}},
                    "status": status,
                    "statistics": {"totalBytesProcessed": str(
                        getattr(job, "total_bytes_processed", 0) or 0)}}

        return await self._run(run)

    async def cancel_job(self, projectId: ProjectId, jobId: JobId,  # noqa: N803
                         location: str | None = None) -> CallToolResult:
        """Cancel a BigQuery job."""
        self._check_project(projectId)

        def run() -> dict[str, Any]:
            # A finished job cannot be cancelled; its state is reported as Google does.
            with contextlib.suppress(gexc.GoogleAPICallError):
                self.client.cancel_job(jobId, location=location)
            job = self.client.get_job(jobId, location=location)
            return {"job": {"jobReference": {"projectId": job.project, "jobId": job.job_id},
                            "status": {"state": job.state}}}

        return await self._run(run)


def build_standin(client: bigquery.Client) -> MCPServer:
    tools = RemoteTools(client)
    server = MCPServer(name="bigquery.googleapis.com", version="standin", log_level="WARNING")
    for name in ("list_dataset_ids", "get_dataset_info", "list_table_ids", "get_table_info",
                 "execute_sql_readonly", "execute_sql", "get_query_results", "get_job",
                 "cancel_job"):
        server.add_tool(getattr(tools, name), name=name)
    return server


class RequireGoogleToken:
    """ASGI middleware: 401 unless the bearer token is one the token endpoint vouches for."""

    def __init__(self, app: Any, tokeninfo_url: str) -> None:
        self.app, self.tokeninfo_url = app, tokeninfo_url
        self.http = httpx.AsyncClient(timeout=5)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        auth = headers.get("authorization", "")
        token = auth[7:] if auth.lower().startswith("bearer ") else ""
        ok = bool(token) and (await self.http.get(
            self.tokeninfo_url, params={"access_token": token})).status_code == 200
        if not ok:
            body = b'{"error":"invalid_token"}'
            await send({"type": "http.response.start", "status": 401, "headers": [
                (b"content-type", b"application/json"),
                (b"www-authenticate", b'Bearer error="invalid_token"')]})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--project", required=True)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--tokeninfo", required=True)
    args = parser.parse_args(argv)
    server = build_standin(make_bigquery_client(args.project, args.endpoint))
    app = RequireGoogleToken(server.streamable_http_app(stateless_http=True),
                             args.tokeninfo)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
