from __future__ import annotations

from django.db import models


class UpstreamJob(models.Model):
    """A BigQuery query job the gateway saw created through a SQL tool (proxy.jobs): who ran
    it, which statement, its lineage (column classes per output) and the policy version. Job
    tools (get_query_results, get_job, cancel_job) reach only jobs recorded here, and only the
    identity that created them. Shared by every gateway process through the database."""

    connection = models.ForeignKey("portal.Connection", on_delete=models.CASCADE,
                                   related_name="jobs")
    job_id = models.CharField(max_length=1024)
    user_id = models.BigIntegerField()
    tool = models.CharField(max_length=200)
    statement = models.TextField()
    fingerprint = models.CharField(max_length=64, blank=True)
    tables = models.JSONField(default=list, blank=True)
    column_plan = models.JSONField(default=dict, blank=True)
    role = models.CharField(max_length=150, blank=True)
    policy_version = models.IntegerField(default=0)
    request_id = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=("connection", "job_id"),
                                               name="upstream_job_unique")]

    def __str__(self) -> str:
        return f"{self.connection_id}:{self.job_id}"
