"""Helpers for the audit tests: entries, trigger surgery (to tamper "around" the database's
append-only guard, as an attacker with DDL rights would) and a database other processes reach."""

from __future__ import annotations

import importlib
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from django.db import connection

from audit.services import AuditEntry
from tests.conftest import ROOT

append_only = importlib.import_module("audit.migrations.0002_append_only")
CHILD = Path(__file__).with_name("_append_child.py")


def make_entry(i: int = 0, **overrides: Any) -> AuditEntry:
    values: dict[str, Any] = {
        "event": "mcp.decision",
        "request_id": f"req-{i}",
        "actor": "engineer",
        "auth_method": "personal_token",
        "connection": "demo-bigquery",
        "tool": "execute_sql",
        "arguments": {"sql": f"SELECT {i}"},
        "sql_text": f"SELECT {i}",
        "decision": "allow",
        "reasons": [{"rule": "grant", "detail": f"#{i}"}],
    }
    values.update(overrides)
    return AuditEntry(**values)


def _statement(statements: list[str], prefix: str) -> str:
    return next(sql for sql in statements if sql.lstrip().startswith(prefix))


def update_trigger_sql(vendor: str) -> tuple[str, str]:
    """(drop, create) for the trigger refusing UPDATE on audit_record."""
    create = _statement(append_only.INSTALL[vendor], "CREATE TRIGGER audit_record_no_update")
    drop = _statement(append_only.REMOVE[vendor], "DROP TRIGGER IF EXISTS audit_record_no_update")
    return drop, create


@contextmanager
def update_trigger_dropped(execute: Callable[[str], None], vendor: str) -> Iterator[None]:
    drop, create = update_trigger_sql(vendor)
    execute(drop)
    try:
        yield
    finally:
        execute(create)


def sql(statement: str, params: list[Any] | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)


@dataclass
class ExternalDatabase:
    """A database that child processes can open: on PostgreSQL the test database itself; on
    SQLite (whose test database is in memory, invisible to other processes) a migrated file."""

    url: str
    vendor: str
    sqlite_path: Path | None = None

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "DATABASE_URL": self.url,
            "DJANGO_SETTINGS_MODULE": "wardgate.settings",
        }

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, *args],
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def execute(self, statement: str) -> None:
        if self.sqlite_path is None:
            sql(statement)
            return
        with sqlite3.connect(self.sqlite_path) as db:
            db.execute(statement)
        db.close()

    def query(self, statement: str) -> list[tuple[Any, ...]]:
        if self.sqlite_path is None:
            with connection.cursor() as cursor:
                cursor.execute(statement)
                return list(cursor.fetchall())
        db = sqlite3.connect(self.sqlite_path)
        try:
            return db.execute(statement).fetchall()
        finally:
            db.close()


@pytest.fixture(scope="session")
def _migrated_sqlite_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("audit-sqlite") / "template.sqlite3"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{path}"}
    done = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return path


@pytest.fixture
def external_db(request: pytest.FixtureRequest, tmp_path: Path) -> ExternalDatabase:
    """Tests using this must be marked django_db(transaction=True): on PostgreSQL the children
    must see committed rows (and pytest-django decides from markers which databases to create).
    """
    if connection.vendor == "postgresql":
        s = connection.settings_dict
        auth = quote(s["USER"] or "", safe="")
        if s.get("PASSWORD"):
            auth += ":" + quote(s["PASSWORD"], safe="")
        host = f"{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}"
        return ExternalDatabase(f"postgres://{auth}@{host}/{s['NAME']}", "postgresql")
    path = tmp_path / "audit.sqlite3"
    shutil.copy(request.getfixturevalue("_migrated_sqlite_file"), path)
    return ExternalDatabase(f"sqlite:///{path}", "sqlite", path)
