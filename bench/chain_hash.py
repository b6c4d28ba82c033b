"""Cost of hashing one audit record: the legacy SHA-256 chain (v1) against the keyed HMAC chain
(v2), and of verifying a legacy record while a chain key is configured (both formats tried).

    python bench/chain_hash.py [--records 20000]

Goal: keying the chain costs under 10 % more per record than v1. Uses an execute_sql-sized
record (4 KB response body); the load average is printed, as wall times vary with it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20000)
    records = parser.parse_args().records
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wardgate.settings")
    import django

    django.setup()
    from audit.chain import GENESIS_HASH, compute_hash, hash_format
    from audit.services import AuditEntry, chain_key, prepare_entry

    fields = prepare_entry(AuditEntry(
        event="mcp.outcome", request_id="r" * 32, actor="engineer", auth_method="personal_token",
        sql_text="SELECT customer_id, email FROM shop.customers LIMIT 10", response_body="x" * 4096,
        arguments={"sql": "SELECT 1"}, detail={"role": "analyst"}))
    fields.update(seq=1, at=datetime.now(UTC), prev_hash=GENESIS_HASH)
    key = chain_key() or b"k" * 64
    legacy = compute_hash(GENESIS_HASH, fields)

    def per_record(run) -> float:  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        for _ in range(records):
            run()
        return (time.perf_counter() - started) / records * 1e6

    v1 = per_record(lambda: compute_hash(GENESIS_HASH, fields))
    v2 = per_record(lambda: compute_hash(GENESIS_HASH, fields, key))
    both = per_record(lambda: hash_format(GENESIS_HASH, fields, legacy, key))
    print(f"load average {os.getloadavg()[0]:.2f}; {records} records")
    print(f"v1 sha256 {v1:.1f} us/record; v2 hmac {v2:.1f} us/record ({(v2 / v1 - 1) * 100:+.1f} %)")
    print(f"legacy record verified with a key configured: {both:.1f} us/record")


if __name__ == "__main__":
    main()
