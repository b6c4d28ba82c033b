"""Make the audit tables append-only in the database itself (NIST AU-9).

UPDATE on audit_record is always refused; DELETE (and TRUNCATE on PostgreSQL) is refused unless
a row exists in audit_maintenance_window (see audit/maintenance.py). The chain head may only
move forward. Enforcing this with triggers means neither an application bug nor a SQL injection
through the application's own connection can rewrite history; tampering by someone able to drop
triggers is still detected by verify_chain.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

WINDOW_SQL = """
CREATE TABLE audit_maintenance_window (
    token varchar(64) PRIMARY KEY,
    reason varchar(200) NOT NULL DEFAULT '',
    opened_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP
)
"""

_HEAD_REWIND = (
    "NEW.id <> OLD.id OR NEW.seq < OLD.seq OR (NEW.seq = OLD.seq AND NEW.hash <> OLD.hash)"
)
_NO_WINDOW = "NOT EXISTS (SELECT 1 FROM audit_maintenance_window)"

SQLITE_INSTALL = [
    """CREATE TRIGGER audit_record_no_update BEFORE UPDATE ON audit_record
    BEGIN SELECT RAISE(ABORT, 'audit records are append-only: UPDATE is refused'); END""",
    f"""CREATE TRIGGER audit_record_no_delete BEFORE DELETE ON audit_record WHEN {_NO_WINDOW}
    BEGIN SELECT RAISE(ABORT,
        'audit records are append-only: DELETE is refused outside a maintenance window'); END""",
    f"""CREATE TRIGGER audit_chain_head_forward_only BEFORE UPDATE ON audit_chain_head
    WHEN {_HEAD_REWIND}
    BEGIN SELECT RAISE(ABORT, 'the audit chain head is append-only: it only moves forward'); END""",
    f"""CREATE TRIGGER audit_chain_head_no_delete BEFORE DELETE ON audit_chain_head WHEN {_NO_WINDOW}
    BEGIN SELECT RAISE(ABORT,
        'the audit chain head is append-only: DELETE is refused outside a maintenance window');
    END""",
]
SQLITE_REMOVE = [
    "DROP TRIGGER IF EXISTS audit_record_no_update",
    "DROP TRIGGER IF EXISTS audit_record_no_delete",
    "DROP TRIGGER IF EXISTS audit_chain_head_forward_only",
    "DROP TRIGGER IF EXISTS audit_chain_head_no_delete",
]

# SET search_path FROM CURRENT pins the schema the functions resolve audit_maintenance_window
# in, so a session cannot point them at a look-alike table it created itself.
# ERRCODE 23000 makes psycopg raise IntegrityError, as SQLite's RAISE(ABORT) does.
POSTGRES_INSTALL = [
    """CREATE FUNCTION audit_refuse_update() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
    BEGIN
        RAISE EXCEPTION 'audit records are append-only: % on % is refused', TG_OP, TG_TABLE_NAME
            USING ERRCODE = 'integrity_constraint_violation';
    END $$""",
    f"""CREATE FUNCTION audit_refuse_delete_outside_window() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
    BEGIN
        IF {_NO_WINDOW} THEN
            RAISE EXCEPTION
                'audit records are append-only: % on % is refused outside a maintenance window',
                TG_OP, TG_TABLE_NAME USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN NULL;
    END $$""",
    f"""CREATE FUNCTION audit_chain_head_forward_only() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
    BEGIN
        IF {_HEAD_REWIND} THEN
            RAISE EXCEPTION 'the audit chain head is append-only: it only moves forward'
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN NEW;
    END $$""",
    # Statement-level: refused even when no row matches, and a purge pays the window lookup once.
    """CREATE TRIGGER audit_record_no_update BEFORE UPDATE ON audit_record
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_update()""",
    """CREATE TRIGGER audit_record_no_delete BEFORE DELETE ON audit_record
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_delete_outside_window()""",
    """CREATE TRIGGER audit_record_no_truncate BEFORE TRUNCATE ON audit_record
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_delete_outside_window()""",
    """CREATE TRIGGER audit_chain_head_forward_only BEFORE UPDATE ON audit_chain_head
    FOR EACH ROW EXECUTE FUNCTION audit_chain_head_forward_only()""",
    """CREATE TRIGGER audit_chain_head_no_delete BEFORE DELETE ON audit_chain_head
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_delete_outside_window()""",
    """CREATE TRIGGER audit_chain_head_no_truncate BEFORE TRUNCATE ON audit_chain_head
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_delete_outside_window()""",
]
POSTGRES_REMOVE = [
    "DROP TRIGGER IF EXISTS audit_record_no_update ON audit_record",
    "DROP TRIGGER IF EXISTS audit_record_no_delete ON audit_record",
    "DROP TRIGGER IF EXISTS audit_record_no_truncate ON audit_record",
    "DROP TRIGGER IF EXISTS audit_chain_head_forward_only ON audit_chain_head",
    "DROP TRIGGER IF EXISTS audit_chain_head_no_delete ON audit_chain_head",
    "DROP TRIGGER IF EXISTS audit_chain_head_no_truncate ON audit_chain_head",
    "DROP FUNCTION IF EXISTS audit_refuse_update()",
    "DROP FUNCTION IF EXISTS audit_refuse_delete_outside_window()",
    "DROP FUNCTION IF EXISTS audit_chain_head_forward_only()",
]

INSTALL = {"sqlite": SQLITE_INSTALL, "postgresql": POSTGRES_INSTALL}
REMOVE = {"sqlite": SQLITE_REMOVE, "postgresql": POSTGRES_REMOVE}


def _run(statements: dict[str, list[str]], schema_editor: Any) -> None:
    vendor = schema_editor.connection.vendor
    if vendor not in statements:
        # Refuse rather than silently leave the audit log mutable on an unsupported backend.
        raise RuntimeError(f"audit append-only triggers are not implemented for {vendor}")
    for sql in statements[vendor]:
        schema_editor.execute(sql, params=None)


def install(apps: Any, schema_editor: Any) -> None:
    _run(INSTALL, schema_editor)


def remove(apps: Any, schema_editor: Any) -> None:
    _run(REMOVE, schema_editor)


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [
        migrations.RunSQL(WINDOW_SQL, reverse_sql="DROP TABLE audit_maintenance_window"),
        migrations.RunPython(install, remove),
    ]
