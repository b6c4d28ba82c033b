from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import models

from portal.credentials import open_credentials, seal_credentials

METADATA_TOOL_KEYS = frozenset({"table", "dataset", "lists", "lists_datasets"})
JOB_TOOL_KINDS = frozenset({"results", "info", "cancel"})


class Connection(models.Model):
    """An upstream MCP server the gateway fronts, and how to reach BigQuery behind it."""

    class Transport(models.TextChoices):
        HTTP = "http", "Streamable HTTP"
        STDIO = "stdio", "stdio (subprocess owned by the gateway)"

    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=200)
    transport = models.CharField(max_length=10, choices=Transport.choices, default=Transport.HTTP)
    upstream_url = models.URLField(blank=True, max_length=500)
    upstream_command = models.JSONField(default=list, blank=True, help_text="argv for stdio")
    credentials_sealed = models.BinaryField(blank=True, null=True, editable=False)
    # proxy.presets: the preset these tool fields were filled in from ("" = by hand).
    preset = models.CharField(max_length=40, blank=True)
    # Which tools carry SQL, and in which argument: {"execute_sql": "sql", "dry_run_sql": "sql"};
    # a tool limited to some statement classes: {"argument": "query",
    # "statement_classes": ["select"]}.
    sql_tools = models.JSONField(default=dict, blank=True)
    # Tools that answer about tables, and how: {"get_table_schema": {"table": "table"},
    # "list_tables": {"dataset": "dataset", "lists": "tables"}}. A tool naming a table (in the
    # "table" argument) answers only for tables the caller's role may query; a listing (the
    # "lists" key of its result, or "content[]": one text block per name) is filtered to them.
    metadata_tools = models.JSONField(default=dict, blank=True)
    # Tools that reach a query job by id (proxy.jobs): {"get_query_results": {"job": "jobId",
    # "kind": "results"}, "get_job": {..., "kind": "info"}, "cancel_job": {..., "kind": "cancel"}}.
    job_tools = models.JSONField(default=dict, blank=True)
    # The tool argument naming the BigQuery project; when a call carries it, it must be
    # bigquery_project (else unqualified table names would resolve elsewhere).
    project_argument = models.CharField(max_length=100, blank=True)
    bigquery_project = models.CharField(max_length=200, blank=True)
    bigquery_endpoint = models.CharField(max_length=500, blank=True)
    default_dataset = models.CharField(max_length=200, blank=True)
    # PII classes of upstream columns: {"*.shop.customers.email": "email", ...} (glob keys,
    # "project.dataset.table.column"); BigQuery policy tags on the schema add to these.
    column_classes = models.JSONField(default=dict, blank=True)
    allow_sampling = models.BooleanField(default=False)
    allow_elicitation = models.BooleanField(default=False)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    def clean(self) -> None:
        if self.transport == self.Transport.HTTP and not self.upstream_url:
            raise ValidationError({"upstream_url": "An HTTP connection needs an upstream URL."})
        if self.transport == self.Transport.STDIO and not self.upstream_command:
            raise ValidationError({"upstream_command": "A stdio connection needs a command."})
        from proxy.presets import PRESETS, sql_tool_spec

        if self.preset and self.preset not in PRESETS:
            raise ValidationError({"preset": f"Unknown preset; one of {sorted(PRESETS)}."})
        if not isinstance(self.sql_tools, dict) or not all(
            isinstance(k, str) and sql_tool_spec(v) is not None for k, v in self.sql_tools.items()
        ):
            raise ValidationError({"sql_tools": (
                'Map tool names to the argument holding SQL, or to {"argument": ARG, '
                '"statement_classes": ["select", ...]}.')})
        if not isinstance(self.job_tools, dict) or not all(
            isinstance(k, str) and isinstance(v, dict) and set(v) == {"job", "kind"}
            and isinstance(v["job"], str) and v["job"] and v["kind"] in JOB_TOOL_KINDS
            for k, v in self.job_tools.items()
        ):
            raise ValidationError({"job_tools": (
                'Map tool names to {"job": ARG, "kind": "results" | "info" | "cancel"}.')})
        if not isinstance(self.metadata_tools, dict) or not all(
            isinstance(k, str) and isinstance(v, dict) and v and set(v) <= METADATA_TOOL_KEYS
            and all(isinstance(a, str) and a for a in v.values())
            for k, v in self.metadata_tools.items()
        ):
            raise ValidationError({"metadata_tools": (
                'Map tool names to {"table": ARG} (a tool that names a table), '
                '{"dataset": ARG, "lists": RESULT_KEY} (a tool that lists tables), '
                '{"dataset": ARG} (a tool that describes a dataset) or '
                '{"lists_datasets": RESULT_KEY} (a tool that lists datasets); RESULT_KEY '
                'may be "content[]" for a listing given as one text block per name.')})

    def sql_tool(self, tool: str) -> tuple[str, frozenset[str] | None] | None:
        """(argument holding SQL, statement classes the tool may run or None) for a SQL tool."""
        from proxy.presets import sql_tool_spec

        return sql_tool_spec((self.sql_tools or {}).get(tool))

    # Credentials are write-only from the outside: set them, never read them back out.
    def set_credentials(self, data: dict[str, Any]) -> None:
        self.credentials_sealed = seal_credentials(data)

    def credentials_for_upstream(self) -> dict[str, Any]:
        return open_credentials(self.credentials_sealed)

    @property
    def has_credentials(self) -> bool:
        return bool(self.credentials_sealed)
