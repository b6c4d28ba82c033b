"""Who may do what on which connection: grants and roles compiled into an `AccessPlan`.

Compiled once per (identity, connection) and cached until the security revision moves, so
the per-call checks only match precompiled patterns.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from policy.masking import MaskingPolicy
from policy.sql_policy import SqlRules

_ROLE_KEYS = {"tools", "resources", "prompts", "sql", "masking", "approval"}
_APPROVAL_KEYS = {"id", "tools", "tables", "statement_classes", "bytes_over", "approver_groups",
                  "required"}


@dataclass(frozen=True, slots=True)
class ApprovalRule:
    """Calls matching every condition given here wait for a human approval (IR-4)."""

    id: str
    tools: re.Pattern[str] | None
    tables: re.Pattern[str] | None
    statement_classes: frozenset[str] | None
    bytes_over: int | None
    approver_groups: tuple[str, ...]
    required: int

    def matches(self, tool: str, tables: tuple[str, ...], classes: tuple[str, ...],
                bytes_processed: int | None) -> bool:
        if self.tools is not None and not self.tools.fullmatch(tool):
            return False
        if self.tables is not None and not any(self.tables.fullmatch(t) for t in tables):
            return False
        if self.statement_classes is not None and not self.statement_classes & set(classes):
            return False
        return not (self.bytes_over is not None
                    and (bytes_processed is None or bytes_processed <= self.bytes_over))


def _approval_rules(data: Any, role: str) -> tuple[ApprovalRule, ...]:
    if not isinstance(data, list):
        raise ValueError(f"role {role!r}: 'approval' must be a list of rules")
    rules = []
    for i, item in enumerate(data):
        where = f"role {role!r}: approval[{i}]"
        if not isinstance(item, Mapping):
            raise ValueError(f"{where} must be a mapping")
        unknown = set(item) - _APPROVAL_KEYS
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
        groups = item.get("approver_groups")
        if not isinstance(groups, list) or not groups or not all(isinstance(g, str) for g in groups):
            raise ValueError(f"{where}: approver_groups must be a non-empty list of group names")
        required = item.get("required", 1)
        if isinstance(required, bool) or not isinstance(required, int) or required < 1:
            raise ValueError(f"{where}: required must be a positive integer")
        bytes_over = item.get("bytes_over")
        if bytes_over is not None and (isinstance(bytes_over, bool) or not isinstance(bytes_over, int)
                                       or bytes_over < 0):
            raise ValueError(f"{where}: bytes_over must be a non-negative integer")
        classes = item.get("statement_classes")
        if classes is not None and (not isinstance(classes, list)
                                    or not all(isinstance(c, str) for c in classes)):
            raise ValueError(f"{where}: statement_classes must be a list of strings")
        conditions = [k for k in ("tools", "tables", "statement_classes", "bytes_over") if k in item]
        if not conditions:
            raise ValueError(f"{where}: give at least one of tools, tables, statement_classes, "
                             "bytes_over")
        rules.append(ApprovalRule(
            id=str(item.get("id") or f"approval-{i}"),
            tools=_glob_regex(item["tools"], role, "approval.tools") if "tools" in item else None,
            tables=(_glob_regex([t.lower() for t in item["tables"]], role, "approval.tables")
                    if "tables" in item else None),
            statement_classes=frozenset(c.lower() for c in classes) if classes else None,
            bytes_over=bytes_over,
            approver_groups=tuple(groups),
            required=required,
        ))
    return tuple(rules)


@dataclass(frozen=True, slots=True)
class RolePolicy:
    name: str
    tool_pattern: re.Pattern[str]
    resource_pattern: re.Pattern[str]
    prompt_pattern: re.Pattern[str]
    sql: SqlRules
    masking: MaskingPolicy
    approval_rules: tuple[ApprovalRule, ...] = ()

    @property
    def needs_dry_run(self) -> bool:
        return self.sql.max_bytes_scanned is not None or any(
            r.bytes_over is not None for r in self.approval_rules)

    def approval_rule_for(self, tool: str, tables: tuple[str, ...], classes: tuple[str, ...],
                          bytes_processed: int | None) -> ApprovalRule | None:
        return next((r for r in self.approval_rules
                     if r.matches(tool, tables, classes, bytes_processed)), None)

    def allows_tool(self, tool: str) -> bool:
        return self.tool_pattern.fullmatch(tool) is not None

    def allows_resource(self, uri: str) -> bool:
        return self.resource_pattern.fullmatch(uri) is not None

    def allows_prompt(self, name: str) -> bool:
        return self.prompt_pattern.fullmatch(name) is not None


def _glob_regex(patterns: Any, role: str, key: str) -> re.Pattern[str]:
    if not isinstance(patterns, list) or not all(isinstance(p, str) and p for p in patterns):
        raise ValueError(f"role {role!r}: {key!r} must be a list of name patterns")
    if not patterns:
        return re.compile(r"(?!)")  # matches nothing: deny by default
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


def compile_role_rules(name: str, rules: Mapping[str, Any], *, token_key: bytes) -> RolePolicy:
    if not isinstance(rules, Mapping):
        raise ValueError(f"role {name!r}: rules must be a mapping")
    unknown = set(rules) - _ROLE_KEYS
    if unknown:
        raise ValueError(f"role {name!r}: unknown rule keys {sorted(unknown)}")
    return RolePolicy(
        name=name,
        tool_pattern=_glob_regex(rules.get("tools", []), name, "tools"),
        resource_pattern=_glob_regex(rules.get("resources", []), name, "resources"),
        prompt_pattern=_glob_regex(rules.get("prompts", []), name, "prompts"),
        sql=SqlRules.from_config(rules.get("sql", {})),
        masking=MaskingPolicy.from_config(rules.get("masking", {}), token_key=token_key),
        approval_rules=_approval_rules(rules.get("approval", []), name),
    )


@dataclass(frozen=True, slots=True)
class AccessPlan:
    """The roles one identity holds on one connection (empty = no access at all)."""

    roles: tuple[RolePolicy, ...]
    policy_version: int = 0

    def visible(self, tool: str) -> bool:
        return any(r.allows_tool(tool) for r in self.roles)

    def roles_for(self, tool: str) -> tuple[RolePolicy, ...]:
        return tuple(r for r in self.roles if r.allows_tool(tool))

    def resource_role(self, uri: str) -> RolePolicy | None:
        return next((r for r in self.roles if r.allows_resource(uri)), None)

    def prompt_role(self, name: str) -> RolePolicy | None:
        return next((r for r in self.roles if r.allows_prompt(name)), None)

