"""Child process for the multi-process tests: appends audit records to DATABASE_URL.

    python tests/audit/_append_child.py NAME COUNT MODE [GO_FILE]

MODE "sync" appends with append_records in batches of 1, 2, 3 and 5 entries; MODE "writer"
goes through AuditWriter with 8 concurrent writers. With GO_FILE the child signals readiness
(GO_FILE + ".NAME.ready") and waits for GO_FILE to exist, so both children start together.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wardgate.settings")

import django  # noqa: E402

django.setup()

from audit.services import AuditEntry, append_records  # noqa: E402
from audit.writer import AuditWriter  # noqa: E402


def entry(name: str, i: int) -> AuditEntry:
    return AuditEntry(
        event="test.multiprocess",
        request_id=f"{name}-{i}",
        actor=name,
        detail={"writer": name, "i": i},
    )


def run_sync(name: str, count: int) -> None:
    sizes = [1, 2, 3, 5]
    i = 0
    while i < count:
        size = min(sizes[i % len(sizes)], count - i)
        append_records([entry(name, k) for k in range(i, i + size)])
        i += size


async def run_writer(name: str, count: int) -> None:
    writer = AuditWriter()
    await writer.start()
    todo = iter(range(count))

    async def worker() -> None:
        for i in todo:
            await writer.write(entry(name, i))

    await asyncio.gather(*(worker() for _ in range(8)))
    await writer.stop()


def main() -> None:
    name, count, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if len(sys.argv) > 4:
        go = Path(sys.argv[4])
        Path(f"{go}.{name}.ready").touch()
        deadline = time.monotonic() + 60
        while not go.exists():
            if time.monotonic() > deadline:
                sys.exit("never told to go")
            time.sleep(0.005)
    if mode == "sync":
        run_sync(name, count)
    else:
        asyncio.run(run_writer(name, count))


if __name__ == "__main__":
    main()
