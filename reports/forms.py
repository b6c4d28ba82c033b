"""The Evidence page's build form: a period (whole UTC days, with presets), partial periods,
and the controls to include (all by default)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms

from reports.selectors import control_choices
from reports.services import PackRequestError, period_from_dates


def period_presets(today: dt.date) -> list[dict[str, str]]:
    """"Last month", "last quarter" and "year to date" (through yesterday: a day that has ended)
    as first and last day, for the form's preset buttons."""
    first_this_month = today.replace(day=1)
    last_month_end = first_this_month - dt.timedelta(days=1)
    quarter_start = today.replace(month=3 * ((today.month - 1) // 3) + 1, day=1)
    last_quarter_end = quarter_start - dt.timedelta(days=1)
    last_quarter_start = last_quarter_end.replace(
        month=3 * ((last_quarter_end.month - 1) // 3) + 1, day=1)
    year_start = today.replace(month=1, day=1)
    ytd_end = max(today - dt.timedelta(days=1), year_start)
    return [
        {"id": "last-month", "label": "Last month", "first": last_month_end.replace(day=1),
         "last": last_month_end},
        {"id": "last-quarter", "label": "Last quarter", "first": last_quarter_start,
         "last": last_quarter_end},
        {"id": "year-to-date", "label": "Year to date", "first": year_start, "last": ytd_end},
    ]


class PackRequestForm(forms.Form):
    first_day = forms.DateField(label="From", widget=forms.DateInput(attrs={"type": "date"}),
                                help_text="first day (UTC), included")
    last_day = forms.DateField(label="To", widget=forms.DateInput(attrs={"type": "date"}),
                               help_text="last day (UTC), included")
    partial = forms.BooleanField(
        required=False, label="Partial period",
        help_text="build even though the period has not ended; the pack is marked PARTIAL on "
                  "its cover, in its manifest and in OSCAL")
    controls = forms.MultipleChoiceField(
        required=False, widget=forms.CheckboxSelectMultiple,
        help_text="NIST SP 800-53 Rev. 5 controls; none ticked means all")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices = control_choices()
        self.fields["controls"].choices = choices
        self.fields["controls"].initial = [c for c, _ in choices]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        first, last = data.get("first_day"), data.get("last_day")
        if first and last:
            try:
                data["period"] = period_from_dates(first, last)
            except PackRequestError as exc:
                raise forms.ValidationError(str(exc)) from None
        return data
