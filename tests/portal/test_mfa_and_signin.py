"""MFA is required for admins and approvers; sign-in is rate limited and audited; there is no
Django admin; SSO identities are provisioned with their groups mapped."""

from __future__ import annotations

import pytest
from django.test import Client

from audit.models import AuditRecord
from portal.adapters import groups_from_claims
from portal.config import portal_config
from tests.portal.conftest import client_for, enrol_totp, portal_user, totp_now

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("role", ["admin", "approver"])
def test_admins_and_approvers_must_enrol_totp_first(role: str) -> None:
    user = portal_user(f"no-mfa-{role}", role, mfa=False)
    user.set_password("a-long-password-1")
    user.save()
    client = Client()
    signed_in = client.post("/accounts/login/", {"login": user.username,
                                                 "password": "a-long-password-1"}, follow=True)
    assert signed_in.redirect_chain[-1][0].startswith("/accounts/2fa/totp/activate/")
    assert signed_in.status_code == 200
    for path in ("/", "/approvals/", "/users/", "/tokens/"):
        response = client.get(path)
        assert response.status_code == 302, path
        assert response["Location"].startswith("/accounts/2fa/totp/activate/")
    api = client.get("/api/v1/accounts/")
    assert api.status_code == 403 and api.json()["code"] == "mfa_required"
    enrol_totp(user)
    assert client.get("/").status_code == 200


def test_engineers_and_auditors_need_no_totp() -> None:
    for role in ("engineer", "auditor"):
        assert client_for(portal_user(f"plain-{role}", role)).get("/").status_code == 200


def test_login_with_totp_and_audit_events(settings) -> None:
    user = portal_user("totp-admin", "admin")
    user.set_password("a-long-password-1")
    user.save()
    client = Client()
    response = client.post("/accounts/login/", {"login": "totp-admin",
                                                "password": "a-long-password-1"})
    assert response.status_code == 302 and "/accounts/2fa/authenticate/" in response["Location"]
    code = totp_now()
    response = client.post("/accounts/2fa/authenticate/", {"code": code})
    assert response.status_code == 302
    assert client.get("/users/").status_code == 200
    assert AuditRecord.objects.filter(event="portal.login", actor="totp-admin").exists()
    bad = Client().post("/accounts/login/", {"login": "totp-admin", "password": "wrong"})
    assert bad.status_code == 200
    failed = AuditRecord.objects.get(event="portal.login_failed")
    assert failed.detail == {"username": "totp-admin"} and "wrong" not in str(failed.detail)


def test_failed_logins_are_rate_limited() -> None:
    portal_user("target-user", "engineer")
    client = Client()
    pages = [client.post("/accounts/login/", {"login": "target-user",
                                              "password": f"wrong-{i}"}).content
             for i in range(7)]
    assert b"Too many failed login attempts" not in pages[0]
    assert b"Too many failed login attempts" in pages[-1]


def test_there_is_no_django_admin_to_change_things_unrecorded() -> None:
    # The Django admin changed users, groups and grants with no audit record and without the
    # services' side effects; it is gone, even for a superuser.
    root = portal_user("root", "admin", is_staff=True, is_superuser=True)
    for path in ("/admin/", "/admin/auth/user/", "/admin/login/"):
        assert client_for(root).get(path).status_code == 404, path


def test_sso_groups_claim_maps_to_roles_and_unmapped_values_grant_nothing(configure) -> None:
    configure(portal_config, sso_group_map={"idp-data-eng": "engineer", "idp-sec": "auditor"})
    assert groups_from_claims({"groups": ["idp-data-eng", "idp-sec", "other", "admin"]}) == \
        ["auditor", "engineer"]
    assert groups_from_claims({"userinfo": {"groups": "idp-sec"}}) == ["auditor"]
    assert groups_from_claims({"sub": "x"}) == []

    from django.contrib.auth import get_user_model

    from portal.services.events import RequestMeta
    from portal.services.identity import external_identity_sync

    user = get_user_model().objects.create(username="sso-person")
    external_identity_sync(user=user, provider="sso", subject="s-1",
                           raw_groups=["idp-data-eng", "admin"], created=True,
                           meta=RequestMeta(auth_method="sso"))
    assert list(user.groups.values_list("name", flat=True)) == ["engineer"]
    record = AuditRecord.objects.get(event="portal.account_provisioned")
    assert record.detail["after"] == ["engineer"] and record.auth_method == "sso"
