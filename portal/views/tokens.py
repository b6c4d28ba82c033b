"""Everyone: their own gateway tokens (for MCP clients) and portal API tokens."""

from __future__ import annotations

import datetime as dt

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from portal.forms import ApiTokenForm, TokenForm
from portal.models import ApiToken, PersonalToken
from portal.selectors.accounts import account_api_tokens, account_tokens
from portal.services.api_tokens import api_token_issue, api_token_revoke
from portal.services.tokens import token_issue, token_revoke
from portal.views._base import meta_from_request, service_call


@login_required
def tokens_page(request: HttpRequest) -> HttpResponse:
    form = TokenForm(request.POST or None, prefix="gw")
    api_form = ApiTokenForm(request.POST or None, prefix="api")
    issued = None
    if request.method == "POST" and request.POST.get("kind") == "gateway" and form.is_valid():
        data = form.cleaned_data
        issued = service_call(request, lambda: token_issue(
            user=request.user, connections=data["connections"], name=data["name"],
            ttl=dt.timedelta(days=data["days"]), by=request.user,
            meta=meta_from_request(request)), form=form)
    elif request.method == "POST" and request.POST.get("kind") == "api" and api_form.is_valid():
        data = api_form.cleaned_data
        issued = service_call(request, lambda: api_token_issue(
            user=request.user, name=data["name"], by=request.user,
            ttl=dt.timedelta(days=data["days"]), meta=meta_from_request(request)), form=api_form)
    return render(request, "portal/tokens.html", {
        "form": form, "api_form": api_form, "shown": issued[1] if issued else None,
        "gateway_base": request.build_absolute_uri("/mcp/"),
        "tokens": account_tokens(request.user), "api_tokens": account_api_tokens(request.user)})


@require_POST
@login_required
def token_revoke_view(request: HttpRequest, pk: int) -> HttpResponse:
    token = get_object_or_404(PersonalToken, pk=pk, user=request.user)
    token_revoke(token=token, by=request.user, meta=meta_from_request(request))
    messages.success(request, "Token revoked.")
    return redirect("portal:tokens")


@require_POST
@login_required
def api_token_revoke_view(request: HttpRequest, pk: int) -> HttpResponse:
    token = get_object_or_404(ApiToken, pk=pk, user=request.user)
    api_token_revoke(token=token, by=request.user, meta=meta_from_request(request))
    messages.success(request, "API token revoked.")
    return redirect("portal:tokens")
