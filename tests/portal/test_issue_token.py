"""`manage.py issue_token`: a working token printed once, stored only as a hash."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from portal.models import Connection, PersonalToken
from portal.services.tokens import hash_token
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def test_issue_token_prints_a_token_stored_as_hash_only() -> None:
    make_user("dana")
    Connection.objects.create(slug="demo-bigquery", name="d", upstream_url="http://127.0.0.1:9/mcp")
    out, err = io.StringIO(), io.StringIO()
    call_command("issue_token", "dana", "--connection", "demo-bigquery", "--days", "2",
                 stdout=out, stderr=err)
    plaintext = out.getvalue().strip()
    assert plaintext.startswith("wgp_") and len(plaintext) > 40
    token = PersonalToken.objects.get()
    assert token.token_hash == hash_token(plaintext) and plaintext not in token.token_hash
    assert [c.slug for c in token.connections.all()] == ["demo-bigquery"]
    assert "shown once" in err.getvalue()


def test_issue_token_rejects_bad_input_clearly() -> None:
    make_user("dana")
    make_user("gone", active=False)
    Connection.objects.create(slug="demo-bigquery", name="d", upstream_url="http://127.0.0.1:9/mcp")
    with pytest.raises(CommandError, match="No user 'nobody'"):
        call_command("issue_token", "nobody", "--connection", "demo-bigquery")
    with pytest.raises(CommandError, match="disabled"):
        call_command("issue_token", "gone", "--connection", "demo-bigquery")
    with pytest.raises(CommandError, match="No connection"):
        call_command("issue_token", "dana", "--connection", "nope")
    with pytest.raises(CommandError, match="between"):
        call_command("issue_token", "dana", "--connection", "demo-bigquery", "--days", "400")
    assert not PersonalToken.objects.exists()
