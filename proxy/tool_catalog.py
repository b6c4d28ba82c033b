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
from dataclasses import dataclass
from typing import Any

from proxy.db import run_db
from proxy.store import GatewayStore
from proxy.ttl_cache import TtlCache


def tool_digest(tool: dict[str, Any]) -> str:
    canonical = json.dumps(
        {"name": tool.get("name"), "description": tool.get("description"),
         "inputSchema": tool.get("inputSchema")},
        sort_keys=True, separators=(",", ":"), ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class CatalogReview:
    visible: list[dict[str, Any]]
    hidden: list[str]
    newly_seen: list[str]


class ToolCatalog:
    """Accepted versions per connection (cached; dropped on security revision) and the
    versions last seen from each upstream in this process."""

    def __init__(self, store: GatewayStore, ttl_seconds: float = 30.0) -> None:
        self.store = store
        self.ttl_seconds = ttl_seconds
        self._accepted: TtlCache[int, dict[str, str]] = TtlCache(ttl_seconds)
        self._last_seen: dict[int, dict[str, str]] = {}

    def invalidate(self) -> None:
        self._accepted.clear()

    async def accepted(self, connection_id: int) -> dict[str, str]:
        until = time.monotonic() + self.ttl_seconds
        hit = self._accepted.get(connection_id)
        if hit is not None:
            return hit
        accepted = await run_db(self.store.tools_accepted, connection_id)
        self._accepted.put(connection_id, accepted, until=until)
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
            newly_seen = await run_db(self.store.tool_versions_add, connection_id, unaccepted)
        return CatalogReview(visible, hidden, newly_seen)

    async def accepted_schema(self, connection_id: int, tool: str) -> dict[str, Any] | None:
        """The input schema of the accepted version of `tool`, or None."""
        return await run_db(self.store.tool_accepted_schema, connection_id, tool)

    async def callable(self, connection_id: int, tool: str) -> bool:
        accepted = await self.accepted(connection_id)
        if tool not in accepted:
            return False
        # If this process has seen the upstream offer a different version since, that version
        # was not accepted: refuse until an admin looks.
        seen = self._last_seen.get(connection_id, {}).get(tool)
        return seen is None or seen == accepted[tool]
