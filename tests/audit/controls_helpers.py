"""Helpers for the checkpoint, export and retention tests: tampering as an attacker with DDL
rights would (around the append-only triggers), and building small chains."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connection

from audit.chain import HASHED_FIELDS, compute_hash
from audit.maintenance import purge_window
from audit.models import AuditRecord
from audit.services import append_records, chain_key

from .conftest import append_only, make_entry, sql

controls = importlib.import_module("audit.migrations.0004_controls_append_only")


def chain(n: int, start: int = 0) -> list[AuditRecord]:
    return append_records([make_entry(i) for i in range(start, start + n)])


def _statement(statements: list[str], prefix: str) -> str:
    return next(s for s in statements if s.lstrip().startswith(prefix))


@contextmanager
def triggers_dropped(*names: str) -> Iterator[None]:
    """Drop the named triggers (from migrations 0002/0004) for the block, then restore them."""
    vendor = connection.vendor
    pairs = []
    for name in names:
        for module in (append_only, controls):
            try:
                create = _statement(module.INSTALL[vendor], f"CREATE TRIGGER {name} ")
            except StopIteration:
                continue
            drop = _statement(module.REMOVE[vendor], f"DROP TRIGGER IF EXISTS {name}")
            pairs.append((drop, create))
            break
        else:
            raise LookupError(name)
    for drop, _ in pairs:
        sql(drop)
    try:
        yield
    finally:
        for _, create in pairs:
            sql(create)


def stored(seq: int) -> dict[str, Any]:
    return AuditRecord.objects.values(*HASHED_FIELDS, "hash").get(seq=seq)


def rewrite_from(seq: int, *, key: bytes | None | str = "stolen", **changes: Any) -> str:
    """Edit record `seq` and recompute every later hash and link, then move the chain head to
    match. By default as an attacker who also stole the chain key (the chain alone verifies
    afterwards); key=None: one without it. Returns the new head hash."""
    if key == "stolen":
        key = chain_key()
    last = AuditRecord.objects.order_by("-seq").values_list("seq", flat=True).first()
    prev_hash = stored(seq)["prev_hash"]
    with triggers_dropped("audit_record_no_update", "audit_chain_head_forward_only"):
        for current in range(seq, last + 1):
            fields = {**stored(current), "prev_hash": prev_hash}
            if current == seq:
                fields.update(changes)
            new_hash = compute_hash(prev_hash, fields, key)  # type: ignore[arg-type]
            if current == seq:
                assignments = ", ".join(f"{name} = %s" for name in changes)
                sql(
                    f"UPDATE audit_record SET {assignments} WHERE seq = %s",
                    [*changes.values(), current],
                )
            sql(
                "UPDATE audit_record SET prev_hash = %s, hash = %s WHERE seq = %s",
                [prev_hash, new_hash, current],
            )
            prev_hash = new_hash
        sql("UPDATE audit_chain_head SET hash = %s", [prev_hash])
    return prev_hash


def truncate_and_rewind(keep_up_to: int) -> None:
    """Delete every record after `keep_up_to` and set the chain head back to it, inside a
    maintenance window (the head row is deleted and re-inserted: the forward-only trigger
    refuses an UPDATE that rewinds it)."""
    head_hash = stored(keep_up_to)["hash"]
    with purge_window("attacker"):
        sql("DELETE FROM audit_record WHERE seq > %s", [keep_up_to])
        sql("DELETE FROM audit_chain_head")
        sql(
            "INSERT INTO audit_chain_head (id, seq, hash) VALUES (1, %s, %s)",
            [keep_up_to, head_hash],
        )
