"""What a worker process loads, which is most of its memory (issue 13: a gateway worker <= 150
MiB RSS; bench/gateway_overhead.py prints the figure). Each check runs a fresh interpreter the
way the worker starts, and names the packages it must not carry: each was once imported there
and cost its share (celery + kombu ~20 MiB, the portal's URLconf ~29 MiB, google-cloud-bigquery
~25 MiB and up to ~90 MiB with pyarrow installed, reportlab ~6 MiB)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, database_url_for_children

pytestmark = pytest.mark.django_db(transaction=True)

# Imports the ASGI application as a uvicorn worker does, answers one /healthz through it, then
# prints which of the named modules are loaded.
WORKER = """
import asyncio, json, sys
import httpx
import wardgate.asgi

async def probe():
    transport = httpx.ASGITransport(app=wardgate.asgi.application)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        return (await client.get("/healthz")).status_code

status = asyncio.run(probe())
print(json.dumps({"healthz": status, "loaded": [m for m in sys.argv[1:] if m in sys.modules]}))
"""

# An SQL analysis process: proxy.sql_worker._serve makes its imports, says it is ready, then
# (given no request) returns; then prints which of the named modules are loaded.
SQL_WORKER = """
import json, sys
from multiprocessing import Pipe
from proxy.sql_worker import _serve

requests, no_more_requests = Pipe(duplex=False)
replies, reply_to = Pipe(duplex=False)
no_more_requests.close()
_serve(requests, reply_to)
assert replies.recv() == ("ready", None)
print(json.dumps({"loaded": [m for m in sys.argv[1:] if m in sys.modules]}))
"""

PORTAL_ONLY = ["celery", "kombu", "reportlab"]
NOT_IN_A_GATEWAY_WORKER = [*PORTAL_ONLY, "wardgate.urls", "drf_spectacular.plumbing",
                           "rest_framework.serializers"]
NOT_IN_AN_SQL_WORKER = ["google.cloud.bigquery", "google.api_core", "grpc", "django"]


def _run(code: str, modules: list[str], tmp_path: Path, **env: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", code, *modules], cwd=ROOT, capture_output=True, text=True,
        timeout=120, env={**os.environ, "DATABASE_URL": database_url_for_children(),
                          "WARDGATE_VAR_DIR": str(tmp_path), **env})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_gateway_only_worker_loads_no_portal_views_celery_or_reportlab(tmp_path: Path) -> None:
    seen = _run(WORKER, NOT_IN_A_GATEWAY_WORKER, tmp_path, WARDGATE_SERVE_ONLY="gateway")
    assert seen == {"healthz": 200, "loaded": []}


def test_a_gateway_and_portal_worker_loads_no_celery_or_reportlab(tmp_path: Path) -> None:
    seen = _run(WORKER, [*PORTAL_ONLY, "wardgate.urls"], tmp_path, WARDGATE_SERVE_ONLY="")
    assert seen == {"healthz": 200, "loaded": ["wardgate.urls"]}  # the portal's, loaded at start


def test_an_sql_analysis_worker_loads_no_bigquery_client(tmp_path: Path) -> None:
    assert _run(SQL_WORKER, NOT_IN_AN_SQL_WORKER, tmp_path) == {"loaded": []}
