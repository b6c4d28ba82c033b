"""Several gateway processes share one database: their appends must still form one gapless
chain, serialised by the chain-head lock (row lock on PostgreSQL, the IMMEDIATE write lock on
SQLite). Runs against a database the child processes can open (see `external_db`)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from .conftest import CHILD, ExternalDatabase, update_trigger_dropped

pytestmark = pytest.mark.django_db(transaction=True)

PER_CHILD = 300


def test_two_processes_append_one_gapless_valid_chain(
    external_db: ExternalDatabase, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    children = {
        "alpha": external_db.popen(str(CHILD), "alpha", str(PER_CHILD), "sync", str(go)),
        "beta": external_db.popen(str(CHILD), "beta", str(PER_CHILD), "writer", str(go)),
    }
    deadline = time.monotonic() + 120
    while not all(Path(f"{go}.{name}.ready").exists() for name in children):
        assert time.monotonic() < deadline, "children did not start"
        assert all(proc.poll() is None for proc in children.values()), [
            proc.communicate() for proc in children.values()
        ]
        time.sleep(0.02)
    go.touch()  # both start appending at once
    for name, proc in children.items():
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, f"{name}: {err[-3000:]}"

    rows = external_db.query("SELECT seq, detail FROM audit_record ORDER BY seq")
    assert [seq for seq, _ in rows] == list(range(1, 2 * PER_CHILD + 1))
    details = [detail if isinstance(detail, dict) else json.loads(detail) for _, detail in rows]
    for name in children:
        mine = [d["i"] for d in details if d["writer"] == name]
        assert sorted(mine) == list(range(PER_CHILD))
    if external_db.vendor == "postgresql":
        # Lock waiters queue in order, so the children interleave (75 alternations seen). One
        # switch would be one after the other; two or more means interleaved appends. SQLite's
        # busy handler is not fair (a committing process often re-takes the lock at once), so
        # there the children may legitimately run one after the other.
        switches = sum(
            a["writer"] != b["writer"] for a, b in zip(details, details[1:], strict=False)
        )
        assert switches >= 2
    # The synchronous child appends in order, so its records keep their order in the chain.
    assert [d["i"] for d in details if d["writer"] == "alpha"] == list(range(PER_CHILD))

    done = external_db.run("manage.py", "audit_verify", "--batch-size", "97")
    assert done.returncode == 0, done.stderr
    assert f"audit chain OK: {2 * PER_CHILD} records verified" in done.stdout


def test_audit_verify_exit_status_in_a_real_process(external_db: ExternalDatabase) -> None:
    done = external_db.run(str(CHILD), "gamma", "12", "sync")
    assert done.returncode == 0, done.stderr
    assert external_db.run("manage.py", "audit_verify").returncode == 0

    with update_trigger_dropped(external_db.execute, external_db.vendor):
        external_db.execute("UPDATE audit_record SET decision = 'allow' WHERE seq = 9")
    done = external_db.run("manage.py", "audit_verify")
    assert done.returncode == 1
    assert "BROKEN at record 9" in done.stderr
    assert "altered" in done.stderr
    assert "audit chain OK" not in done.stdout

    # The triggers are back: the database refuses further edits.
    with pytest.raises(Exception, match="append-only"):
        external_db.execute("UPDATE audit_record SET decision = 'deny' WHERE seq = 3")
