"""Appending to the audit log.

Callers build `AuditEntry` objects (arguments already redacted, bodies already capped);
`append_records` normalises them, assigns seq/at/prev_hash/hash under the chain-head lock and
inserts the batch in one transaction. The async gateway goes through `audit.writer.AuditWriter`,
which batches concurrent calls into one `append_records`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.utils import timezone

from .chain import GENESIS_HASH, clean_text, compute_hash, normalise_json
from .models import AuditChainHead, AuditRecord

HEAD_ID = 1
log = logging.getLogger(__name__)


def chain_key() -> bytes | None:
    """The key of the chain (WARDGATE_AUDIT_CHAIN_KEY), never stored in the database; None
    only where it is explicitly unset (then records are written in the legacy v1 format)."""
    from .config import audit_config

    key = audit_config().chain_key
    return key.encode() if key else None


def chain_legacy_keys() -> tuple[bytes, ...]:
    """Keys the chain was written under before the current one (WARDGATE_AUDIT_CHAIN_LEGACY_KEYS):
    verification accepts them only for records before the first one under the current key."""
    from .config import audit_config

    current = audit_config().chain_key
    return tuple(k.encode() for k in audit_config().chain_legacy_keys if k and k != current)


@dataclass(slots=True)
class AuditEntry:
    """One event to record. seq, at, prev_hash and hash are assigned when it is appended."""

    event: str
    request_id: str = ""
    actor: str = ""
    auth_method: str = ""
    source_ip: str = ""
    user_agent: str = ""
    connection: str = ""
    mcp_session_id: str = ""
    jsonrpc_method: str = ""
    tool: str = ""
    arguments: dict[str, Any] = field(default_factory=dict)
    sql_text: str = ""
    sql_fingerprint: str = ""
    decision: str = ""
    reasons: list[dict[str, Any]] = field(default_factory=list)
    masking: list[Any] = field(default_factory=list)
    row_count: int | None = None
    result_bytes: int | None = None
    response_body: str = ""
    response_sha256: str = ""
    upstream_latency_ms: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)


_CHAR_FIELDS = (
    "event",
    "request_id",
    "actor",
    "auth_method",
    "source_ip",
    "user_agent",
    "connection",
    "mcp_session_id",
    "jsonrpc_method",
    "tool",
    "sql_fingerprint",
    "decision",
    "response_sha256",
)
_TEXT_FIELDS = ("sql_text", "response_body")
_JSON_FIELDS = {"arguments": dict, "reasons": list, "masking": list, "detail": dict}
_INT_FIELDS = ("row_count", "result_bytes")
_MAX_LENGTH = {name: AuditRecord._meta.get_field(name).max_length for name in _CHAR_FIELDS}


def prepare_entry(entry: AuditEntry) -> dict[str, Any]:
    """The column values for `entry`, normalised so that the database returns them unchanged.

    Over-long strings are cut to the column size (PostgreSQL would refuse them, SQLite would keep
    them: cutting keeps both identical and never fails the call). Raises ValueError/TypeError for
    an entry that cannot be recorded (e.g. circular arguments): that fails only this entry.
    """
    if not entry.event:
        raise ValueError("an audit entry needs an event")
    values: dict[str, Any] = {}
    for name in _CHAR_FIELDS:
        text = getattr(entry, name)
        values[name] = clean_text(str(text or ""))[: _MAX_LENGTH[name]]
    for name in _TEXT_FIELDS:
        values[name] = clean_text(str(getattr(entry, name) or ""))
    for name, empty in _JSON_FIELDS.items():
        raw = getattr(entry, name)
        values[name] = normalise_json(raw if raw is not None else empty())
    for name in _INT_FIELDS:
        raw = getattr(entry, name)
        values[name] = None if raw is None else int(raw)
    latency = entry.upstream_latency_ms
    # Rounded so the float written is the float read back, whatever the driver's formatting.
    values["upstream_latency_ms"] = (
        round(float(latency), 3) if latency is not None and math.isfinite(latency) else None
    )
    return values


def _lock_head(using: str) -> AuditChainHead:
    # select_for_update() takes the row lock on PostgreSQL; on SQLite it is a no-op and the
    # IMMEDIATE transaction (settings) already holds the database write lock.
    heads = AuditChainHead.objects.using(using).select_for_update()
    head = heads.filter(pk=HEAD_ID).first()
    if head is None:
        # First append (or after a test flush). ON CONFLICT DO NOTHING lets two processes race
        # here safely; both then queue on the row lock.
        AuditChainHead.objects.using(using).bulk_create(
            [AuditChainHead(id=HEAD_ID, seq=0, hash=GENESIS_HASH)], ignore_conflicts=True
        )
        head = heads.get(pk=HEAD_ID)
    return head


_INSERT_FIELDS = [f for f in AuditRecord._meta.concrete_fields if not f.primary_key]
# Each insert column and the field that adapts its value, or None where `prepare_entry` (and
# the append: seq, hashes) already hand it over in the form every backend stores (str, int,
# float, None): Field.get_db_prep_save would return it unchanged, at a cost per field that adds
# up on the hot path. The timestamp and the JSON columns are adapted per backend.
_ROW_PLAN = [
    (f.attname, None if f.get_internal_type() in {"CharField", "TextField", "BigIntegerField",
                                                   "FloatField"} else f)
    for f in _INSERT_FIELDS
]
_HEAD_TABLE = AuditChainHead._meta.db_table
# Placeholders as Django's cursors take them (%s); the driver-level path swaps them for
# SQLite's own (?).
_LOCK_HEAD_SQL = f"SELECT seq, hash FROM {_HEAD_TABLE} WHERE id = %s"
_UPDATE_HEAD_SQL = f"UPDATE {_HEAD_TABLE} SET seq = %s, hash = %s WHERE id = %s"


def _lock_head_raw(connection: Any, using: str) -> tuple[int, str]:
    """(seq, hash) of the chain head, locked for this transaction. On PostgreSQL the row lock
    serialises appenders across processes; on SQLite the IMMEDIATE transaction already holds
    the database's write lock."""
    lock = " FOR UPDATE" if connection.vendor == "postgresql" else ""
    with connection.cursor() as cursor:
        cursor.execute(_LOCK_HEAD_SQL + lock, [HEAD_ID])
        row = cursor.fetchone()
    if row is None:
        head = _lock_head(using)  # first append: create the head row (race-safe), then lock it
        return head.seq, head.hash
    return int(row[0]), str(row[1])
