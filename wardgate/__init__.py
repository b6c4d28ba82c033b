"""Wardgate: an access gateway for MCP servers that reach BigQuery.

The Celery app (wardgate.celery) is not imported here, as Celery's Django recipe does: celery and
kombu cost every process ~20 MiB, and a gateway worker sends no task. Each module that defines
or sends tasks, or reads their results, imports wardgate.celery first, so `shared_task` and
`AsyncResult` find this app configured as the current one (`celery -A wardgate` finds it as
wardgate.celery.app)."""

__version__ = "0.1.0"
