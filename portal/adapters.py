"""allauth adapters: no self sign-up for local accounts; SSO identities provisioned on first
login through portal.services.identity (groups only through the configured group map)."""

from __future__ import annotations

import time
from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from django.contrib.auth import get_user_model
from django.http import HttpRequest

from portal.config import portal_config


class AccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request: HttpRequest) -> bool:
        return portal_config().open_signup

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
    """The groups an IdP's claims grant: only values in WARDGATE_SSO_GROUP_MAP count."""
    from portal.services.identity import groups_mapped, raw_groups_from_claims

    return groups_mapped(raw_groups_from_claims(extra_data))


class SocialAccountAdapter(DefaultSocialAccountAdapter):
    """Portal SSO goes through portal.services.identity, like gateway OIDC tokens: keyed by
    provider + subject (allauth's SocialAccount), never connected to an account by e-mail or
    name, groups only through the group map, every change recorded."""

    def is_open_for_signup(self, request: HttpRequest, sociallogin: Any) -> bool:
        return True  # SSO identities are provisioned on first login

    def is_auto_signup_allowed(self, request: HttpRequest, sociallogin: Any) -> bool:
        return True  # the username is ours to choose (never an existing account's)

    def populate_user(self, request: HttpRequest, sociallogin: Any, data: dict) -> Any:
        from portal.services.identity import external_username

        user = super().populate_user(request, sociallogin, data)
        hint = data.get("username") or (data.get("email") or "").split("@")[0]
        user.username = external_username(str(hint or ""), sociallogin.account.provider)
        return user

    def pre_social_login(self, request: HttpRequest, sociallogin: Any) -> None:
        if sociallogin.is_existing:
            self._sync(request, sociallogin, created=False)
            return
        # An address another account holds is not carried over (allauth would stop at a
        # sign-up form); it never links the two accounts either way.
        from allauth.account.models import EmailAddress

        sociallogin.email_addresses = [
            a for a in sociallogin.email_addresses
            if not EmailAddress.objects.filter(email__iexact=a.email).exists()
            and not get_user_model().objects.filter(email__iexact=a.email).exists()]

    def save_user(self, request: HttpRequest, sociallogin: Any, form: Any = None) -> Any:
        from portal.services.identity import external_username

        user = sociallogin.user
        user.username = external_username(user.get_username(), sociallogin.account.provider)
        user.set_unusable_password()
        sociallogin.save(request)
        self._sync(request, sociallogin, created=True)
        return user

    @staticmethod
    def _sync(request: HttpRequest, sociallogin: Any, *, created: bool) -> None:
        from portal.edge import meta_from_request
        from portal.services.identity import external_identity_sync, raw_groups_from_claims

        external_identity_sync(
            user=sociallogin.user, provider=sociallogin.account.provider,
            subject=str(sociallogin.account.uid),
            raw_groups=raw_groups_from_claims(sociallogin.account.extra_data), created=created,
            meta=meta_from_request(request, auth_method="sso"))
