"""Scheduled portal jobs (Celery beat, see CELERY_BEAT_SCHEDULE): thin wrappers on services."""

from __future__ import annotations

from celery import shared_task

import wardgate.celery  # noqa: F401  (configures the app shared_task binds to; see wardgate/__init__)


@shared_task(name="portal.disable_inactive_accounts")
def disable_inactive_accounts() -> list[str]:
    from portal.services.accounts import accounts_disable_inactive

    return [u.get_username() for u in accounts_disable_inactive()]


@shared_task(name="portal.evaluate_incident_rules")
def evaluate_incident_rules() -> list[int]:
    from portal.services.incidents import incident_rules_evaluate

    return [incident.pk for incident in incident_rules_evaluate()]


@shared_task(name="portal.expire_approvals")
def expire_approvals() -> int:
    from portal.services.approvals import query_approvals_expire

    return query_approvals_expire()
