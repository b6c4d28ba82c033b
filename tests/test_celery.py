"""Tasks run asynchronously in a real worker: the embedded filesystem queue, and Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

from tests.conftest import ROOT

SEND = (
    "import sys, django; django.setup();"
    "from wardgate.tasks import worker_ping;"
    "r = worker_ping.delay(sys.argv[1]); print(r.get(timeout=60)['echo'])"
)


def run_worker_roundtrip(env: dict[str, str], tmp_path: Path) -> str:
    env = {**os.environ, **env, "DJANGO_SETTINGS_MODULE": "wardgate.settings",
           "WARDGATE_VAR_DIR": str(tmp_path)}
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "wardgate", "worker", "--pool=solo",
         "--loglevel=WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        token = uuid.uuid4().hex
        done = subprocess.run([sys.executable, "-c", SEND, token], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=90)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout.strip(), token
    finally:
        worker.terminate()
        worker.wait(timeout=20)


def test_embedded_queue_needs_no_server(tmp_path: Path) -> None:
    echoed, token = run_worker_roundtrip({"CELERY_BROKER_URL": "filesystem://"}, tmp_path)
    assert echoed == token


def test_redis_broker(redis_url: str, tmp_path: Path) -> None:
    echoed, token = run_worker_roundtrip(
        {"CELERY_BROKER_URL": redis_url, "CELERY_RESULT_BACKEND": redis_url}, tmp_path)
    assert echoed == token
