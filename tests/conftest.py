"""Shared fixtures: a real BigQuery emulator with demo data, our MCP server, the gateway."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bigquery_mcp.client import make_bigquery_client
from bigquery_mcp.emulator import BigQueryEmulator, free_port, stop_process
from bigquery_mcp.seed import seed_demo_dataset

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "wardgate-test"
DATASET = "shop"
TEST_CUSTOMERS = 300


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--served-gateway", action="store_true",
        help="run the end-to-end tests (those using the `gateway` or `gateway_process` "
             "fixture) against `manage.py serve --workers 2` on the test database instead of "
             "the gateway in a thread of this process or one uvicorn process; the other tests "
             "are deselected")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "embedded_only: run only against the embedded SQLite default")
    config.addinivalue_line(
        "markers", "single_process_gateway(reason): reaches into the gateway's memory or counts "
                   "on one process, so it cannot run against a served gateway with two workers "
                   "(--served-gateway)")


# Fixtures that change this process's configuration, logging or code: what a test does with them
# does not reach a gateway in other processes. (Asked for by the test itself: plugins' fixtures
# use monkeypatch for their own ends.)
IN_PROCESS_ONLY_FIXTURES = ("configure", "monkeypatch", "caplog")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("--served-gateway"):
        return
    selected, deselected = [], []
    for item in items:
        names = getattr(item, "fixturenames", ())
        end_to_end = "gateway" in names or "gateway_process" in names
        (selected if end_to_end else deselected).append(item)
        marker = item.get_closest_marker("single_process_gateway")
        if marker is not None:
            item.add_marker(pytest.mark.skip(reason=f"needs the gateway in one process: {marker.args[0]}"))
        elif used := [name for name in IN_PROCESS_ONLY_FIXTURES
                      if name in inspect.signature(item.function).parameters]:
            item.add_marker(pytest.mark.skip(
                reason=f"needs the gateway in one process: uses {', '.join(used)}"))
    config.hook.pytest_deselected(items=deselected)
    items[:] = selected


@pytest.fixture(scope="session", autouse=True)
def _flush_by_delete_on_postgresql() -> None:
    """On PostgreSQL, the flush after each transactional test empties the tables with DELETE,
    not TRUNCATE: TRUNCATE makes new files for each of the ~40 tables and took 0.3-0.6 s a test
    on a 2-core machine (a few minutes of each run), DELETE of a test's few rows takes ms. The
    tables end as empty either way (Django's foreign keys are checked at the flush's commit; the
    audit tables' DELETE guard is open, as for TRUNCATE, by `_audit_maintenance_window`)."""
    from django.db.backends.postgresql.operations import DatabaseOperations

    truncate = DatabaseOperations.sql_flush
    if getattr(truncate, "deletes", False):
        return

    def sql_flush(self, style, tables, *, reset_sequences=False, allow_cascade=False):  # type: ignore[no-untyped-def]
        if reset_sequences or allow_cascade:
            return truncate(self, style, tables, reset_sequences=reset_sequences,
                            allow_cascade=allow_cascade)
        return [f"{style.SQL_KEYWORD('DELETE FROM')} {style.SQL_FIELD(self.quote_name(t))};"
                for t in tables]

    sql_flush.deletes = True  # type: ignore[attr-defined]
    DatabaseOperations.sql_flush = sql_flush  # type: ignore[method-assign]


@pytest.fixture(scope="session")
def django_db_modify_db_settings(tmp_path_factory: pytest.TempPathFactory) -> None:
    """On SQLite, the test database is a file in WAL mode with the settings' busy timeout, not
    Django's shared-cache in-memory database: shared-cache connections ignore busy timeouts and
    fail at once with "database table is locked" when the gateway (in a uvicorn thread) and the
    test write at the same moment. A file per session keeps parallel runs apart."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    if db["ENGINE"] == "django.db.backends.sqlite3":
        name = tmp_path_factory.mktemp("sqlite-test-db") / "wardgate_test.sqlite3"
        db.setdefault("TEST", {})["NAME"] = str(name)


def wait_http(url: str, proc: subprocess.Popen | None = None, timeout: float = 30) -> None:
    from wardgate.demo_stack import wait_http as wait

    wait(url, timeout, proc, url)


@pytest.fixture(scope="session")
def bigquery_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BigQueryEmulator]:
    emulator = BigQueryEmulator(PROJECT, tmp_path_factory.mktemp("bq")).start()
    client = make_bigquery_client(PROJECT, emulator.endpoint)
    seed_demo_dataset(client, DATASET, customers=TEST_CUSTOMERS)
    yield emulator
    emulator.stop()


@pytest.fixture(scope="session")
def bigquery_client(bigquery_emulator: BigQueryEmulator):  # type: ignore[no-untyped-def]
    return make_bigquery_client(PROJECT, bigquery_emulator.endpoint)


@contextlib.contextmanager
def http_server(argv: Callable[[int], list[str]], log_dir: Path, *,
                env: dict[str, str] | None = None, cwd: Path = ROOT,
                port: int | None = None) -> Iterator[str]:
    """`argv(port)` in a subprocess serving MCP on that port (a free one unless given; logging
    to log_dir/server.log); yields its /mcp URL once it answers, and stops it afterwards."""
    port = port or free_port()
    with open(log_dir / "server.log", "wb") as log:
        proc = subprocess.Popen(argv(port), stdout=log, stderr=subprocess.STDOUT, cwd=cwd,
                                env=env)
        url = f"http://127.0.0.1:{port}/mcp"
        try:
            wait_http(url, proc)
            yield url
        finally:
            stop_process(proc)


@pytest.fixture(scope="session")
def mcp_server_url(bigquery_emulator: BigQueryEmulator, tmp_path_factory) -> Iterator[str]:  # type: ignore[no-untyped-def]
    with http_server(lambda port: [
            sys.executable, "-m", "bigquery_mcp", "--transport", "http", "--port", str(port), "--project",
            PROJECT, "--endpoint", bigquery_emulator.endpoint], tmp_path_factory.mktemp("mcp")) as url:
        yield url


class _GatewayUnderTest:
    async def refresh(self) -> None:
        """Until the gateway has seen the latest security revision."""
        raise NotImplementedError

    async def forget_caches(self) -> None:
        """After a change made straight in the database (no service bumped the revision)."""
        from asgiref.sync import sync_to_async

        from portal.services.security import security_revision_bump

        await sync_to_async(security_revision_bump, thread_sensitive=False)()
        await self.refresh()


class RunningGateway(_GatewayUnderTest):
    def __init__(self, app, port: int) -> None:  # type: ignore[no-untyped-def]
        import uvicorn

        self.app = app
        self.port = port
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                                    log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, slug: str) -> str:
        return f"{self.base_url}/mcp/{slug}"

    def start(self) -> RunningGateway:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("gateway did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    async def refresh(self) -> None:
        await self.gateway.pipeline.watcher.check_now()  # type: ignore[attr-defined]



def database_url_for_children() -> str:
    """The test database as a DATABASE_URL other processes can open (SQLite: the file)."""
    from django.db import connection

    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    return f"postgres://{s['USER']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


class GatewayProcess(_GatewayUnderTest):
    """A real gateway + portal process on the test database: uvicorn, or with `served`
    `manage.py serve --workers 2` (two uvicorn workers under its supervisor)."""

    # Each worker polls the security revision every 0.2 s (proxy/config.py):
    # a few intervals, for a loaded machine.
    PROPAGATION_SECONDS = 1.0

    def __init__(self, env: dict[str, str], log_path: Path, *, served: bool = False) -> None:
        self.port = free_port()
        self.env = env
        self.log_path = log_path
        self.served = served
        self.proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, slug: str) -> str:
        return f"{self.base_url}/mcp/{slug}"

    def start(self) -> GatewayProcess:
        command = (["manage.py", "serve", "--workers", "2"] if self.served else
                   ["-m", "uvicorn", "wardgate.asgi:application",
                    "--http", "proxy.http_protocol:GuardedH11Protocol"])
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, *command, "--port", str(self.port), "--log-level", "warning"],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_http(f"{self.base_url}/healthz", self.proc, timeout=120)  # a loaded machine
        except Exception as exc:
            self.stop()
            output = self.log_path.read_text(errors="replace")[:3000]
            raise RuntimeError(f"{' '.join(command)} did not start:\n{output}") from exc
        return self

    def serving_pids(self) -> list[int]:
        """The processes that answer requests: this one, or serve's workers (the children of
        its supervisor) — not the SQL analysis workers they start."""
        assert self.proc is not None
        if not self.served:
            return [self.proc.pid]
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        return [int(pid) for pid in children.split()]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    async def refresh(self) -> None:
        await asyncio.sleep(self.PROPAGATION_SECONDS)



@pytest.fixture
def gateway_process(request, transactional_db, tmp_path):  # type: ignore[no-untyped-def]
    """Start real gateway processes on the test database: `gateway_process(VAR=value, ...)`
    (under `pytest --served-gateway`, each one `manage.py serve --workers 2`)."""
    started: list[GatewayProcess] = []

    def start(**env: str) -> GatewayProcess:
        full = {**os.environ, "DATABASE_URL": database_url_for_children(),
                "WARDGATE_VAR_DIR": str(tmp_path), **env}
        running = GatewayProcess(full, tmp_path / f"gateway-{len(started)}.log",
                                 served=request.config.getoption("--served-gateway"))
        started.append(running)
        return running.start()

    yield start
    for running in started:
        running.stop()


@pytest.fixture
def oidc_issuer() -> Iterator:  # type: ignore[type-arg]
    from tests.oidc_issuer import LocalIssuer

    issuer = LocalIssuer()
    yield issuer
    issuer.close()


@pytest.fixture
def gateway(request, transactional_db, oidc_issuer, tmp_path):  # type: ignore[no-untyped-def]
    """A fresh gateway + portal (the real ASGI application) on uvicorn in a thread of this
    process, so it shares the test database. OIDC tokens from `oidc_issuer` are accepted.
    Under `pytest --served-gateway`: `manage.py serve --workers 2` instead."""
    from dataclasses import replace

    from tests.oidc_issuer import AUDIENCE

    if request.config.getoption("--served-gateway"):
        served = GatewayProcess({
            **os.environ, "DATABASE_URL": database_url_for_children(),
            "WARDGATE_VAR_DIR": str(tmp_path), "WARDGATE_OIDC_ISSUER": oidc_issuer.issuer,
            "WARDGATE_OIDC_JWKS_URL": oidc_issuer.jwks_url, "WARDGATE_OIDC_AUDIENCE": AUDIENCE,
        }, tmp_path / "served-gateway.log", served=True)
        try:
            yield served.start()
        finally:
            served.stop()
        return

    from portal.gateway_store import PortalGatewayStore
    from proxy.app import GatewayApp
    from proxy.config import gateway_config
    from proxy.oidc import OidcConfig
    from wardgate.asgi import build_application

    config = replace(gateway_config(), oidc=OidcConfig(
        issuer=oidc_issuer.issuer, audience=AUDIENCE, jwks_url=oidc_issuer.jwks_url))
    app = GatewayApp(config, store=PortalGatewayStore())
    running = RunningGateway(build_application(app), free_port()).start()
    running.gateway = app  # type: ignore[attr-defined]
    yield running
    running.stop()


@pytest.fixture
def demo_connection(mcp_server_url: str, bigquery_emulator: BigQueryEmulator, transactional_db):  # type: ignore[no-untyped-def]
    from portal.services.demo import demo_connection_ensure

    return demo_connection_ensure(upstream_url=mcp_server_url, bigquery_project=PROJECT,
                                  bigquery_endpoint=bigquery_emulator.endpoint, dataset=DATASET)


@pytest.fixture
def demo_policy(demo_connection):  # type: ignore[no-untyped-def]
    """The demo's analyst role granted to engineers, and the upstream catalogue accepted."""
    from portal.services.catalog import tool_catalog_accept, tool_catalog_refresh
    from portal.services.demo import demo_policy_ensure
    from portal.services.events import SYSTEM

    role = demo_policy_ensure(demo_connection)
    tool_catalog_refresh(connection=demo_connection)
    tool_catalog_accept(connection=demo_connection, by=None, meta=SYSTEM)
    return role


