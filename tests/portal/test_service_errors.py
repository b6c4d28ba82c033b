"""The portal's services have one shape: one base error, one API handler, one page helper, and
services that never reach back into the edges (API, views)."""

from __future__ import annotations

import ast
import pathlib

import pytest
from django import forms
from django.test import Client, RequestFactory

from portal.services.access_requests import AccessRequestError
from portal.services.accounts import AccountError
from portal.services.api_tokens import ApiTokenInvalid, api_token_issue
from portal.services.approvals import ApprovalError
from portal.services.errors import InvalidServiceInput, ServiceError
from portal.services.grants import GrantError
from portal.services.identity import ExternalIdentityRefused
from portal.services.incidents import IncidentError
from portal.services.policy import PolicyError
from portal.views._base import service_call

SERVICES = pathlib.Path(__file__).resolve().parents[2] / "portal" / "services"


@pytest.mark.parametrize("error", [AccessRequestError, AccountError, ApiTokenInvalid,
                                   ApprovalError, ExternalIdentityRefused, GrantError,
                                   IncidentError, PolicyError, InvalidServiceInput])
def test_every_service_error_is_a_service_error(error: type[Exception]) -> None:
    assert issubclass(error, ServiceError)
    assert error("no").code  # a stable code for API clients


def test_input_refusals_are_still_value_errors() -> None:
    exc = InvalidServiceInput("token lifetime must be between 1 second and 365 days")
    assert isinstance(exc, ValueError) and exc.message == str(exc)


def test_policy_error_keeps_its_field_errors() -> None:
    exc = PolicyError("The role is not valid.", {"rules": ["bad"]})
    assert exc.errors == exc.field_errors == {"rules": ["bad"]}


def test_services_never_import_the_edges() -> None:
    for path in sorted(SERVICES.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            for name in names:
                assert not name.startswith(("portal.api", "portal.views", "portal.edge")), (
                    path.name, name)


class _RoleForm(forms.Form):
    rules = forms.CharField(required=False)


def test_a_refusal_lands_on_the_form_field() -> None:
    form = _RoleForm({"rules": "x"})
    assert form.is_valid()

    def refuse() -> None:
        raise PolicyError("The role is not valid.", {"rules": ["bad rule"], "name": ["taken"]})

    assert service_call(RequestFactory().post("/"), refuse, form=form) is None
    assert form.errors["rules"] == ["bad rule"]
    assert form.non_field_errors() == ["name: taken"]


@pytest.mark.django_db(transaction=True)
def test_the_api_answers_a_refusal_in_one_shape(people, connection) -> None:
    admin = people["admin"]
    _, plaintext = api_token_issue(user=admin, name="test", by=admin)
    api = Client(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    refused = api.post("/api/v1/quarantines/", {"reason": "drill"},
                       content_type="application/json")
    assert refused.status_code == 400
    message = "Quarantine exactly one identity or one connection."
    assert refused.json() == {"detail": message, "code": "incident_refused", "errors": {},
                              "non_field_errors": [message]}


@pytest.mark.django_db(transaction=True)
def test_exactly_one_target_is_the_services_rule_on_pages_and_api(people, connection,
                                                                  analyst) -> None:
    """Grant and quarantine forms carry no rule of their own: the service refuses, and the page
    and the API show its message."""
    from django.contrib.auth.models import Group

    from portal.models import Grant, Quarantine
    from tests.portal.conftest import client_for

    admin = people["admin"]
    page = client_for(admin)
    neither = page.post("/grants/", {"role": "analyst", "connection": connection.slug,
                                     "reason": "drill"})
    assert neither.status_code == 200
    assert b"A grant goes to exactly one account or one group." in neither.content
    both = page.post("/incidents/", {"username": people["engineer"].username,
                                     "connection": connection.slug, "reason": "drill"})
    assert both.status_code == 200
    assert b"Quarantine exactly one identity or one connection." in both.content
    _, plaintext = api_token_issue(user=admin, name="test", by=admin)
    api = Client(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    group = Group.objects.get_or_create(name="engineer")[0]
    refused = api.post("/api/v1/grants/", {"role": "analyst", "connection": connection.slug,
                                           "user": people["engineer"].username, "group": group.name,
                                           "reason": "drill"}, content_type="application/json")
    assert refused.status_code == 400
    assert refused.json()["non_field_errors"] == [
        "A grant goes to exactly one account or one group."]
    assert not Grant.objects.exists() and not Quarantine.objects.exists()
