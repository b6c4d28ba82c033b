"""Account lifecycle (AC-2): disable takes effect at once, inactivity disables, all recorded."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.sessions.models import Session
from django.utils import timezone

from audit.models import AuditRecord
from audit.verify import verify_chain
from portal.config import portal_config
from portal.models import ApiToken, Grant, PersonalToken, PortalSession
from portal.services.accounts import (
    AccountError,
    account_create,
    account_disable,
    account_enable,
    accounts_disable_inactive,
)
from portal.services.api_tokens import api_token_issue
from portal.services.events import SYSTEM
from portal.services.security import security_revision_current
from portal.services.tokens import token_issue
from tests.portal.conftest import client_for, portal_user

pytestmark = pytest.mark.django_db(transaction=True)


def test_disable_revokes_tokens_ends_sessions_bumps_and_records(people, connection) -> None:
    admin, eng = people["admin"], people["engineer"]
    token, _ = token_issue(user=eng, connections=[connection], by=None, meta=SYSTEM)
    api_token, _ = api_token_issue(user=eng, name="ci", by=eng)
    client = client_for(eng)
    client.get("/")  # a live portal session (recorded by the login signal)
    assert PortalSession.objects.filter(user=eng).exists()
    before = security_revision_current()

    account_disable(account=eng, by=admin, reason="left the company")

    eng.refresh_from_db()
    assert not eng.is_active
    assert PersonalToken.objects.get(pk=token.pk).revoked_at is not None
    assert ApiToken.objects.get(pk=api_token.pk).revoked_at is not None
    assert not Session.objects.filter(session_key=client.session.session_key).exists()
    assert client.get("/").status_code == 302  # signed out
    assert security_revision_current() > before
    record = AuditRecord.objects.filter(event="portal.account_disabled").get()
    assert record.actor == admin.username and record.auth_method == ""
    assert record.detail["reason"] == "left the company"
    assert record.detail["account"] == eng.username
    assert record.detail["tokens_revoked"] == [token.pk]
    assert verify_chain().ok


def test_disable_needs_a_reason_and_not_yourself(people) -> None:
    admin = people["admin"]
    with pytest.raises(AccountError, match="reason"):
        account_disable(account=people["engineer"], by=admin, reason=" ")
    with pytest.raises(AccountError, match="own"):
        account_disable(account=admin, by=admin, reason="oops")


def test_create_and_reenable_are_recorded(people) -> None:
    admin = people["admin"]
    user = account_create(username="newbie", password="a-long-password-1", roles=["engineer"],
                          by=admin, reason="joined data team")
    assert list(user.groups.values_list("name", flat=True)) == ["engineer"]
    account_disable(account=user, by=admin, reason="test")
    account_enable(account=user, by=admin, reason="back from leave")
    events = list(AuditRecord.objects.filter(detail__account="newbie")
                  .values_list("event", flat=True))
    assert events == ["portal.account_created", "portal.account_disabled",
                      "portal.account_enabled"]
    with pytest.raises(AccountError, match="exists"):
        account_create(username="NEWBIE", password=None, roles=[], by=admin, reason="dup")


def test_inactive_accounts_are_disabled_by_the_scheduled_task(people, connection, configure) -> None:
    configure(portal_config, inactive_account_days=30)
    now = timezone.now()
    old = portal_user("old-timer", "engineer")
    old.date_joined = old.last_login = now - dt.timedelta(days=90)
    old.save()
    used = portal_user("token-user", "engineer")
    used.date_joined = used.last_login = now - dt.timedelta(days=90)
    used.save()
    token, _ = token_issue(user=used, connections=[connection], by=None, meta=SYSTEM)
    PersonalToken.objects.filter(pk=token.pk).update(last_used_at=now - dt.timedelta(days=2))

    from portal.tasks import disable_inactive_accounts

    disabled = disable_inactive_accounts.apply().get()
    assert disabled == ["old-timer"]
    old.refresh_from_db()
    assert not old.is_active
    record = AuditRecord.objects.get(event="portal.account_disabled_inactive")
    assert record.actor == "system" and "no activity for 30 days" in record.detail["reason"]
    assert accounts_disable_inactive(now=now) == []  # nothing left to do
    assert verify_chain().ok


def test_expired_grants_show_as_expired(people, connection, analyst) -> None:
    eng = people["engineer"]
    Grant.objects.create(role=analyst, connection=connection, user=eng, reason="old",
                         expires_at=timezone.now() - dt.timedelta(hours=1))
    page = client_for(people["admin"]).get(f"/users/{eng.pk}/")
    assert page.status_code == 200
    assert b'badge expired">expired' in page.content


def test_admin_pages_disable_account_with_reason(people) -> None:
    admin, eng = people["admin"], people["engineer"]
    client = client_for(admin)
    assert client.post(f"/users/{eng.pk}/disable/", {"reason": ""}).status_code == 302
    eng.refresh_from_db()
    assert eng.is_active  # no reason, no change
    client.post(f"/users/{eng.pk}/disable/", {"reason": "compromised laptop"})
    eng.refresh_from_db()
    assert not eng.is_active
    record = AuditRecord.objects.get(event="portal.account_disabled")
    assert record.auth_method == "session" and record.source_ip == "127.0.0.1"
