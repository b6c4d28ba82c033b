"""Connection presets: what Wardgate must know about an upstream MCP server it fronts.

Per preset: which tools carry SQL and in which argument (``sql_tools``; a tool limited to some
statement classes says so: ``{"argument": "query", "statement_classes": ["select"]}``), which
tools answer about tables (``metadata_tools``, see proxy.metadata_tools), which tools reach a
query job's data by job id (``job_tools``, see proxy.jobs), and which argument names the
BigQuery project (``project_argument``: it must be the connection's project, or unqualified
table names would resolve somewhere the policy never looked).

Result shapes the masker understands (policy.masking) for each preset:

* ``bigquery-remote`` (Google's managed server, https://bigquery.googleapis.com/mcp): a
  BigQuery ``QueryResponse`` — ``{"schema": {"fields": [{"name", "type"}]}, "rows": [{"f":
  [{"v": …}]}], "jobReference": {"projectId", "jobId", "location"}, "jobComplete", …}`` — in
  ``structuredContent`` and as JSON text; ``get_query_results`` answers in the same shape.
* ``toolbox`` (MCP Toolbox for Databases, ``bigquery-execute-sql``): one text block per row,
  each a JSON object ``{"column": value, …}``; no job ids. Its listings (``list_table_ids``,
  ``list_dataset_ids``) are one text block per name, each a JSON string (``content[]``).
* ``wardgate-bigquery`` (our bigquery_mcp): ``{"columns": [...], "rows": [{…}], "row_count"}``.

Picking a preset fills these fields in (portal form, policy YAML ``preset:``); an admin may
still edit every one of them afterwards.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Final

__all__ = ["PRESETS", "PRESET_FIELDS", "preset_fields", "sql_tool_spec"]

PRESET_FIELDS: Final = ("sql_tools", "metadata_tools", "job_tools", "project_argument",
                        "upstream_url")

_SELECT_ONLY: Final = ["select"]

PRESETS: Final[dict[str, dict[str, Any]]] = {
    "bigquery-remote": {
        "label": "BigQuery remote MCP server (Google, bigquery.googleapis.com/mcp)",
        "upstream_url": "https://bigquery.googleapis.com/mcp",
        "sql_tools": {
            "execute_sql_readonly": {"argument": "query", "statement_classes": _SELECT_ONLY},
            "execute_sql": "query",
        },
        "metadata_tools": {
            "get_table_info": {"table": "tableId", "dataset": "datasetId"},
            "list_table_ids": {"dataset": "datasetId", "lists": "tableIds"},
            "get_dataset_info": {"dataset": "datasetId"},
            "list_dataset_ids": {"lists_datasets": "datasetIds"},
        },
        "job_tools": {
            "get_query_results": {"job": "jobId", "kind": "results"},
            "get_job": {"job": "jobId", "kind": "info"},
            "cancel_job": {"job": "jobId", "kind": "cancel"},
        },
        "project_argument": "projectId",
    },
    "toolbox": {
        "label": "MCP Toolbox for Databases (bigquery-execute-sql, stdio or HTTP)",
        "sql_tools": {"execute_sql": "sql"},
        "metadata_tools": {
            "get_table_info": {"table": "table", "dataset": "dataset"},
            "list_table_ids": {"dataset": "dataset", "lists": "content[]"},
            "get_dataset_info": {"dataset": "dataset"},
            "list_dataset_ids": {"lists_datasets": "content[]"},
        },
        "job_tools": {},
        "project_argument": "project",
    },
    "wardgate-bigquery": {
        "label": "Wardgate's own bigquery_mcp",
        "sql_tools": {"execute_sql": "sql", "dry_run_sql": "sql"},
        "metadata_tools": {
            "get_table_schema": {"table": "table"},
            "list_tables": {"dataset": "dataset", "lists": "tables"},
            "list_datasets": {"lists_datasets": "datasets"},
        },
        "job_tools": {},
        "project_argument": "",
    },
}


def preset_fields(name: str) -> dict[str, Any]:
    """The connection fields a preset fills in (a deep copy: the caller may edit it).
    KeyError for an unknown preset."""
    preset = PRESETS[name]
    return {f: copy.deepcopy(preset[f]) for f in PRESET_FIELDS if f in preset}


def sql_tool_spec(value: Any) -> tuple[str, frozenset[str] | None] | None:
    """A ``sql_tools`` entry as (argument, allowed statement classes or None = the role's),
    or None when it is malformed."""
    if isinstance(value, str) and value:
        return value, None
    if isinstance(value, Mapping) and isinstance(value.get("argument"), str) \
            and value["argument"] and set(value) <= {"argument", "statement_classes"}:
        classes = value.get("statement_classes")
        if classes is None:
            return value["argument"], None
        if isinstance(classes, list) and classes and all(isinstance(c, str) and c
                                                          for c in classes):
            return value["argument"], frozenset(c.lower() for c in classes)
    return None
