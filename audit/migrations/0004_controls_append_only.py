"""Protect checkpoints and legal holds in the database, like the records (migration 0002).

A checkpoint's signed fields (seq, hash, at, signature, key_id) can never change; only
`exported_at` / `export_location` may be filled in later. Checkpoints and legal holds are
deleted only inside a maintenance window (`audit.maintenance.purge_window`): deleting a hold
would re-enable purging, deleting a checkpoint would hide a truncation from `audit_verify`.
Someone able to drop these triggers is still caught by verifying against exported checkpoints.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

_SIGNED = ("id", "seq", "hash", "at", "signature", "key_id")
_NO_WINDOW = "NOT EXISTS (SELECT 1 FROM audit_maintenance_window)"
_CHANGED_SQLITE = " OR ".join(f"NEW.{c} <> OLD.{c}" for c in _SIGNED)
_CHANGED_POSTGRES = " OR ".join(f"NEW.{c} IS DISTINCT FROM OLD.{c}" for c in _SIGNED)

SQLITE_INSTALL = [
    f"""CREATE TRIGGER audit_checkpoint_signed_fields BEFORE UPDATE ON audit_checkpoint
    WHEN {_CHANGED_SQLITE}
    BEGIN SELECT RAISE(ABORT,
        'audit checkpoints are append-only: their signed fields cannot change'); END""",
    f"""CREATE TRIGGER audit_checkpoint_no_delete BEFORE DELETE ON audit_checkpoint
    WHEN {_NO_WINDOW}
    BEGIN SELECT RAISE(ABORT,
        'audit checkpoints are append-only: DELETE is refused outside a maintenance window');
    END""",
    f"""CREATE TRIGGER audit_legal_hold_no_delete BEFORE DELETE ON audit_legal_hold
    WHEN {_NO_WINDOW}
    BEGIN SELECT RAISE(ABORT,
        'legal holds are append-only: release them; DELETE is refused outside a maintenance window');
    END""",
]
SQLITE_REMOVE = [
    "DROP TRIGGER IF EXISTS audit_checkpoint_signed_fields",
    "DROP TRIGGER IF EXISTS audit_checkpoint_no_delete",
    "DROP TRIGGER IF EXISTS audit_legal_hold_no_delete",
]

# The DELETE/TRUNCATE guard reuses audit_refuse_delete_outside_window() from migration 0002.
POSTGRES_INSTALL = [
    f"""CREATE FUNCTION audit_checkpoint_signed_fields() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
    BEGIN
        IF {_CHANGED_POSTGRES} THEN
            RAISE EXCEPTION 'audit checkpoints are append-only: their signed fields cannot change'
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN NEW;
    END $$""",
    """CREATE TRIGGER audit_checkpoint_signed_fields BEFORE UPDATE ON audit_checkpoint
    FOR EACH ROW EXECUTE FUNCTION audit_checkpoint_signed_fields()""",
    """CREATE TRIGGER audit_checkpoint_no_delete BEFORE DELETE ON audit_checkpoint
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_delete_outside_window()""",
    """CREATE TRIGGER audit_checkpoint_no_truncate BEFORE TRUNCATE ON audit_checkpoint
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_delete_outside_window()""",
    """CREATE TRIGGER audit_legal_hold_no_delete BEFORE DELETE ON audit_legal_hold
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_delete_outside_window()""",
    """CREATE TRIGGER audit_legal_hold_no_truncate BEFORE TRUNCATE ON audit_legal_hold
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_delete_outside_window()""",
]
POSTGRES_REMOVE = [
    "DROP TRIGGER IF EXISTS audit_checkpoint_signed_fields ON audit_checkpoint",
    "DROP TRIGGER IF EXISTS audit_checkpoint_no_delete ON audit_checkpoint",
    "DROP TRIGGER IF EXISTS audit_checkpoint_no_truncate ON audit_checkpoint",
    "DROP TRIGGER IF EXISTS audit_legal_hold_no_delete ON audit_legal_hold",
    "DROP TRIGGER IF EXISTS audit_legal_hold_no_truncate ON audit_legal_hold",
    "DROP FUNCTION IF EXISTS audit_checkpoint_signed_fields()",
]

INSTALL = {"sqlite": SQLITE_INSTALL, "postgresql": POSTGRES_INSTALL}
REMOVE = {"sqlite": SQLITE_REMOVE, "postgresql": POSTGRES_REMOVE}


def _run(statements: dict[str, list[str]], schema_editor: Any) -> None:
    vendor = schema_editor.connection.vendor
    if vendor not in statements:
        raise RuntimeError(f"audit append-only triggers are not implemented for {vendor}")
    for sql in statements[vendor]:
        schema_editor.execute(sql, params=None)


def install(apps: Any, schema_editor: Any) -> None:
    _run(INSTALL, schema_editor)


def remove(apps: Any, schema_editor: Any) -> None:
    _run(REMOVE, schema_editor)


class Migration(migrations.Migration):
    dependencies = [("audit", "0003_controls")]

    operations = [migrations.RunPython(install, remove)]