def make_user(username: str, *groups: str, active: bool = True):  # type: ignore[no-untyped-def]
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    user = get_user_model().objects.create_user(username=username, password="x-test-pass-123")
    user.is_active = active
    user.save()
    for name in groups:
        user.groups.add(Group.objects.get_or_create(name=name)[0])
    return user


@pytest.fixture
def engineer(transactional_db):  # type: ignore[no-untyped-def]
    return make_user("engineer", "engineer")


@pytest.fixture
def engineer_token(engineer, demo_connection, demo_policy) -> str:  # type: ignore[no-untyped-def]
    from portal.services.events import SYSTEM
    from portal.services.tokens import token_issue

    _, plaintext = token_issue(user=engineer, connections=[demo_connection], by=None, meta=SYSTEM)
    return plaintext


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("WARDGATE_TEST_REDIS_URL")
    if not url:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI must provide Redis (WARDGATE_TEST_REDIS_URL)")
        pytest.skip("Redis is not available (set WARDGATE_TEST_REDIS_URL)")
    return url


@pytest.fixture(autouse=True)
def _checkpoint_export_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Each test exports checkpoints to a directory of its own (the default, var/checkpoints,
    would collect checkpoints of unrelated test chains, which rightly conflict)."""
    from audit.config import audit_config
    from wardgate.typed_config import configured

    with configured(audit_config,
                    checkpoint_export=str(tmp_path_factory.mktemp("checkpoints"))):
        yield


@pytest.fixture
def configure() -> Iterator[Callable[..., Any]]:
    """`configure(portal_config, incident_max_denied=5)`: that app's typed configuration with
    these fields replaced for the rest of the test, restored after it (the settings no longer
    hold the apps' values, so `settings.WARDGATE_...` changes nothing)."""
    from wardgate.typed_config import configured

    with contextlib.ExitStack() as stack:
        yield lambda accessor, **changes: stack.enter_context(configured(accessor, **changes))


@pytest.fixture(autouse=True)
def _audit_maintenance_window(request: pytest.FixtureRequest) -> Iterator[None]:
    """The audit tables refuse DELETE/TRUNCATE outside a maintenance window (audit/maintenance.py),
    which pytest-django's flush after a transactional test would hit. Close any window left open,
    and open one when a transactional test ends so the flush can empty the tables. Requesting
    `db` here makes this teardown run before pytest-django's (which flushes); tests that use no
    database are left alone."""
    if request.node.get_closest_marker("django_db") is None and not (
        {"db", "transactional_db"} & set(request.fixturenames)
    ):
        yield
        return
    request.getfixturevalue("db")  # transactional_db, if the test asked for it, takes precedence
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM audit_maintenance_window")
    _forget_earlier_windows(connection)
    yield
    if not connection.in_atomic_block:  # transactional test: no rollback, a flush follows
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO audit_maintenance_window (token, reason) VALUES (%s, %s)",
                [f"pytest-{os.getpid()}-{time.monotonic_ns()}", "pytest-django flush"],
            )


def _forget_earlier_windows(connection) -> None:  # type: ignore[no-untyped-def]
    """Each test starts on a fresh chain, so it starts with an empty maintenance log too (the
    log outlives flushes, and refuses DELETE: the guard is lifted for this cleanup only)."""
    import importlib

    migration = importlib.import_module("audit.migrations.0006_keyed_chain_and_window_log")
    vendor, name = connection.vendor, "audit_maintenance_log_no_delete"
    drop = [s for s in migration.REMOVE[vendor] if f"EXISTS {name} " in s + " "]
    create = [s for s in migration.INSTALL[vendor] if s.lstrip().startswith(f"CREATE TRIGGER {name} ")]
    with connection.cursor() as cursor:
        for statement in [*drop, "DELETE FROM audit_maintenance_log", *create]:
            cursor.execute(statement)
