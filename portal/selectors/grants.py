"""Grants as admins and auditors list them."""

from __future__ import annotations

from django.db.models import QuerySet

from portal.models import Grant


def grant_list() -> QuerySet[Grant]:
    """Every grant (newest first, the model's order) with what a listing shows."""
    return Grant.objects.select_related("role", "connection", "user", "group", "created_by")