_INSERT_SQL: dict[str, str] = {}


def _insert_sql(connection: Any) -> str:
    # Built once per database vendor: this runs on the gateway's hot path, where the ORM's
    # per-row model machinery costs more than the insert itself.
    sql = _INSERT_SQL.get(connection.vendor)
    if sql is None:
        quote = connection.ops.quote_name
        columns = ", ".join(quote(f.column) for f in _INSERT_FIELDS)
        marks = ", ".join(["%s"] * len(_INSERT_FIELDS))
        sql = f"INSERT INTO {quote(AuditRecord._meta.db_table)} ({columns}) VALUES ({marks})"
        _INSERT_SQL[connection.vendor] = sql
    return sql


def _chain_rows(prepared: list[dict[str, Any]], seq: int, prev_hash: str, key: bytes | None,
                connection: Any) -> tuple[list[AuditRecord], list[list[Any]], int, str]:
    """The records following (seq, prev_hash), and their rows as the driver takes them."""
    records: list[AuditRecord] = []
    rows: list[list[Any]] = []
    for values in prepared:
        seq += 1
        # Stamped under the lock so `at` follows `seq` within one clock.
        fields = {**values, "seq": seq, "at": timezone.now(), "prev_hash": prev_hash}
        record_hash = compute_hash(prev_hash, fields, key)
        fields["hash"] = record_hash
        records.append(AuditRecord(**fields))
        rows.append([fields[name] if adapt is None
                     else adapt.get_db_prep_save(fields[name], connection)
                     for name, adapt in _ROW_PLAN])
        prev_hash = record_hash
    return records, rows, seq, prev_hash


