"""The test database itself: concurrent writers wait for each other instead of failing.

The gateway under test runs in a uvicorn thread and writes (audit records, the security
revision) while the test thread writes too. On Django's shared-cache in-memory SQLite database
that failed at once with "database table is locked", whatever the busy timeout.
"""

from __future__ import annotations

import threading

import pytest
from django.db import close_old_connections, connection, transaction


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_from_threads_wait_instead_of_failing() -> None:
    from portal.models import SecurityRevision
    from portal.services.security import security_revision_bump, security_revision_current

    SecurityRevision.objects.get_or_create(pk=1, defaults={"value": 0})
    errors: list[BaseException] = []
    per_thread, threads = 40, 4
    start = threading.Barrier(threads)

    def writer() -> None:
        try:
            start.wait()
            for _ in range(per_thread):
                with transaction.atomic():
                    security_revision_bump()
                    # Hold the write lock a little, as an audit batch does.
                    SecurityRevision.objects.filter(pk=1).exists()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            close_old_connections()
            connection.close()

    workers = [threading.Thread(target=writer) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert not errors, errors[:3]
    assert security_revision_current() == per_thread * threads
