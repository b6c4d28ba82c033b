"""Metadata tools (schemas, table and dataset listings, dataset information) answer only about
tables the caller's role may query, and datasets holding one.

A connection names them in ``Connection.metadata_tools``: ``{"table": ARG}`` for a tool that
names one table (e.g. ``get_table_schema``; with ``"dataset": ARG`` too when the table's dataset
travels in its own argument, as in Google's ``get_table_info``), ``{"dataset": ARG, "lists":
KEY}`` for a tool that lists a dataset's tables under ``KEY`` of its result (e.g.
``list_tables``), ``{"dataset": ARG}`` alone for a tool that describes a dataset (Google's
``get_dataset_info``: labels, description, access entries), and ``{"lists_datasets": KEY}`` for
a tool that lists the project's datasets under ``KEY`` (``list_dataset_ids``). ``KEY`` is a key
of the result's structured content, or ``content[]`` when the listing is the result's text
blocks, one JSON string each (how MCP Toolbox for Databases answers: its MCP layer marshals
each item of a tool's answer into a block of its own, with no structured content). A table the
role cannot query, or a dataset with no such table, is refused by name; a listing is filtered
before it leaves, and one the gateway cannot read is withheld.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from policy.roles import RolePolicy
from policy.sql_policy import Reason
from proxy.jsonrpc import tool_error_in_place_of

__all__ = ["TEXT_BLOCKS", "MetadataTool", "filter_dataset_listing", "filter_table_listing",
           "metadata_role"]

# A listing "key" meaning: the result's text blocks, one JSON string per item (MCP Toolbox).
TEXT_BLOCKS = "content[]"


@dataclass(frozen=True, slots=True)
class MetadataTool:
    table_argument: str | None
    dataset_argument: str | None
    lists: str | None
    project: str
    dataset: str | None
    lists_datasets: str | None = None

    @classmethod
    def from_spec(cls, spec: Mapping[str, str], project: str, dataset: str | None) -> MetadataTool:
        return cls(spec.get("table"), spec.get("dataset"), spec.get("lists"),
                   project.lower(), (dataset or "").lower() or None, spec.get("lists_datasets"))

    @property
    def describes_dataset(self) -> bool:
        """A tool about one dataset itself (not a table of it, not its table listing)."""
        return bool(self.dataset_argument) and not self.table_argument and not self.lists


def _parts(name: Any) -> list[str] | None:
    if not isinstance(name, str) or not name.strip():
        return None
    parts = [p.strip().strip("`").lower() for p in name.strip().strip("`").split(".")]
    return parts if all(parts) else None


def _table_name(tool: MetadataTool, name: Any) -> str | None:
    parts = _parts(name)
    if parts is None or len(parts) > 3:
        return None
    if len(parts) == 1:
        if tool.dataset is None:
            return None
        parts = [tool.dataset, *parts]
    if len(parts) == 2:
        parts = [tool.project, *parts]
    return ".".join(parts)


def _dataset_name(tool: MetadataTool, name: Any) -> str | None:
    parts = _parts(name) if name is not None else ([tool.dataset] if tool.dataset else None)
    if parts is None or len(parts) > 2:
        return None
    return ".".join([tool.project, *parts] if len(parts) == 1 else parts)


def metadata_role(roles: tuple[RolePolicy, ...], tool: MetadataTool,
                  arguments: Mapping[str, Any]) -> tuple[RolePolicy | None, Reason | None]:
    """The role that may use this metadata call, or the reason none may."""
    if tool.table_argument:
        name = arguments.get(tool.table_argument)
        if tool.dataset_argument and isinstance(name, str) and "." not in name \
                and isinstance(arguments.get(tool.dataset_argument), str):
            name = f"{arguments[tool.dataset_argument]}.{name}"
        table = _table_name(tool, name)
        if table is None:
            return None, Reason("metadata.bad_table", f"The {tool.table_argument!r} argument "
                                "must name a table as dataset.table or project.dataset.table")
        for role in roles:
            if role.sql.table_allowed(table, tool.project):
                return role, None
        return None, Reason("metadata.table_not_allowed",
                            f"table {table} is not one your role may query", table=table)
    dataset = _dataset_name(tool, arguments.get(tool.dataset_argument)) \
        if tool.dataset_argument else None
    if tool.dataset_argument and dataset is None:
        return None, Reason("metadata.bad_dataset",
                            f"The {tool.dataset_argument!r} argument must name a dataset")
    if tool.describes_dataset:
        assert dataset is not None
        for role in roles:
            if role.sql.dataset_visible(dataset, tool.project):
                return role, None
        return None, Reason("metadata.dataset_not_allowed",
                            f"dataset {dataset} holds no table your role may query")
    return roles[0], None


def _listing(result: Mapping[str, Any], key: str) -> list[Any] | None:
    """The items of a listing result under ``key`` (see the module docstring), or None when the
    result is not in that shape."""
    if key == TEXT_BLOCKS:
        content = result.get("content")
        if result.get("structuredContent") is not None or not isinstance(content, list):
            return None  # a second copy of the listing, or none: not the shape we filter
        items = []
        for block in content:
            if not isinstance(block, Mapping) or block.get("type") != "text" \
                    or not isinstance(block.get("text"), str) or set(block) - {"type", "text"}:
                return None
            try:
                items.append(json.loads(block["text"]))
            except ValueError:
                return None
        return items
    structured = result.get("structuredContent")
    if isinstance(structured, dict) and isinstance(structured.get(key), list):
        return structured[key]
    return None


def _with_listing(result: Mapping[str, Any], key: str, kept: list[str]) -> dict[str, Any]:
    """``result`` saying ``kept`` where it listed more, in the same shape (structured content
    and its text, or one text block per item)."""
    if key == TEXT_BLOCKS:
        return {**result, "content": [{"type": "text", "text": json.dumps(item)}
                                      for item in kept]}
    filtered = {**result["structuredContent"], key: kept}
    return {**result, "structuredContent": filtered,
            "content": [{"type": "text", "text": json.dumps(filtered)}]}


def _withheld(result: Mapping[str, Any], what: str) -> dict[str, Any]:
    return tool_error_in_place_of(result, f"Wardgate withheld a {what} listing it could not "
                                  "filter")


def filter_dataset_listing(result: dict[str, Any], tool: MetadataTool,
                           role: RolePolicy) -> dict[str, Any]:
    """``result`` with its dataset listing cut to datasets holding a table ``role`` may query;
    the text is rebuilt from the filtered listing so both say the same."""
    if result.get("isError") is True:
        return result
    items = _listing(result, tool.lists_datasets) if tool.lists_datasets else None
    if items is None:
        return _withheld(result, "dataset")  # a listing we cannot read is not passed on unfiltered
    kept = [d for d in items
            if isinstance(d, str) and (name := _dataset_name(tool, d)) is not None
            and role.sql.dataset_visible(name, tool.project)]
    return _with_listing(result, tool.lists_datasets, kept)


def filter_table_listing(result: dict[str, Any], tool: MetadataTool, role: RolePolicy,
                         arguments: Mapping[str, Any]) -> dict[str, Any]:
    """``result`` with its table listing cut to tables ``role`` may query; the text is rebuilt
    from the filtered listing so both say the same."""
    dataset = _dataset_name(tool, arguments.get(tool.dataset_argument or ""))
    items = _listing(result, tool.lists) if tool.lists and dataset is not None else None
    if items is None:
        if result.get("isError") is True:
            return result
        return _withheld(result, "table")  # a listing we cannot read is not passed on unfiltered
    kept = [t for t in items
            if isinstance(t, str) and role.sql.table_allowed(f"{dataset}.{t.lower()}",
                                                             tool.project)]
    return _with_listing(result, tool.lists, kept)
