"""Stage mask (proxy.stages; run by the data handlers): PII in a tool result is masked before
it leaves (SI-19; SC-13 for keyed tokenization). Column classes flow from the SQL's lineage;
everything else goes through the content detectors."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from time import perf_counter
from typing import Any

from policy.masking import (
    COMPUTED_CLASS,
    MaskingPolicy,
    MaskingSummary,
    UnmaskableResult,
    declared_columns,
    mask_tool_result,
)
from proxy.metrics import observe_mask

__all__ = ["ColumnPlan", "UnmaskableResult", "mask_call_result"]


@dataclass(frozen=True, slots=True)
class ColumnPlan:
    """PII classes per output column of a SQL result: by position and by name."""

    by_position: tuple[frozenset[str], ...]
    by_name: Mapping[str, frozenset[str]]
    all_classes: frozenset[str]  # every class the statement read anywhere
    names: tuple[str, ...] = ()  # the analysed output names, by position (lowercase)

    @property
    def may_hold_sensitive(self) -> bool:
        return bool(self.all_classes)


def _result_column_names(result: Mapping[str, Any]) -> list[str] | None:
    structured = result.get("structuredContent")
    if isinstance(structured, Mapping):
        # "columns", or BigQuery's {"schema": {"fields": [...]}} (the remote MCP server's
        # QueryResponse, whose rows are {"f": [{"v": ...}]} and name no column themselves).
        declared = declared_columns(structured)
        if declared is not None:
            return declared
        rows = structured.get("rows")
        if isinstance(rows, list) and rows and isinstance(rows[0], Mapping) \
                and set(rows[0]) != {"f"}:
            return [str(k) for k in rows[0]]
    return None


def _same_output(name: str, expected: str) -> bool:
    # sqlglot names an unnamed expression _col_N; BigQuery names it f0_, f1_...
    return name.casefold() == expected.casefold() or expected.startswith("_col_")


def column_classes_for(result: Mapping[str, Any], plan: ColumnPlan) -> dict[str, frozenset[str]]:
    """Align the result's columns with the analysed outputs.

    BigQuery names unnamed expressions itself (f0_, ...), so when the counts agree columns are
    matched by position; otherwise by name. A result column nobody can account for gets every
    class the statement read, and so does a name given twice: the strictest safe assumption.
    Such a column is redacted, never tokenized or partially kept: it may hold the caller's own
    value (``SELECT full_name AS e, 'Ada Lovelace' AS e``), and its token would confirm a guess.
    """
    names = _result_column_names(result)
    if names is not None and len(names) == len(plan.by_position):
        # A column whose name is not the one the analysis expects at its position (a star
        # expanded in another order, a stale schema, a duplicate renamed) gets every class
        # read; a name given twice gets the classes of both positions.
        mapping: dict[str, frozenset[str]] = {}
        for i, (name, classes) in enumerate(zip(names, plan.by_position, strict=True)):
            if i < len(plan.names) and not _same_output(name, plan.names[i]):
                classes = _unaccounted(plan.all_classes)
            if name in mapping:
                classes = _unaccounted(mapping[name] | classes)
            mapping[name] = classes
    else:
        mapping = dict(plan.by_name)
        for name in names or ():
            if name not in mapping:
                mapping[name] = _unaccounted(plan.all_classes)
    return mapping


def _unaccounted(classes: frozenset[str]) -> frozenset[str]:
    """Classes for a column we cannot tie to one output: redacted if any of them is masked."""
    return classes | {COMPUTED_CLASS} if classes else classes


def mask_call_result(
    result: dict[str, Any], plan: ColumnPlan | None, policy: MaskingPolicy
) -> tuple[dict[str, Any], MaskingSummary]:
    """Masked copy of a CallToolResult; raises UnmaskableResult when it cannot be made safe."""
    started = perf_counter()
    try:
        if plan is None:
            return mask_tool_result(result, {}, policy, may_hold_sensitive=False)
        return mask_tool_result(result, column_classes_for(result, plan), policy,
                                may_hold_sensitive=plan.may_hold_sensitive)
    finally:
        observe_mask(perf_counter() - started)
