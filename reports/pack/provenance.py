"""Who a pack is for and from: the system it identifies (reports/config.py) and who
asked for it (a person, or the monthly schedule). Printed on the cover, written into the
manifest and into OSCAL metadata (`parties`, `responsible-parties`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SCHEDULE_TASK = "reports.evidence_pack_monthly"


@dataclass(frozen=True, slots=True)
class SystemIdentity:
    organisation: str
    system: str
    environment: str
    boundary: str
    assessment_plan_url: str = ""  # empty: OSCAL import-ap points at a documented placeholder

    @classmethod
    def configured(cls) -> SystemIdentity:
        from reports.config import reports_config

        return reports_config().identity

    def as_dict(self) -> dict[str, str]:
        return {"organisation": self.organisation, "system": self.system,
                "environment": self.environment, "boundary": self.boundary}


@dataclass(frozen=True, slots=True)
class Requester:
    """A person (their username) or the schedule (the beat task's name)."""

    kind: str  # "person" or "schedule"
    name: str

    @classmethod
    def of(cls, *, user: Any, scheduled: bool) -> Requester:
        if scheduled:
            return cls("schedule", SCHEDULE_TASK)
        if user is None:
            raise ValueError("a pack not built by the schedule must name the person requesting "
                             "it")
        return cls("person", user.get_username())

    @property
    def text(self) -> str:
        if self.kind == "schedule":
            return f"the monthly schedule ({self.name})"
        return self.name

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "name": self.name}
