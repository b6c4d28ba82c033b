"""Portal forms: input validation only; the services decide and record."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib.auth.models import Group
from django.forms.models import construct_instance

from portal.config import portal_config
from portal.models import Connection, Role
from portal.roles import Role as PortalRole

ROLE_CHOICES = [(r.value, r.value) for r in PortalRole]


class JsonField(forms.CharField):
    """A JSON value edited as text (validated as JSON; shape checked by the model/services)."""

    widget = forms.Textarea(attrs={"rows": 8, "class": "mono"})

    def __init__(self, *, expect: type = dict, **kwargs: Any) -> None:
        self.expect = expect
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, dict | list):
            return json.dumps(value, indent=2, sort_keys=True)
        return value

    def to_python(self, value: Any) -> Any:
        text = (value or "").strip()
        if not text:
            return self.expect()
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc}") from exc
        if not isinstance(data, self.expect):
            raise forms.ValidationError(f"Expected a JSON {self.expect.__name__}.")
        return data


class AccessRequestForm(forms.Form):
    connection = forms.ModelChoiceField(queryset=Connection.objects.filter(enabled=True),
                                        to_field_name="slug")
    role = forms.ModelChoiceField(queryset=Role.objects.all(), to_field_name="name")
    duration_hours = forms.IntegerField(min_value=1, initial=8, label="Duration (hours)")
    justification = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), min_length=10)

    def clean_duration_hours(self) -> int:
        value = self.cleaned_data["duration_hours"]
        limit = portal_config().access_request_max_hours
        if value > limit:
            raise forms.ValidationError(f"At most {limit} hours.")
        return value


class DecisionForm(forms.Form):
    decision = forms.ChoiceField(choices=[("approve", "approve"), ("deny", "deny")])
    comment = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("decision") == "deny" and not (data.get("comment") or "").strip():
            self.add_error("comment", "A denial needs a reason.")
        return data


class ReasonForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}))


class AccountCreateForm(forms.Form):
    username = forms.RegexField(regex=r"^[\w.@+-]{1,150}$", max_length=150)
    email = forms.EmailField(required=False)
    roles = forms.MultipleChoiceField(choices=ROLE_CHOICES, widget=forms.CheckboxSelectMultiple,
                                      required=False)
    password = forms.CharField(widget=forms.PasswordInput, required=False, min_length=12,
                               help_text="Leave empty for SSO-only accounts.")
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}))


class AccountRolesForm(forms.Form):
    roles = forms.MultipleChoiceField(choices=ROLE_CHOICES, widget=forms.CheckboxSelectMultiple,
                                      required=False)
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}))


class GrantForm(forms.Form):
    username = forms.CharField(required=False, help_text="An account, or …")
    group = forms.ModelChoiceField(queryset=Group.objects.order_by("name"), required=False,
                                   to_field_name="name", help_text="… a group")
    role = forms.ModelChoiceField(queryset=Role.objects.all(), to_field_name="name")
    connection = forms.ModelChoiceField(queryset=Connection.objects.all(), to_field_name="slug")
    expires_at = forms.DateTimeField(required=False, help_text="UTC, e.g. 2030-01-31 18:00",
                                     widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}))


class QuarantineForm(forms.Form):
    username = forms.CharField(required=False, label="Identity (username)")
    connection = forms.ModelChoiceField(queryset=Connection.objects.all(), required=False,
                                        to_field_name="slug")
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}))


def _preset_choices() -> list[tuple[str, str]]:
    from proxy.presets import PRESETS

    return [("", "none (fill the tool fields by hand)")] + [
        (name, spec["label"]) for name, spec in PRESETS.items()]


class ConnectionForm(forms.ModelForm):
    preset = forms.ChoiceField(choices=_preset_choices, required=False, help_text=(
        "Fills in the tool fields below that are empty (or unchanged when you switch preset); "
        "edit them afterwards as you need."))
    upstream_command = JsonField(expect=list,
                                 help_text='argv for stdio, e.g. ["python", "-m", "srv"]')
    sql_tools = JsonField(help_text='Tools that carry SQL: {"execute_sql": "sql"}')
    metadata_tools = JsonField(help_text='Tools that answer about tables and datasets: '
                               '{"get_table_schema": {"table": "table"}, '
                               '"list_tables": {"dataset": "dataset", "lists": "tables"}, '
                               '"get_dataset_info": {"dataset": "datasetId"}, '
                               '"list_datasets": {"lists_datasets": "datasets"}}; a listing '
                               'given as one text block per name: "content[]"')
    job_tools = JsonField(help_text='Tools that reach a query job by id: '
                          '{"get_query_results": {"job": "jobId", "kind": "results"}}')
    column_classes = JsonField(help_text='PII classes: {"*.shop.customers.email": "email"}')
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}),
                             help_text="Recorded with the new policy version.")

    class Meta:
        model = Connection
        fields = ["slug", "name", "transport", "upstream_url", "upstream_command", "preset",
                  "sql_tools", "metadata_tools", "job_tools", "project_argument",
                  "bigquery_project", "bigquery_endpoint", "default_dataset", "column_classes",
                  "allow_sampling", "allow_elicitation", "enabled"]

    def _post_clean(self) -> None:
        # Copy the data onto the instance; the service validates (full_clean + classifier)
        # and reports field errors itself.
        self.instance = construct_instance(self, self.instance, self._meta.fields)


class WriteOnlyJsonField(JsonField):
    def prepare_value(self, value: Any) -> str:
        return ""  # never render a credential back, not even the one just typed


class CredentialsForm(forms.Form):
    """Write-only: the stored value is never rendered back."""

    credentials = WriteOnlyJsonField(required=True, widget=forms.Textarea(attrs={"rows": 5,
                                                                       "class": "mono",
                                                                       "autocomplete": "off"}),
                            help_text='e.g. {"headers": {"Authorization": "Bearer …"}} or '
                                      '{"env": {...}} or {"bigquery_service_account": {...}} or '
                                      '{"google": {"service_account": {...}}} or '
                                      '{"google": {"application_default": true}}')
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}))


class RoleForm(forms.ModelForm):
    rules = JsonField(help_text="tools/resources/prompts globs, sql, masking, approval")
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}),
                             help_text="Recorded with the new policy version.")

    class Meta:
        model = Role
        fields = ["name", "description", "rules"]

    def _post_clean(self) -> None:
        self.instance = construct_instance(self, self.instance, self._meta.fields)


class TryForm(forms.Form):
    role = forms.ModelChoiceField(queryset=Role.objects.all(), to_field_name="name")
    connection = forms.ModelChoiceField(queryset=Connection.objects.all(), to_field_name="slug")
    tool = forms.CharField(initial="execute_sql")
    sql = forms.CharField(label="SQL", widget=forms.Textarea(attrs={"rows": 4, "class": "mono"}),
                          required=False, help_text="For tools that carry SQL")
    arguments = JsonField(label="Other arguments (JSON)")
    run_sample = forms.BooleanField(required=False, label="Also run it and show a masked sample "
                                                          "(5 rows, queries BigQuery)")


class TokenForm(forms.Form):
    name = forms.CharField(max_length=200, initial="personal token")
    connections = forms.ModelMultipleChoiceField(queryset=Connection.objects.filter(enabled=True),
                                                 to_field_name="slug",
                                                 widget=forms.CheckboxSelectMultiple)
    days = forms.IntegerField(min_value=1, max_value=365, initial=7)


class ApiTokenForm(forms.Form):
    name = forms.CharField(max_length=200, initial="API token")
    days = forms.IntegerField(min_value=1, max_value=365, initial=30)


class AuditFilterForm(forms.Form):
    since = forms.DateTimeField(required=False, widget=forms.DateTimeInput(
        attrs={"type": "datetime-local"}))
    until = forms.DateTimeField(required=False, widget=forms.DateTimeInput(
        attrs={"type": "datetime-local"}))
    actor = forms.CharField(required=False, label="Identity")
    connection = forms.CharField(required=False)
    decision = forms.ChoiceField(required=False, choices=[("", "any")] + [
        (d, d) for d in ("allow", "deny", "hold", "withheld", "error", "info")])
    tool = forms.CharField(required=False)
    table = forms.CharField(required=False, help_text="part of project.dataset.table")
    event = forms.CharField(required=False, help_text="prefix, e.g. mcp. or portal.")
