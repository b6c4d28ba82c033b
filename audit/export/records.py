"""An audit record as exported: plain JSON-ready values, plus the severity every format maps."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from ..chain import HASHED_FIELDS, canonical_datetime

EXPORT_FIELDS: tuple[str, ...] = (*HASHED_FIELDS, "hash")

try:
    PRODUCT_VERSION = version("wardgate")
except PackageNotFoundError:  # pragma: no cover - running from a tree that was not installed
    PRODUCT_VERSION = "0.0.0"

ExportRecord = dict[str, Any]


def export_record(row: Mapping[str, Any], *, include_response_body: bool = False) -> ExportRecord:
    """The record's fields (by default without `response_body`: it can be 64 KB of query
    results, which SIEMs bill for and syslog receivers truncate; `response_sha256` still
    identifies it, and the full record stays in the audit store)."""
    record = {name: row[name] for name in EXPORT_FIELDS}
    if isinstance(record["at"], datetime):
        record["at"] = canonical_datetime(record["at"])
    if not include_response_body:
        del record["response_body"]
    return record


def record_time(record: ExportRecord) -> datetime:
    return datetime.fromisoformat(record["at"])


def severity(record: ExportRecord) -> str:
    """One of error, warning, notice, info: a refused or failed call matters more to a SOC."""
    decision = record.get("decision", "")
    if decision == "error":
        return "error"
    if decision in {"deny", "withheld"}:
        return "warning"
    if decision == "hold":
        return "notice"
    return "info"


def succeeded(record: ExportRecord) -> bool | None:
    decision = record.get("decision", "")
    if decision in {"allow", "info"}:
        return True
    if decision in {"deny", "error", "withheld"}:
        return False
    return None
