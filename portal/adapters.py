"""allauth adapters: no self sign-up for local accounts; SSO identities provisioned on first
login with their groups claim mapped to portal roles (Django groups)."""

from __future__ import annotations

import time
from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from django.conf import settings
from django.http import HttpRequest


class AccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request: HttpRequest) -> bool:
        return bool(getattr(settings, "WARDGATE_OPEN_SIGNUP", False))

    def is_reauthentication_required(self, *, app: str, **kwargs: Any) -> bool:
        """A sign-in within the reauthentication timeout counts as recent: someone sent
        straight from sign-in to the mandatory TOTP enrolment need not type the password
        twice. Anything later still asks again."""
        if not super().is_reauthentication_required(app=app, **kwargs):
            return False
        from allauth.account import app_settings
        from allauth.account.internal.flows.login import get_authentication_records
        from allauth.core import context

        request = context.request
        records = get_authentication_records(request, request.user) if request else []
        return not (records and time.time() - float(records[-1].get("at", 0))
                    < app_settings.REAUTHENTICATION_TIMEOUT)


def groups_from_claims(extra_data: Any) -> list[str]:
    """The groups an IdP asserted, from OIDC claims (userinfo or ID token) or SAML attributes,
    mapped through WARDGATE_SSO_GROUP_MAP."""
    claim = getattr(settings, "WARDGATE_SSO_GROUPS_CLAIM", "groups")
    mapping: dict[str, str] = getattr(settings, "WARDGATE_SSO_GROUP_MAP", {})
    found: Any = None
    if isinstance(extra_data, dict):
        for source in (extra_data, extra_data.get("userinfo"), extra_data.get("id_token")):
            if isinstance(source, dict) and claim in source:
                found = source[claim]
                break
    if isinstance(found, str):
        found = [found]
    if not isinstance(found, list):
        return []
    names = {mapping.get(str(v), str(v)) for v in found if isinstance(v, str | int) and str(v)}
    return sorted(n[:150] for n in names if n)


class SocialAccountAdapter(DefaultSocialAccountAdapter):
    def is_open_for_signup(self, request: HttpRequest, sociallogin: Any) -> bool:
        return True  # SSO identities are provisioned on first login

    def pre_social_login(self, request: HttpRequest, sociallogin: Any) -> None:
        # An existing SSO user: keep their groups in step with the IdP on every login.
        if sociallogin.is_existing:
            from portal.services.accounts import account_sso_sync

            account_sso_sync(user=sociallogin.user, provider=sociallogin.account.provider,
                             groups=groups_from_claims(sociallogin.account.extra_data),
                             created=False)

    def save_user(self, request: HttpRequest, sociallogin: Any, form: Any = None) -> Any:
        from portal.services.accounts import account_sso_sync

        user = super().save_user(request, sociallogin, form)
        account_sso_sync(user=user, provider=sociallogin.account.provider,
                         groups=groups_from_claims(sociallogin.account.extra_data), created=True)
        return user
