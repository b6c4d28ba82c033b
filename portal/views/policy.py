"""Admins: connections (credentials write-only), tool catalogue, roles, masking, "try it"."""

from __future__ import annotations

from typing import Any

import yaml
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from portal.forms import ConnectionForm, CredentialsForm, RoleForm, TryForm
from portal.models import Connection, Role
from portal.roles import Role as PortalRole
from portal.selectors.policy import connections_with_pending_tools, role_list
from portal.services.catalog import tool_catalog_accept
from portal.services.policy import (
    connection_credentials_set,
    connection_save,
    policy_export,
    policy_try,
    role_save,
)
from portal.views._base import form_act, meta_from_request, role_required, service_call


@role_required(PortalRole.ADMIN)
def connections_page(request: HttpRequest) -> HttpResponse:
    return render(request, "portal/connections.html",
                  {"connections": connections_with_pending_tools()})


@role_required(PortalRole.ADMIN)
def connection_edit(request: HttpRequest, slug: str | None = None) -> HttpResponse:
    connection = get_object_or_404(Connection, slug=slug) if slug else Connection()
    form = ConnectionForm(request.POST or None, instance=connection)
    if request.method == "POST" and form.is_valid():
        saved = service_call(request, lambda: connection_save(
            connection=form.instance, by=request.user, reason=form.cleaned_data["reason"],
            meta=meta_from_request(request)), form=form)
        if saved is not None:
            messages.success(request, f"Connection {saved.slug} saved.")
            return redirect("portal:connection_edit", slug=saved.slug)
    catalog = connection.tool_catalog.all() if connection.pk else []
    return render(request, "portal/connection_edit.html", {
        "form": form, "connection": connection, "catalog": catalog,
        "credentials_form": CredentialsForm() if connection.pk else None})


@require_POST
@role_required(PortalRole.ADMIN)
def connection_credentials(request: HttpRequest, slug: str) -> HttpResponse:
    connection = get_object_or_404(Connection, slug=slug)

    def replace(data: dict[str, Any]) -> str:
        connection_credentials_set(connection=connection, by=request.user,
                                   credentials=data["credentials"], reason=data["reason"],
                                   meta=meta_from_request(request))
        return "Credentials replaced (stored encrypted, never shown)."

    form_act(request, CredentialsForm(request.POST), act=replace,
             prefix="Credentials not changed: ")
    return redirect("portal:connection_edit", slug=slug)


@require_POST
@role_required(PortalRole.ADMIN)
def connection_catalog_accept(request: HttpRequest, slug: str) -> HttpResponse:
    connection = get_object_or_404(Connection, slug=slug)
    names = [n for n in request.POST.getlist("names") if n]
    accepted = tool_catalog_accept(connection=connection, names=names or None,
                                   by=request.user, meta=meta_from_request(request))
    messages.success(request, f"Accepted {len(accepted)} tool version(s).")
    return redirect("portal:connection_edit", slug=slug)


@role_required(PortalRole.ADMIN)
def roles_page(request: HttpRequest) -> HttpResponse:
    return render(request, "portal/roles.html", {"roles": role_list()})


@role_required(PortalRole.ADMIN)
def role_edit(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    role = get_object_or_404(Role, pk=pk) if pk else Role()
    form = RoleForm(request.POST or None, instance=role)
    if request.method == "POST" and form.is_valid():
        saved = service_call(request, lambda: role_save(
            role=form.instance, by=request.user, reason=form.cleaned_data["reason"],
            meta=meta_from_request(request)), form=form)
        if saved is not None:
            messages.success(request, f"Role {saved.name} saved.")
            return redirect("portal:role_edit", pk=saved.pk)
    return render(request, "portal/role_edit.html", {"form": form, "role": role})


@role_required(PortalRole.ADMIN)
def policy_try_view(request: HttpRequest) -> HttpResponse:
    form = TryForm(request.POST or None)
    result = None
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        connection = data["connection"]
        arguments = dict(data["arguments"])
        sql_tool = connection.sql_tool(data["tool"])
        if sql_tool and data["sql"]:
            arguments[sql_tool[0]] = data["sql"]
        try:
            result = service_call(request, lambda: policy_try(
                role=data["role"], connection=connection, tool=data["tool"], arguments=arguments,
                run_sample=data["run_sample"], by=request.user, meta=meta_from_request(request)),
                form=form)
        except Exception as exc:  # BigQuery unreachable, bad SQL for the sample, ...
            form.add_error(None, f"Could not evaluate: {exc}")
    return render(request, "portal/policy_try.html", {"form": form, "result": result})


@role_required(PortalRole.ADMIN, PortalRole.AUDITOR)
def policy_export_view(request: HttpRequest) -> HttpResponse:
    text = yaml.safe_dump(policy_export(), sort_keys=False, allow_unicode=True)
    response = HttpResponse(text, content_type="application/yaml")
    response["Content-Disposition"] = 'attachment; filename="wardgate-policy.yaml"'
    return response
