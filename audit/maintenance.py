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

from django.db import DEFAULT_DB_ALIAS, connections, transaction

WINDOW_TABLE = "audit_maintenance_window"


@contextmanager
def purge_window(reason: str = "purge", *, using: str = DEFAULT_DB_ALIAS) -> Iterator[None]:
    """Allow DELETE on the audit tables for the duration of the block, in one transaction.

    Use only for deletions the chain can account for (retention of records covered by a signed
    checkpoint): `verify_chain` still reports gaps and a deleted tail.
    """
    token = secrets.token_hex(16)
    with transaction.atomic(using=using), connections[using].cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {WINDOW_TABLE} (token, reason) VALUES (%s, %s)", [token, reason[:200]]
        )
        yield
        # Only on success: if the block raised, leaving our atomic block rolls back (the
        # transaction or its savepoint) and takes the window row with it.
        cursor.execute(f"DELETE FROM {WINDOW_TABLE} WHERE token = %s", [token])
