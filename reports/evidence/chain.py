"""The chain verification result (AU-9, AU-9(3), AU-10): the audit app's own verifier, run when
the pack is built, plus where the period sits in the chain and whether a signed checkpoint
covers it."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, is_dataclass
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.db import connection
from django.db.models import Max

from audit.models import AuditRecord
from reports.pack.archive import PackArchive

from .base import Evidence, PackScope


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def chain_verify() -> dict[str, Any]:
    """The full-log verification: chain plus signed checkpoints where the audit app has them."""
    try:
        from audit.verify import verify_log
    except ImportError:  # an audit app without checkpoints
        from audit.verify import verify_chain

        chain = verify_chain()
        return {"ok": chain.ok, "verifier": "audit.verify.verify_chain", "chain": _plain(chain),
                "problems": [], "checkpoints_checked": 0, "checkpoint_source": "none",
                "latest_checkpoint": None}
    from audit.verify import default_workers

    # Incremental: records up to the verified-through marker were recomputed by an earlier
    # verification (the pack says so, and when); `audit_verify --full` recomputes them all.
    result = verify_log(incremental=True, workers=default_workers())
    latest = result.latest_checkpoint
    through = result.verified_through
    return {
        "ok": result.ok,
        "verifier": "audit.verify.verify_log",
        "mode": result.mode,
        "mode_reason": result.mode_reason,
        "verified_through": None if through is None else {
            "seq": through.seq, "hash": through.hash, "verified_at": through.verified_at},
        "chain": _plain(result.chain),
        "problems": list(result.problems),
        "checkpoints_checked": result.checkpoints_checked,
        "checkpoint_source": result.checkpoint_source,
        "latest_checkpoint": None if latest is None else {
            "seq": latest.seq, "hash": latest.hash, "at": _plain(latest.at),
            "key_id": getattr(latest, "key_id", "")},
        "anchor": _plain(result.anchor),
        "purge_record_seq": result.purge_record_seq,
    }


log = logging.getLogger(__name__)


def _database_url() -> str | None:
    """A DATABASE_URL for this process's database as it is now (test databases included), or
    None when another process cannot see what this one sees (in-memory SQLite, or an open
    transaction)."""
    if connection.in_atomic_block:
        return None  # our uncommitted writes would be invisible to another process
    s = connection.settings_dict
    name = str(s.get("NAME") or "")
    if connection.vendor == "sqlite":
        if not name or name == ":memory:" or "mode=memory" in name:
            return None
        return f"sqlite:///{os.path.abspath(name)}"
    if connection.vendor == "postgresql":
        auth = quote(str(s.get("USER") or ""), safe="")
        if s.get("PASSWORD"):
            auth += ":" + quote(str(s["PASSWORD"]), safe="")
        host = f"{s.get('HOST') or '127.0.0.1'}:{s.get('PORT') or 5432}"
        return f"postgres://{auth}@{host}/{quote(name, safe='')}"
    return None


class ChainCheck:
    """The chain verification, run in a child process while the rest of the pack is written
    (falls back to running here when the database is private to this process, or the child
    fails). `result()` waits for it."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._errors = tempfile.TemporaryFile()  # noqa: SIM115 (closed in result/cancel)
        url = _database_url()
        if url is None:
            return
        env = {**os.environ, "DATABASE_URL": url,
               "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE",
                                                        "wardgate.settings")}
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "reports.chain_probe"], cwd=str(settings.BASE_DIR),
                env=env, stdout=subprocess.PIPE, stderr=self._errors)
        except OSError as exc:
            log.warning("could not start the chain verification process (%s): verifying here",
                        exc)

    def result(self) -> dict[str, Any]:
        if self._proc is not None:
            out, _ = self._proc.communicate()
            self._errors.seek(0)
            err = self._errors.read()
            self._errors.close()
            if self._proc.returncode == 0:
                try:
                    data = json.loads(out)
                    if isinstance(data, dict) and "ok" in data:
                        return data
                except ValueError:
                    pass
            log.warning("the chain verification process failed (exit %s): %s; verifying here",
                        self._proc.returncode, err.decode(errors="replace")[-2000:])
        return chain_verify()

    def cancel(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._errors.close()


def write_chain(scope: PackScope, archive: PackArchive, verification: dict[str, Any]) -> Evidence:
    first = last = None
    if scope.first_seq is not None and scope.last_seq is not None:
        first = AuditRecord.objects.filter(seq=scope.first_seq).values("seq", "prev_hash",
                                                                       "hash").first()
        last = AuditRecord.objects.filter(seq=scope.last_seq).values("seq", "hash").first()
    latest = verification.get("latest_checkpoint") or {}
    covered = bool(latest) and scope.last_seq is not None and latest["seq"] >= scope.last_seq
    max_seq = AuditRecord.objects.aggregate(m=Max("seq"))["m"]
    body = {
        **verification,
        "period": {
            "start": scope.period_start.isoformat(), "end_exclusive": scope.period_end.isoformat(),
            "first_seq": scope.first_seq, "last_seq": scope.last_seq,
            "first_prev_hash": first["prev_hash"] if first else None,
            "last_hash": last["hash"] if last else None,
            "signed_by_checkpoint": covered,
        },
        "head_seq_at_build": scope.head_seq,
        "max_seq_now": max_seq,
        "method": "Each record's SHA-256 over its canonical JSON and the previous record's hash "
                  "is recomputed, links and gapless seq checked up to the chain head, and every "
                  "Ed25519-signed checkpoint is checked against the record it names. In "
                  "'incremental' mode the recomputation starts after 'verified_through', a signed "
                  "marker left by an earlier verification at a signed, exported checkpoint whose "
                  "record still has the signed hash; 'full' recomputes every record.",
    }
    data = (json.dumps(body, indent=1, sort_keys=True) + "\n").encode()
    entry = archive.write_bytes("chain/verification.json", data, "application/json")
    chain = verification.get("chain") or {}
    return Evidence(
        name="chain-verification", path=entry.path, title="Audit chain verification",
        description="The hash chain and its signed checkpoints verified when the pack was built, "
                    "and the hashes at the period's boundaries.",
        selection=f"{verification.get('verifier')}() over the whole log, "
                  f"{verification.get('mode', 'full')} recomputation",
        controls=("AU-9", "AU-9(3)", "AU-10"), rows=1, expected_rows=None, sha256=entry.sha256,
        bytes=entry.bytes,
        stats={"ok": bool(verification.get("ok")),
               "records_checked": chain.get("records_checked", 0),
               "problem": chain.get("problem"), "problems": verification.get("problems", []),
               "head_seq": chain.get("head_seq"), "head_hash": chain.get("head_hash"),
               "checkpoints_checked": verification.get("checkpoints_checked", 0),
               "latest_checkpoint": verification.get("latest_checkpoint"),
               "signed_by_checkpoint": covered, "mode": verification.get("mode", "full"),
               "mode_reason": verification.get("mode_reason", ""),
               "verified_through": verification.get("verified_through")},
    )
