"""Tool catalogue pinning: only tool versions an admin accepted are shown and callable.

A tool's version is the SHA-256 of its name, description and input schema. A new tool, or a
changed description or schema (a "rug pull", or a poisoned description aimed at the model),
is hidden and its calls refused until an admin accepts the new catalogue; each change is
stored (pending) and recorded in the audit trail.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from proxy.db import run_db


def tool_digest(tool: dict[str, Any]) -> str:
    canonical = json.dumps(
        {"name": tool.get("name"), "description": tool.get("description"),
         "inputSchema": tool.get("inputSchema")},
        sort_keys=True, separators=(",", ":"), ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _accepted(connection_id: int) -> dict[str, str]:
    from portal.models import ToolCatalogEntry

    rows = ToolCatalogEntry.objects.filter(
        connection_id=connection_id, status=ToolCatalogEntry.Status.ACCEPTED
    ).values_list("name", "digest")
    return dict(rows)


def _accepted_schema(connection_id: int, name: str) -> dict[str, Any] | None:
    from portal.models import ToolCatalogEntry

    row = ToolCatalogEntry.objects.filter(
        connection_id=connection_id, name=name, status=ToolCatalogEntry.Status.ACCEPTED
    ).values_list("input_schema", flat=True).first()
    return row if isinstance(row, dict) else None


def _store_new_versions(connection_id: int, tools: list[tuple[str, str, dict]]) -> list[str]:
    """Insert unseen (name, digest) versions as pending; return the names that were new."""
    from portal.models import ToolCatalogEntry

    new: list[str] = []
    for name, digest, tool in tools:
        _, created = ToolCatalogEntry.objects.get_or_create(
            connection_id=connection_id, name=name, digest=digest,
            defaults={"description": str(tool.get("description") or ""),
                      "input_schema": tool.get("inputSchema") or {}},
        )
        if created:
            new.append(name)
    return new


@dataclass
class CatalogReview:
    visible: list[dict[str, Any]]
    hidden: list[str]
    newly_seen: list[str]


@dataclass
class ToolCatalog:
    """Accepted versions per connection (cached; dropped on security revision) and the
    versions last seen from each upstream in this process."""

    ttl_seconds: float = 30.0
    _accepted: dict[int, tuple[float, dict[str, str]]] = field(default_factory=dict)
    _last_seen: dict[int, dict[str, str]] = field(default_factory=dict)

    def invalidate(self) -> None:
        self._accepted.clear()

    async def accepted(self, connection_id: int) -> dict[str, str]:
        now = time.monotonic()
        hit = self._accepted.get(connection_id)
        if hit is not None and now - hit[0] < self.ttl_seconds:
            return hit[1]
        accepted = await run_db(_accepted, connection_id)
        self._accepted[connection_id] = (now, accepted)
        return accepted

    async def review(self, connection_id: int, tools: Iterable[dict[str, Any]]) -> CatalogReview:
        accepted = await self.accepted(connection_id)
        seen: dict[str, str] = {}
        visible, hidden, unaccepted = [], [], []
        for tool in tools:
            if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
                continue  # a malformed entry is never shown
            digest = tool_digest(tool)
            seen[tool["name"]] = digest
            if accepted.get(tool["name"]) == digest:
                visible.append(tool)
            else:
                hidden.append(tool["name"])
                unaccepted.append((tool["name"], digest, tool))
        self._last_seen[connection_id] = seen
        newly_seen: list[str] = []
        if unaccepted:
            newly_seen = await run_db(_store_new_versions, connection_id, unaccepted)
        return CatalogReview(visible, hidden, newly_seen)

    async def accepted_schema(self, connection_id: int, tool: str) -> dict[str, Any] | None:
        """The input schema of the accepted version of `tool`, or None."""
        return await run_db(_accepted_schema, connection_id, tool)

    async def callable(self, connection_id: int, tool: str) -> bool:
        accepted = await self.accepted(connection_id)
        if tool not in accepted:
            return False
        # If this process has seen the upstream offer a different version since, that version
        # was not accepted: refuse until an admin looks.
        seen = self._last_seen.get(connection_id, {}).get(tool)
        return seen is None or seen == accepted[tool]
