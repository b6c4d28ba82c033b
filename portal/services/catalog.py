"""Reviewing an upstream's tool catalogue: fetch it, store unseen versions, accept them."""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from portal.models import Connection, ToolCatalogEntry
from portal.services.events import SYSTEM, RequestMeta, portal_event
from portal.services.security import security_revision_bump
from proxy.tool_catalog import tool_digest


async def _list_upstream_tools(connection: Connection) -> list[dict[str, Any]]:
    from mcp import StdioServerParameters
    from mcp.client import Client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    from proxy.google_auth import STDIO_TOKEN_ENV, GoogleTokenSource, google_auth_config

    creds = connection.credentials_for_upstream()
    headers, env = dict(creds.get("headers") or {}), dict(creds.get("env") or {})
    google = google_auth_config(creds)
    if google is not None:
        token = await GoogleTokenSource(google).token()
        headers["Authorization"], env[STDIO_TOKEN_ENV] = f"Bearer {token}", token
    if connection.transport == Connection.Transport.STDIO:
        argv = list(connection.upstream_command)
        target: Any = StdioServerParameters(command=argv[0], args=argv[1:], env=env or None)
    else:
        http = create_mcp_http_client(headers=headers)
        target = streamable_http_client(connection.upstream_url, http_client=http)
    import mcp_types

    async def never_called(*_: Any, **__: Any) -> mcp_types.ErrorData:
        return mcp_types.ErrorData(code=-32601, message="catalogue review only")

    # Declare every client capability: some servers offer tools (sampling, elicitation, roots)
    # only to clients that can serve them, and the review must see those too.
    async with Client(target, sampling_callback=never_called, elicitation_callback=never_called,
                      list_roots_callback=never_called) as client:
        tools = (await client.list_tools()).tools
    return [t.model_dump(by_alias=True, exclude_none=True, mode="json") for t in tools]


def tool_catalog_observe(*, connection: Connection, tools: list[dict[str, Any]]) -> list[ToolCatalogEntry]:
    """Store versions not seen before as pending; return them."""
    created = []
    for tool in tools:
        entry, is_new = ToolCatalogEntry.objects.get_or_create(
            connection=connection, name=tool["name"], digest=tool_digest(tool),
            defaults={"description": str(tool.get("description") or ""),
                      "input_schema": tool.get("inputSchema") or {}},
        )
        if is_new:
            created.append(entry)
    return created


def tool_catalog_refresh(*, connection: Connection, by: AbstractBaseUser | None = None,
                         meta: RequestMeta = SYSTEM) -> list[ToolCatalogEntry]:
    """Ask the upstream for its tools now and store what is new (pending: hidden until
    accepted), recorded when anything is new."""
    tools = async_to_sync(_list_upstream_tools)(connection)
    with transaction.atomic():
        created = tool_catalog_observe(connection=connection, tools=tools)
        if created:
            portal_event("tool_catalog_refreshed", by=by, meta=meta, connection=connection.slug,
                         detail={"connection": connection.slug, "pending": [
                             {"name": e.name, "digest": e.digest} for e in created]})
    return created


@transaction.atomic
def tool_catalog_accept(
    *, connection: Connection, by: AbstractBaseUser | None, meta: RequestMeta,
    names: list[str] | None = None,
) -> list[ToolCatalogEntry]:
    """Accept pending tool versions (all, or the named tools), as an audit event."""
    pending = connection.tool_catalog.select_for_update().filter(
        status=ToolCatalogEntry.Status.PENDING)
    if names:
        pending = pending.filter(name__in=names)
    now = timezone.now()
    accepted = []
    for entry in pending.order_by("first_seen_at"):
        connection.tool_catalog.filter(name=entry.name, status=ToolCatalogEntry.Status.ACCEPTED) \
            .update(status=ToolCatalogEntry.Status.SUPERSEDED)
        entry.status = ToolCatalogEntry.Status.ACCEPTED
        entry.decided_by = by
        entry.decided_at = now
        entry.save(update_fields=["status", "decided_by", "decided_at"])
        accepted.append(entry)
    if accepted:
        security_revision_bump()
        portal_event("tool_catalog_accepted", by=by, meta=meta, connection=connection.slug,
                     detail={"connection": connection.slug,
                             "tools": [{"name": e.name, "digest": e.digest} for e in accepted]})
    return accepted
