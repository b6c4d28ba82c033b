"""What every evidence query produces, and the scope (period, chain position) they all share."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import QuerySet

from audit.models import AuditRecord

# File kinds, as OSCAL observation methods: TEST = the system's own records of it operating;
# EXAMINE = configuration and state (accounts, grants, roles, settings).
TEST = "TEST"
EXAMINE = "EXAMINE"

# Every client request yields exactly one of these: tools/call, resources/read and prompts/get
# get an mcp.decision (followed by mcp.outcome when allowed), refused requests an mcp.rejected,
# protocol requests (initialize, lists, ping) an mcp.request. A held call gets a second decision
# once approved or denied.
CALL_EVENTS = ("mcp.decision", "mcp.rejected", "mcp.request")
GATEWAY_EVENTS = frozenset({"mcp.decision", "mcp.outcome", "mcp.request", "mcp.rejected",
                            "mcp.notification", "mcp.server_request", "mcp.stream_opened",
                            "mcp.stream_closed", "mcp.session_closed"})
DATA_METHODS = frozenset({"tools/call", "resources/read", "prompts/get"})


@dataclass(frozen=True, slots=True)
class PackScope:
    """The population every audit-log query reads: records with period_start <= at < period_end
    and seq <= head_seq (the chain head when the build started, so records appended while the
    pack builds never change its counts)."""

    period_start: datetime
    period_end: datetime
    head_seq: int
    first_seq: int | None  # lowest / highest seq inside the period (None: no records)
    last_seq: int | None
    generated_at: datetime
    sample_size: int
    seed: int
    database: str

    def records(self) -> QuerySet[AuditRecord]:
        return AuditRecord.objects.filter(at__gte=self.period_start, at__lt=self.period_end,
                                          seq__lte=self.head_seq)

    @property
    def selection(self) -> str:
        return (f"audit_record WHERE at >= '{self.period_start.isoformat()}' AND at < "
                f"'{self.period_end.isoformat()}' AND seq <= {self.head_seq}")


@dataclass(slots=True)
class Evidence:
    """One evidence file of a pack: what it holds, how it was selected, what it counted."""

    name: str
    path: str
    title: str
    description: str
    selection: str  # the exact query, to re-run and reproduce the population
    method: str = TEST
    controls: tuple[str, ...] = ()
    rows: int = 0
    expected_rows: int | None = None  # counted independently in SQL, for reconciliation
    sha256: str = ""
    bytes: int = 0
    available: bool = True  # False: the feature behind it is not in this build
    stats: dict[str, Any] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # gaps for every control using it

    @property
    def reconciled(self) -> bool:
        return self.expected_rows is None or self.rows == self.expected_rows

    def reconciliation_gap(self) -> str | None:
        if self.reconciled:
            return None
        return (f"{self.path}: {self.rows} rows written but the database counts "
                f"{self.expected_rows}")


class Reservoir:
    """A uniform random sample of k items from a stream of unknown length (Algorithm R), in
    constant memory. Seeded, so the same pack parameters draw the same sample."""

    def __init__(self, k: int, seed: int) -> None:
        self.k = k
        self.rng = random.Random(seed)
        self.items: list[Any] = []
        self.seen = 0

    def offer(self, item: Any) -> None:
        self.seen += 1
        if len(self.items) < self.k:
            self.items.append(item)
            return
        j = self.rng.randrange(self.seen)
        if j < self.k:
            self.items[j] = item

    def sample(self, key: str = "seq") -> list[Any]:
        return sorted(self.items, key=lambda item: item[key])
