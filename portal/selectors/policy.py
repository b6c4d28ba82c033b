"""Connections and roles as the pages list them."""

from __future__ import annotations

from django.db.models import QuerySet

from portal.models import Connection, Role, ToolCatalogEntry


def connection_list(*, enabled: bool | None = None) -> QuerySet[Connection]:
    connections = Connection.objects.all()
    return connections if enabled is None else connections.filter(enabled=enabled)


def connections_with_pending_tools() -> list[tuple[Connection, list[ToolCatalogEntry]]]:
    """Each connection with the tool versions still waiting for an admin to accept them."""
    connections = Connection.objects.prefetch_related("tool_catalog")
    return [(c, [e for e in c.tool_catalog.all() if e.status == ToolCatalogEntry.Status.PENDING])
            for c in connections]


def role_list() -> QuerySet[Role]:
    return Role.objects.all()