# The driver-level statements of one append, per vendor: (begin, lock head, insert, update head).
_DRIVER_SQL: dict[str, tuple[str, str, str, str]] = {}


def _driver_sql(connection: Any) -> tuple[str, str, str, str]:
    statements = _DRIVER_SQL.get(connection.vendor)
    if statements is None:
        sqlite = connection.vendor == "sqlite"
        mark = "?" if sqlite else "%s"
        statements = (
            # IMMEDIATE: take SQLite's write lock now, as the settings' transaction_mode does.
            "BEGIN IMMEDIATE" if sqlite else "BEGIN",
            _LOCK_HEAD_SQL.replace("%s", mark) + ("" if sqlite else " FOR UPDATE"),
            _insert_sql(connection).replace("%s", mark),
            _UPDATE_HEAD_SQL.replace("%s", mark),
        )
        _DRIVER_SQL[connection.vendor] = statements
    return statements


def _append_on_driver(connection: Any, prepared: list[dict[str, Any]],
                      key: bytes | None) -> list[AuditRecord] | None:
    """The append in its own transaction, straight on the driver's connection (the gateway's
    audit writer, once per batch): Django's transaction and cursor layers cost more than the
    statements themselves. Errors are raised as Django's database errors. None if the chain
    head does not exist yet (nothing written: the caller creates it the ORM way)."""
    begin, lock, insert, update = _driver_sql(connection)
    connection.ensure_connection()
    with connection.wrap_database_errors:
        cursor = connection.connection.cursor()
        try:
            cursor.execute(begin)
            try:
                cursor.execute(lock, [HEAD_ID])
                head = cursor.fetchone()
                if head is None:
                    cursor.execute("ROLLBACK")
                    return None
                records, rows, seq, prev_hash = _chain_rows(
                    prepared, int(head[0]), str(head[1]), key, connection)
                cursor.executemany(insert, rows)
                cursor.execute(update, [seq, prev_hash, HEAD_ID])
                cursor.execute("COMMIT")
            except BaseException:
                try:
                    cursor.execute("ROLLBACK")
                except Exception:  # noqa: BLE001 - the connection is gone: nothing to undo
                    log.debug("rollback after a failed append failed", exc_info=True)
                raise
        finally:
            cursor.close()
    return records


def append_prepared(
    prepared: list[dict[str, Any]], *, using: str = DEFAULT_DB_ALIAS
) -> list[AuditRecord]:
    """Append already prepared entries (see `prepare_entry`) in order, in one transaction
    (the caller's, inside an atomic block)."""
    if not prepared:
        return []
    connection = connections[using]
    key = chain_key()
    if not connection.in_atomic_block:
        records = _append_on_driver(connection, prepared, key)
        if records is not None:
            return records
    with transaction.atomic(using=using):
        seq, prev_hash = _lock_head_raw(connection, using)
        records, rows, seq, prev_hash = _chain_rows(prepared, seq, prev_hash, key, connection)
        with connection.cursor() as cursor:
            cursor.executemany(_insert_sql(connection), rows)
            cursor.execute(_UPDATE_HEAD_SQL, [seq, prev_hash, HEAD_ID])
    return records


def append_records(
    entries: list[AuditEntry], *, using: str = DEFAULT_DB_ALIAS
) -> list[AuditRecord]:
    """Append `entries` in order in one transaction; returns the stored records.

    If called inside a caller's atomic block the records commit (or roll back) with it, and on
    PostgreSQL the chain head stays locked until then: keep such transactions short.
    """
    return append_prepared([prepare_entry(entry) for entry in entries], using=using)
