"""The portal's built-in roles, held as Django groups."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    ENGINEER = "engineer"
    APPROVER = "approver"
    AUDITOR = "auditor"
