"""Admins: account lifecycle (AC-2) and grants."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from portal.forms import AccountCreateForm, AccountRolesForm, GrantForm, ReasonForm
from portal.models import Grant
from portal.roles import Role
from portal.selectors.accounts import (
    account_api_tokens,
    account_gateway_sessions,
    account_get_by_username,
    account_grants,
    account_history,
    account_portal_sessions,
    account_tokens,
    accounts_with_activity,
    grant_state,
)
from portal.selectors.grants import grant_list
from portal.selectors.sessions import gateway_sessions_live
from portal.services.accounts import (
    account_create,
    account_disable,
    account_enable,
    account_roles_set,
)
from portal.services.grants import grant_create, grant_revoke
from portal.views._base import (
    act_with_reason,
    form_act,
    meta_from_request,
    role_required,
    service_call,
)


@role_required(Role.ADMIN)
def accounts_page(request: HttpRequest) -> HttpResponse:
    return render(request, "portal/accounts.html", {"rows": accounts_with_activity()})


@role_required(Role.ADMIN)
def account_new(request: HttpRequest) -> HttpResponse:
    form = AccountCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        user = service_call(request, lambda: account_create(
            username=data["username"], email=data["email"], password=data["password"] or None,
            roles=data["roles"], by=request.user, reason=data["reason"],
            meta=meta_from_request(request)), form=form)
        if user is not None:
            messages.success(request, f"Account {user.username} created.")
            return redirect("portal:account_detail", pk=user.pk)
    return render(request, "portal/account_new.html", {"form": form})


@role_required(Role.ADMIN)
def account_detail(request: HttpRequest, pk: int) -> HttpResponse:
    account = get_object_or_404(get_user_model(), pk=pk)
    now = timezone.now()
    grants = [(g, grant_state(g, now, holder=account)) for g in account_grants(account)]
    roles = sorted(account.groups.values_list("name", flat=True))
    return render(request, "portal/account_detail.html", {
        "account": account, "grants": grants, "tokens": account_tokens(account),
        "api_tokens": account_api_tokens(account),
        "portal_sessions": account_portal_sessions(account),
        "live_sessions": list(gateway_sessions_live(user=account)),
        "recent_sessions": account_gateway_sessions(account),
        "history": account_history(account), "reason_form": ReasonForm(),
        "roles_form": AccountRolesForm(initial={"roles": roles}), "now": now,
    })


@require_POST
@role_required(Role.ADMIN)
def account_disable_view(request: HttpRequest, pk: int) -> HttpResponse:
    account = get_object_or_404(get_user_model(), pk=pk)

    def disable(reason: str) -> str:
        account_disable(account=account, by=request.user, reason=reason,
                        meta=meta_from_request(request))
        return f"{account.username} disabled: tokens revoked, sessions ended, gateways told."

    act_with_reason(request, missing="Give a reason for disabling the account.", act=disable)
    return redirect("portal:account_detail", pk=pk)


@require_POST
@role_required(Role.ADMIN)
def account_enable_view(request: HttpRequest, pk: int) -> HttpResponse:
    account = get_object_or_404(get_user_model(), pk=pk)

    def enable(reason: str) -> str:
        account_enable(account=account, by=request.user, reason=reason,
                       meta=meta_from_request(request))
        return f"{account.username} re-enabled."

    act_with_reason(request, missing="Give a reason for re-enabling the account.", act=enable)
    return redirect("portal:account_detail", pk=pk)


@require_POST
@role_required(Role.ADMIN)
def account_roles_view(request: HttpRequest, pk: int) -> HttpResponse:
    account = get_object_or_404(get_user_model(), pk=pk)

    def set_roles(data: dict[str, Any]) -> str:
        account_roles_set(account=account, roles=data["roles"], by=request.user,
                          reason=data["reason"], meta=meta_from_request(request))
        return f"Roles of {account.username} updated."

    form_act(request, AccountRolesForm(request.POST), invalid="Give a reason for changing roles.",
             act=set_roles)
    return redirect("portal:account_detail", pk=pk)


@role_required(Role.ADMIN)
def grants_page(request: HttpRequest) -> HttpResponse:
    form = GrantForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        user = None
        if data["username"]:
            user = account_get_by_username(data["username"])
            if user is None:
                form.add_error("username", "No such account.")
        if not form.errors and service_call(request, lambda: grant_create(
                role=data["role"], connection=data["connection"], user=user, group=data["group"],
                expires_at=data["expires_at"], reason=data["reason"], by=request.user,
                meta=meta_from_request(request)), form=form) is not None:
            messages.success(request, "Grant created.")
            return redirect("portal:grants")
    now = timezone.now()
    grants = [(g, grant_state(g, now)) for g in grant_list()[:300]]
    return render(request, "portal/grants.html", {"form": form, "grants": grants,
                                                  "reason_form": ReasonForm()})


@require_POST
@role_required(Role.ADMIN)
def grant_revoke_view(request: HttpRequest, pk: int) -> HttpResponse:
    grant = get_object_or_404(Grant, pk=pk)

    def revoke(reason: str) -> str:
        grant_revoke(grant=grant, by=request.user, reason=reason, meta=meta_from_request(request))
        return f"Grant #{grant.pk} revoked."

    act_with_reason(request, missing="Give a reason for revoking the grant.", act=revoke)
    return redirect(request.POST.get("next") or "portal:grants")
