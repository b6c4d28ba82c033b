"""The one sanctioned way to delete audit rows: a maintenance window.

The append-only triggers (migration 0002) refuse UPDATE on the audit tables always, and DELETE
or TRUNCATE unless a row exists in `audit_maintenance_window`. That table is plain SQL, not a
Django model, so Django's flush (used between transactional tests) never empties it.

`purge_window()` inserts the row and removes it inside one transaction, so the window is never
visible to any other connection: another session's DELETE still sees no window (PostgreSQL
READ COMMITTED; SQLite allows one writer at a time) and is refused.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from django.db import DEFAULT_DB_ALIAS, connections, transaction

WINDOW_TABLE = "audit_maintenance_window"
WINDOW_LOG_TABLE = "audit_maintenance_log"


def windows_opened_since(since: datetime, *, using: str = DEFAULT_DB_ALIAS) -> list[tuple[str, str]]:
    """(token, reason) of every maintenance window opened at or after `since`."""
    with connections[using].cursor() as cursor:
        cursor.execute(f"SELECT token, reason, opened_at FROM {WINDOW_LOG_TABLE} ORDER BY id")
        rows = cursor.fetchall()
    found = []
    for token, reason, opened_at in rows:
        if isinstance(opened_at, str):
            opened_at = datetime.fromisoformat(opened_at)
        if opened_at.tzinfo is None:
            opened_at = opened_at.replace(tzinfo=UTC)
        if opened_at >= since:
            found.append((str(token), str(reason)))
    return found


@contextmanager
def purge_window(reason: str = "purge", *, using: str = DEFAULT_DB_ALIAS) -> Iterator[str]:
    """Allow DELETE on the audit tables for the duration of the block, in one transaction;
    yields the window's token.

    Use only for deletions the chain can account for (retention of records covered by a signed
    checkpoint): `verify_chain` still reports gaps and a deleted tail. Every window is logged
    for good (audit_maintenance_log, migration 0005) and `verify_log` reports one that no
    purge record names (by this token).
    """
    token = secrets.token_hex(16)
    with transaction.atomic(using=using), connections[using].cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {WINDOW_TABLE} (token, reason) VALUES (%s, %s)", [token, reason[:200]]
        )
        yield token
        # Only on success: if the block raised, leaving our atomic block rolls back (the
        # transaction or its savepoint) and takes the window row with it.
        cursor.execute(f"DELETE FROM {WINDOW_TABLE} WHERE token = %s", [token])
