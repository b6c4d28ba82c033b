"""The BigQuery MCP server: dataset/table discovery, schemas, queries and dry runs.

Every BigQuery failure comes back to the client as an MCP tool error carrying BigQuery's
message; the server itself never crashes on a bad query.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

import anyio
from google.api_core import exceptions as gexc
from google.cloud import bigquery
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from .client import scalar_query_parameters
from .serialize import to_json_value

MAX_ROWS_LIMIT = 10_000


class QueryParameter(BaseModel):
    """A named query parameter, referenced in SQL as @name."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    type: str = Field(default="STRING", description="BigQuery type, e.g. STRING, INT64, DATE")
    value: Any = None


def _result(payload: dict[str, Any]) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=json.dumps(payload, separators=(",", ":")))],
        structured_content=payload,
    )


def _bigquery_parameters(params: list[QueryParameter] | None) -> list[bigquery.ScalarQueryParameter]:
    try:
        return scalar_query_parameters((p.name, p.type, p.value) for p in params or [])
    except ValueError as exc:
        raise ToolError(str(exc)) from None


def _schema_fields(fields: Any) -> list[dict[str, Any]]:
    out = []
    for f in fields:
        entry: dict[str, Any] = {
            "name": f.name,
            "type": f.field_type,
            "mode": f.mode,
            "description": f.description,
            "policy_tags": list(f.policy_tags.names) if f.policy_tags else [],
        }
        if f.fields:
            entry["fields"] = _schema_fields(f.fields)
        out.append(entry)
    return out


class BigQueryTools:
    """The tool implementations, bound to one BigQuery client (sync calls run in a thread)."""

    def __init__(self, client: bigquery.Client) -> None:
        self.client = client

    async def _run(self, fn: Callable[[], Any]) -> Any:
        try:
            return await anyio.to_thread.run_sync(fn)
        except ToolError:
            raise
        except gexc.GoogleAPICallError as exc:
            raise ToolError(f"BigQuery error: {exc.message}") from exc
        except (ValueError, TypeError) as exc:
            raise ToolError(f"Invalid request: {exc}") from exc

    async def list_datasets(self) -> CallToolResult:
        """List the datasets of the project."""

        def run() -> dict[str, Any]:
            ids = sorted(d.dataset_id for d in self.client.list_datasets())
            return {"project": self.client.project, "datasets": ids}

        return _result(await self._run(run))

    async def list_tables(self, dataset: str) -> CallToolResult:
        """List the tables of one dataset."""

        def run() -> dict[str, Any]:
            tables = sorted(t.table_id for t in self.client.list_tables(dataset))
            return {"dataset": dataset, "tables": tables}

        return _result(await self._run(run))

    async def get_table_schema(self, table: str) -> CallToolResult:
        """Schema of a table ("dataset.table" or "project.dataset.table"): columns, types,
        descriptions and policy tags."""

        def run() -> dict[str, Any]:
            t = self.client.get_table(table)
            return {
                "table": f"{t.project}.{t.dataset_id}.{t.table_id}",
                "description": t.description,
                "num_rows": t.num_rows,
                "columns": _schema_fields(t.schema),
            }

        return _result(await self._run(run))

    async def execute_sql(
        self,
        sql: str,
        parameters: list[QueryParameter] | None = None,
        max_rows: Annotated[int, Field(ge=1, le=MAX_ROWS_LIMIT)] = 1000,
    ) -> CallToolResult:
        """Run a GoogleSQL query and return its rows (JSON objects, at most max_rows).
        Use @name placeholders with `parameters` for values."""

        def run() -> dict[str, Any]:
            config = bigquery.QueryJobConfig(query_parameters=_bigquery_parameters(parameters))
            job = self.client.query(sql, job_config=config)
            result = job.result(max_results=max_rows)
            columns = [{"name": f.name, "type": f.field_type} for f in result.schema]
            rows = [
                {name: to_json_value(value) for name, value in row.items()} for row in result
            ]
            total = result.total_rows if result.total_rows is not None else len(rows)
            return {
                "columns": columns,
                "rows": rows,
                "row_count": len(rows),
                "total_rows": total,
                "truncated": total > len(rows),
                "total_bytes_processed": job.total_bytes_processed or 0,
            }

        return _result(await self._run(run))

    async def dry_run_sql(
        self, sql: str, parameters: list[QueryParameter] | None = None
    ) -> CallToolResult:
        """Validate a query without running it and report the bytes it would process."""

        def run() -> dict[str, Any]:
            config = bigquery.QueryJobConfig(
                dry_run=True,
                use_query_cache=False,
                query_parameters=_bigquery_parameters(parameters),
            )
            job = self.client.query(sql, job_config=config)
            return {
                "total_bytes_processed": int(job.total_bytes_processed or 0),
                "statement_type": job.statement_type,
            }

        return _result(await self._run(run))


def build_server(client: bigquery.Client) -> MCPServer:
    tools = BigQueryTools(client)
    server = MCPServer(
        name="wardgate-bigquery",
        instructions="Query Google BigQuery: discover datasets and tables, read schemas, "
        "dry-run and run GoogleSQL.",
        version="0.1.0",
        log_level="WARNING",
    )
    read_only = ToolAnnotations(readOnlyHint=True, openWorldHint=False)
    server.add_tool(tools.list_datasets, name="list_datasets", annotations=read_only)
    server.add_tool(tools.list_tables, name="list_tables", annotations=read_only)
    server.add_tool(tools.get_table_schema, name="get_table_schema", annotations=read_only)
    server.add_tool(tools.execute_sql, name="execute_sql")
    server.add_tool(tools.dry_run_sql, name="dry_run_sql", annotations=read_only)
    return server
