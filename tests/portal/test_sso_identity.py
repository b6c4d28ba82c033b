"""Portal single sign-on (allauth's OpenID Connect provider) goes through the same identity
rules as gateway tokens: keyed by provider + subject, never merged with a local account by
name or e-mail, groups only through the group map, and the same account on both sides when the
gateway trusts the portal's issuer."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser
from django.contrib.messages.storage.fallback import FallbackStorage
from django.contrib.sessions.middleware import SessionMiddleware
from django.test import RequestFactory

from audit.models import AuditRecord
from tests.portal.conftest import portal_user

pytestmark = pytest.mark.django_db(transaction=True)
ISSUER = "http://127.0.0.1:9/realms/corp"


@pytest.fixture
def sso(settings, configure):  # type: ignore[no-untyped-def]
    from portal.config import portal_config

    settings.SOCIALACCOUNT_PROVIDERS = {"openid_connect": {"APPS": [{
        "provider_id": "sso", "name": "SSO", "client_id": "wardgate", "secret": "s",
        "settings": {"server_url": ISSUER}}]}}
    configure(portal_config, sso_group_map={"corp-auditors": "auditor"})


def sign_in(claims: dict):  # type: ignore[no-untyped-def]
    from allauth.core import context
    from allauth.socialaccount.adapter import get_adapter
    from allauth.socialaccount.helpers import complete_social_login

    request = RequestFactory().get("/accounts/oidc/sso/login/callback/")
    SessionMiddleware(lambda r: None).process_request(request)
    request.user = AnonymousUser()
    request._messages = FallbackStorage(request)
    provider = get_adapter().get_provider(request, "sso")
    login = provider.sociallogin_from_response(request, claims)
    with context.request_context(request):
        complete_social_login(request, login)
    return login.user


def test_sso_sign_in_never_becomes_a_local_account_and_maps_only_configured_groups(sso) -> None:  # type: ignore[no-untyped-def]
    local_admin = portal_user("admin", "admin")
    local_admin.email = "admin@corp.example"
    local_admin.save()
    user = sign_in({"sub": "u-1", "preferred_username": "admin", "email": "admin@corp.example",
                    "email_verified": True, "groups": ["admin", "corp-auditors"]})
    assert user.pk != local_admin.pk and user.username == "admin@sso"
    assert sorted(user.groups.values_list("name", flat=True)) == ["auditor"]
    assert sorted(local_admin.groups.values_list("name", flat=True)) == ["admin"]
    record = AuditRecord.objects.get(event="portal.account_provisioned")
    assert record.detail["subject"] == "u-1" and record.detail["unmapped_claim_values"] == ["admin"]
    # Next sign-in without the IdP group: same account, group removed and recorded.
    again = sign_in({"sub": "u-1", "preferred_username": "renamed", "groups": []})
    assert again.pk == user.pk and not again.groups.exists()
    assert AuditRecord.objects.get(event="portal.account_groups_changed").detail["removed"] == \
        ["auditor"]

    # The gateway trusting the same issuer resolves the same person to the same account.
    from portal.services.events import RequestMeta
    from portal.services.identity import external_identity_resolve, provider_for_issuer

    gateway_user = external_identity_resolve(
        provider=provider_for_issuer(ISSUER + "/"), subject="u-1", username_hint="x", email="",
        claims={}, raw_groups=[], meta=RequestMeta(auth_method="oidc"))
    assert gateway_user.pk == user.pk
