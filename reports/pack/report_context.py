"""What the pack's PDF report shows (built by reports.pack.builder, drawn by reports.pack.pdf).
Apart from the renderer, so the builder (which the portal's views import) needs no reportlab
until a PDF is drawn."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reports.catalog import Assessment, ControlSpec
from reports.evidence.base import Evidence
from reports.nist import NistCatalog

from .provenance import Requester, SystemIdentity


@dataclass(slots=True)
class SampleTable:
    title: str
    note: str
    columns: Sequence[str]
    rows: Sequence[Mapping[str, Any]]


@dataclass(slots=True)
class ReportContext:
    identity: SystemIdentity
    requester: Requester
    partial: bool
    pack_uuid: str
    period_start: dt.datetime
    period_end: dt.datetime
    generated_at: dt.datetime
    generator_version: str
    key_id: str
    parameters: list[tuple[str, str]]
    controls: Sequence[ControlSpec]
    assessments: Sequence[Assessment]
    nist: NistCatalog
    evidence: Sequence[Evidence]
    chain: Mapping[str, Any]
    calls_by_day: Mapping[tuple[str, str], int]
    masking_cells: Mapping[tuple[str, str], int]
    samples: list[SampleTable] = field(default_factory=list)
