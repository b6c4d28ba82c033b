"""Sign-in, sign-out, failed sign-ins, failed MFA codes and MFA enrolment are audit events."""

from __future__ import annotations

from typing import Any

from allauth.mfa.signals import authentication_failed, authenticator_added, authenticator_removed
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from portal.edge import meta_from_request
from portal.models import PortalSession
from portal.services.events import RequestMeta, portal_event


def _meta(request: Any) -> RequestMeta:
    return meta_from_request(request) if request is not None else RequestMeta()


@receiver(user_logged_in)
def _logged_in(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    meta = _meta(request)
    session = getattr(request, "session", None)
    if session is not None:
        if session.session_key is None:
            session.save()
        PortalSession.objects.update_or_create(
            session_key=session.session_key,
            defaults={"user": user, "source_ip": meta.source_ip, "user_agent": meta.user_agent})
    portal_event("login", by=user, meta=meta, decision="allow",
                 detail={"account": user.get_username()})


@receiver(user_logged_out)
def _logged_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    session = getattr(request, "session", None)
    if session is not None and session.session_key:
        PortalSession.objects.filter(session_key=session.session_key).delete()
    if user is not None:
        portal_event("logout", by=user, meta=_meta(request),
                     detail={"account": user.get_username()})


@receiver(user_login_failed)
def _login_failed(sender: Any, credentials: dict[str, Any], request: Any = None,
                  **kwargs: Any) -> None:
    # Only the username: never the password (Django already masks it, this is belt and braces).
    username = str(credentials.get("username") or credentials.get("login") or "")[:150]
    portal_event("login_failed", by=None, actor="", meta=_meta(request), decision="deny",
                 detail={"username": username})


@receiver(authenticator_added)
def _mfa_added(sender: Any, request: Any, authenticator: Any, **kwargs: Any) -> None:
    portal_event("mfa_enrolled", by=authenticator.user, meta=_meta(request),
                 detail={"account": authenticator.user.get_username(),
                         "type": authenticator.type})


@receiver(authenticator_removed)
def _mfa_removed(sender: Any, request: Any, authenticator: Any, **kwargs: Any) -> None:
    portal_event("mfa_removed", by=authenticator.user, meta=_meta(request),
                 detail={"account": authenticator.user.get_username(),
                         "type": authenticator.type})


@receiver(authentication_failed)
def _mfa_failed(sender: Any, request: Any, user: Any, authenticator: Any,
                reauthentication: bool = False, **kwargs: Any) -> None:
    # A wrong code after a right password: someone may hold the password (IA-2(1), AC-7).
    portal_event("mfa_failed", by=user, meta=_meta(request), decision="deny",
                 detail={"account": user.get_username(), "type": authenticator.type,
                         "reauthentication": reauthentication})
