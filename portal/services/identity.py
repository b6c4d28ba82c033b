"""External identities (IA-2, IA-8, AC-2): one code path for portal single sign-on (allauth) and
OIDC bearer tokens at the gateway.

Rules, in one place:

* An external identity is keyed by its issuer (the allauth provider id, or the issuer URL for a
  gateway-only issuer) and its subject (`sub`), as allauth's `SocialAccount` models it. It is
  never matched to an existing account by a name or an e-mail address: a token that says
  `preferred_username: admin` gets an account of its own (named `admin@issuer-host` when
  `admin` is taken), not the local admin.
* Groups come only through `WARDGATE_SSO_GROUP_MAP` (`idp-value=group`): a claim value that is
  not in the map grants nothing, so a raw `groups: [admin]` never makes a portal admin. The
  identity provider owns exactly the groups the map can produce; groups an admin assigned
  locally are left alone.
* Every provisioning and every group change is an audit event and bumps the security revision.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import IntegrityError, transaction

from portal.config import portal_config
from portal.services.errors import ServiceError
from portal.services.events import RequestMeta, portal_event
from portal.services.security import security_revision_bump

_USERNAME_UNSAFE = re.compile(r"[^\w.@+-]")
MAX_SUBJECT_LENGTH = 191  # allauth SocialAccount.uid


class ExternalIdentityRefused(ServiceError):
    """An external (SSO/OIDC) identity that may not sign in or be provisioned."""

    default_code = "external_identity_refused"
    status = 403


def sso_group_map() -> dict[str, str]:
    return dict(portal_config().sso_group_map)


def groups_mapped(raw: Iterable[Any]) -> list[str]:
    """The groups an identity provider's claim values map to. Unmapped values grant nothing."""
    mapping = sso_group_map()
    found = {mapping[str(v)] for v in raw if isinstance(v, str | int) and str(v) in mapping}
    return sorted(name[:150] for name in found if name)


def raw_groups_from_claims(extra_data: Any) -> list[str]:
    """The raw groups claim (WARDGATE_SSO_GROUPS_CLAIM) from OIDC claims (top level, userinfo or
    ID token) or SAML attributes."""
    claim = portal_config().sso_groups_claim
    found: Any = None
    if isinstance(extra_data, dict):
        for source in (extra_data, extra_data.get("userinfo"), extra_data.get("id_token")):
            if isinstance(source, dict) and claim in source:
                found = source[claim]
                break
    if isinstance(found, str | int):
        found = [found]
    if not isinstance(found, list):
        return []
    return [str(v) for v in found if isinstance(v, str | int) and str(v)]


def provider_for_issuer(issuer: str) -> str:
    """The key of a gateway token issuer: the portal's SSO provider id when the gateway trusts
    the same issuer (so one person is one account on both sides), else the issuer URL."""
    portal = getattr(settings, "SOCIALACCOUNT_PROVIDERS", {}).get("openid_connect", {})
    for app in portal.get("APPS", []):
        server = str(app.get("settings", {}).get("server_url", "")).rstrip("/")
        if server and server == issuer.rstrip("/"):
            return str(app.get("provider_id") or "openid_connect")
    return issuer[:200]


def external_username(hint: str, provider: str) -> str:
    """A fresh username for a new external identity: the hint when nobody has it (any case),
    else `hint@issuer-host`, then numbered. Never an existing account's name."""
    user_model = get_user_model()
    base = _USERNAME_UNSAFE.sub("", hint or "")[:100] or "sso-user"
    host = urlsplit(provider).hostname or provider
    candidates = [base, f"{base}@{_USERNAME_UNSAFE.sub('', host)[:40]}"]
    candidates += [f"{candidates[1]}-{n}" for n in range(2, 1000)]
    for name in candidates:
        if not user_model.objects.filter(username__iexact=name).exists():
            return name
    raise RuntimeError("no free username for an external identity")


@transaction.atomic
def external_identity_sync(*, user: Any, provider: str, subject: str, raw_groups: Iterable[Any],
                           created: bool, meta: RequestMeta) -> list[str]:
    """Bring the groups the identity provider owns in line with its claim (through the map).
    Records `portal.account_provisioned` for a new account and `portal.account_groups_changed`
    for every change, and bumps the security revision when groups change. Returns the
    account's groups afterwards."""
    managed = set(sso_group_map().values())
    wanted = set(groups_mapped(raw_groups))
    before = sorted(user.groups.values_list("name", flat=True))
    current_managed = set(before) & managed
    added, removed = sorted(wanted - current_managed), sorted(current_managed - wanted)
    if removed:
        user.groups.remove(*Group.objects.filter(name__in=removed))
    for name in added:
        user.groups.add(Group.objects.get_or_create(name=name)[0])
    after = sorted((set(before) - set(removed)) | set(added))
    detail = {"account": user.get_username(), "provider": provider, "subject": subject,
              "before": before, "after": after, "added": added, "removed": removed,
              "unmapped_claim_values": sorted({str(v) for v in raw_groups}
                                              - set(sso_group_map()))[:50]}
    if added or removed:
        security_revision_bump()
    if created:
        portal_event("account_provisioned", by=user, meta=meta, detail=detail)
    elif added or removed:
        portal_event("account_groups_changed", by=user, meta=meta, detail=detail)
    return after


def external_identity_resolve(*, provider: str, subject: str, username_hint: str,
                              email: str, claims: Mapping[str, Any],
                              raw_groups: Iterable[Any], meta: RequestMeta) -> Any:
    """The account of the external identity (provider, subject), created on first sight, with
    its groups synced. Used by the gateway for OIDC bearer tokens."""
    from allauth.socialaccount.models import SocialAccount

    if not subject or len(subject) > MAX_SUBJECT_LENGTH:
        raise ExternalIdentityRefused(f"the subject must be 1 to {MAX_SUBJECT_LENGTH} characters")
    raw = list(raw_groups)
    for _attempt in range(2):  # a concurrent first sight of the same identity: retry once
        try:
            with transaction.atomic():
                account = (SocialAccount.objects.select_related("user")
                           .filter(provider=provider, uid=subject).first())
                created = account is None
                if account is None:
                    user = get_user_model()(username=external_username(username_hint, provider),
                                            email=email[:254] if email else "")
                    user.set_unusable_password()
                    user.save()
                    account = SocialAccount.objects.create(
                        user=user, provider=provider, uid=subject,
                        extra_data=_json_safe(claims))
                external_identity_sync(user=account.user, provider=provider, subject=subject,
                                       raw_groups=raw, created=created, meta=meta)
                return account.user
        except IntegrityError:
            continue
    raise RuntimeError("could not provision the external identity")


def _json_safe(claims: Mapping[str, Any]) -> dict[str, Any]:
    import json

    return json.loads(json.dumps(dict(claims), default=str))
