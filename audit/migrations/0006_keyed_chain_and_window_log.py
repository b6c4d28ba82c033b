"""Guard the last unguarded audit table, and start the keyed chain.

1. Every row ever put in audit_maintenance_window is copied, by a trigger, into
   audit_maintenance_log, which refuses UPDATE, DELETE and TRUNCATE always (no window applies to
   it). A window can no longer be opened and closed unseen: `verify_log` reports every window
   opened during the kept chain that no purge record accounts for (an INSERT into the window
   table used to let checkpoints be deleted without a trace). The window table itself refuses
   UPDATE.
2. A chain written before keying (audit/chain.py, format v1) gets one keyed record appended now,
   so from here on the chain head is always keyed: a chain with no keyed record is then a chain
   recomputed without the key.
"""

from __future__ import annotations

import importlib
from typing import Any

from django.db import migrations

LOG_SQL = {
    "sqlite": """CREATE TABLE audit_maintenance_log (
        id integer PRIMARY KEY AUTOINCREMENT,
        token varchar(64) NOT NULL,
        reason varchar(200) NOT NULL DEFAULT '',
        opened_at varchar(32) NOT NULL)""",
    "postgresql": """CREATE TABLE audit_maintenance_log (
        id bigserial PRIMARY KEY,
        token varchar(64) NOT NULL,
        reason varchar(200) NOT NULL DEFAULT '',
        opened_at timestamptz NOT NULL)""",
}

SQLITE_INSTALL = [
    LOG_SQL["sqlite"],
    """CREATE TRIGGER audit_maintenance_window_logged AFTER INSERT ON audit_maintenance_window
    BEGIN INSERT INTO audit_maintenance_log (token, reason, opened_at)
        VALUES (NEW.token, NEW.reason, strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')); END""",
    """CREATE TRIGGER audit_maintenance_window_no_update BEFORE UPDATE ON audit_maintenance_window
    BEGIN SELECT RAISE(ABORT, 'maintenance windows cannot be changed'); END""",
    """CREATE TRIGGER audit_maintenance_log_no_update BEFORE UPDATE ON audit_maintenance_log
    BEGIN SELECT RAISE(ABORT, 'the maintenance log is append-only: UPDATE is refused'); END""",
    """CREATE TRIGGER audit_maintenance_log_no_delete BEFORE DELETE ON audit_maintenance_log
    BEGIN SELECT RAISE(ABORT, 'the maintenance log is append-only: DELETE is refused'); END""",
]
SQLITE_REMOVE = [
    "DROP TRIGGER IF EXISTS audit_maintenance_window_logged",
    "DROP TRIGGER IF EXISTS audit_maintenance_window_no_update",
    "DROP TRIGGER IF EXISTS audit_maintenance_log_no_update",
    "DROP TRIGGER IF EXISTS audit_maintenance_log_no_delete",
    "DROP TABLE IF EXISTS audit_maintenance_log",
]

# audit_refuse_update() comes from migration 0002 (refuses whatever operation fires it).
POSTGRES_INSTALL = [
    LOG_SQL["postgresql"],
    """CREATE FUNCTION audit_maintenance_window_logged() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
    BEGIN
        INSERT INTO audit_maintenance_log (token, reason, opened_at)
            VALUES (NEW.token, NEW.reason, clock_timestamp());
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER audit_maintenance_window_logged AFTER INSERT ON audit_maintenance_window
    FOR EACH ROW EXECUTE FUNCTION audit_maintenance_window_logged()""",
    """CREATE TRIGGER audit_maintenance_window_no_update BEFORE UPDATE ON audit_maintenance_window
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_update()""",
    """CREATE TRIGGER audit_maintenance_log_no_update BEFORE UPDATE ON audit_maintenance_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_update()""",
    """CREATE TRIGGER audit_maintenance_log_no_delete BEFORE DELETE ON audit_maintenance_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_update()""",
    """CREATE TRIGGER audit_maintenance_log_no_truncate BEFORE TRUNCATE ON audit_maintenance_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_update()""",
]
POSTGRES_REMOVE = [
    "DROP TRIGGER IF EXISTS audit_maintenance_window_logged ON audit_maintenance_window",
    "DROP TRIGGER IF EXISTS audit_maintenance_window_no_update ON audit_maintenance_window",
    "DROP TRIGGER IF EXISTS audit_maintenance_log_no_update ON audit_maintenance_log",
    "DROP TRIGGER IF EXISTS audit_maintenance_log_no_delete ON audit_maintenance_log",
    "DROP TRIGGER IF EXISTS audit_maintenance_log_no_truncate ON audit_maintenance_log",
    "DROP FUNCTION IF EXISTS audit_maintenance_window_logged()",
    "DROP TABLE IF EXISTS audit_maintenance_log",
]

INSTALL = {"sqlite": SQLITE_INSTALL, "postgresql": POSTGRES_INSTALL}
REMOVE = {"sqlite": SQLITE_REMOVE, "postgresql": POSTGRES_REMOVE}
# Installing and removing run exactly as in migration 0002 (refusing unknown backends).
_append_only = importlib.import_module("audit.migrations.0002_append_only")


def install(apps: Any, schema_editor: Any) -> None:
    _append_only._run(INSTALL, schema_editor)


def remove(apps: Any, schema_editor: Any) -> None:
    _append_only._run(REMOVE, schema_editor)


def start_keyed_chain(apps: Any, schema_editor: Any) -> None:
    from audit.chain import HASHED_FIELDS, hash_format
    from audit.models import AuditRecord
    from audit.services import AuditEntry, append_records, chain_key

    key = chain_key()
    using = schema_editor.connection.alias
    last = AuditRecord.objects.using(using).order_by("-seq").values(*HASHED_FIELDS, "hash").first()
    if key is None or last is None or hash_format(last["prev_hash"], last, last["hash"], key) == 2:
        return
    append_records([AuditEntry(event="audit.chain_keyed", actor="system", decision="info",
                               detail={"format": 2, "legacy_head_seq": last["seq"],
                                       "legacy_head_hash": last["hash"]})], using=using)


class Migration(migrations.Migration):
    dependencies = [("audit", "0005_cancelled_decision")]

    operations = [
        migrations.RunPython(install, remove),
        migrations.RunPython(start_keyed_chain, migrations.RunPython.noop),
    ]
