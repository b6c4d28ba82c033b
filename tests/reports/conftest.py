"""Evidence-pack fixtures: a synthetic log written through the real record path, some system
state, a pack directory, and helpers to read a pack back."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

MARCH = (dt.datetime(2026, 3, 1, tzinfo=dt.UTC), dt.datetime(2026, 4, 1, tzinfo=dt.UTC))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "large_log: builds a pack over a 100,000-record log with a Celery worker "
                   "(about a minute)")


def require_tool(name: str) -> str:
    """A command-line tool the test needs: CI must have it (.ci/run installs it); locally the
    test is skipped without it."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI must provide {name} (Debian: poppler-utils)")
        pytest.skip(f"{name} is not installed (Debian: apt-get install poppler-utils)")
    return path


@pytest.fixture
def pack_dir(configure: Any, tmp_path: Path) -> Path:
    from reports.config import reports_config

    path = tmp_path / "packs"
    configure(reports_config, pack_dir=path, sample_size=10)
    return path


@pytest.fixture
def small_log(db: None) -> Any:
    """3,000 records over March 2026, generated through the gateway's record stage."""
    from reports.synthetic import audit_load_generate

    return audit_load_generate(records=3000, start=MARCH[0], days=31, seed=7)


@pytest.fixture
def system_state(db: None) -> dict[str, Any]:
    """Accounts (one disabled), a role and grant, a connection with sealed credentials, a token,
    a quarantine: enough state for the EXAMINE evidence."""
    from django.contrib.auth.models import Group

    from portal.models import Connection, Quarantine, Role
    from portal.services.events import SYSTEM
    from portal.services.grants import grant_create
    from portal.services.tokens import token_issue
    from tests.conftest import make_user

    auditor = make_user("auditor", "auditor")
    engineer = make_user("engineer", "engineer")
    gone = make_user("contractor-07", "engineer", active=False)
    conn = Connection.objects.create(slug="demo-bigquery", name="Demo", upstream_url="http://x/mcp",
                                     sql_tools={"execute_sql": "sql"})
    conn.set_credentials({"headers": {"authorization": "Bearer upstream-secret"}})
    conn.save()
    role = Role.objects.create(name="analyst", rules={
        "tools": ["execute_sql"],
        "sql": {"allowed_statement_classes": ["select"], "allowed_tables": ["*.shop.customers"]},
        "masking": {"actions": {"email": "partial"}, "default_action": "redact"}})
    grant_create(role=role, connection=conn, group=Group.objects.get(name="engineer"),
                 by=auditor, reason="analysts of the data team")
    token_issue(user=engineer, connections=[conn], by=None, meta=SYSTEM)
    Quarantine.objects.create(user=gone, reason="contract ended")
    return {"auditor": auditor, "engineer": engineer, "connection": conn}


def pack_requester() -> Any:
    """The auditor who asks for the packs the tests build."""
    from django.contrib.auth import get_user_model

    from tests.conftest import make_user

    return (get_user_model().objects.filter(username="pack-auditor").first()
            or make_user("pack-auditor", "auditor"))


def build_pack(**kwargs: Any) -> Any:
    from reports.services import evidence_pack_build, evidence_pack_request

    start, end = kwargs.pop("period", MARCH)
    if kwargs.get("trigger") != "schedule":
        kwargs.setdefault("created_by", pack_requester())
    pack = evidence_pack_request(period_start=start, period_end=end, enqueue=False, **kwargs)
    return evidence_pack_build(pack=pack)


class PackFile:
    """A built pack, read back."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with zipfile.ZipFile(path) as z:
            self.names = z.namelist()
            self.manifest: dict[str, Any] = json.loads(z.read("manifest.json"))

    def read(self, name: str) -> bytes:
        with zipfile.ZipFile(self.path) as z:
            return z.read(name)

    def csv_rows(self, name: str) -> list[dict[str, str]]:
        return list(csv.DictReader(io.StringIO(self.read(name).decode("utf-8"), newline="")))

    def file(self, name: str) -> dict[str, Any]:
        return next(f for f in self.manifest["files"] if f["path"] == name)

    def summary(self) -> dict[str, str]:
        return {c["control"]: c["status"] for c in self.manifest["summary"]}


@pytest.fixture
def open_pack() -> Iterator[Any]:
    def read(pack: Any) -> PackFile:
        from reports.selectors import evidence_pack_path

        path = evidence_pack_path(pack)
        assert path is not None, pack.error
        return PackFile(path)

    yield read


def rewrite_zip(source: Path, target: Path, change: dict[str, bytes | None],
                add: dict[str, bytes] | None = None) -> None:
    """Copy a zip, replacing (bytes) or dropping (None) members, and adding others."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
        for info in src.infolist():
            if info.filename in change:
                if change[info.filename] is not None:
                    dst.writestr(info, change[info.filename])  # type: ignore[arg-type]
                continue
            dst.writestr(info, src.read(info.filename))
        for name, data in (add or {}).items():
            dst.writestr(name, data)
