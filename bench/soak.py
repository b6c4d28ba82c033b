"""Soak: the real stack under load, faults and fuzzing, and the figures that prove it held.

Starts its own PostgreSQL cluster and Redis server (on free ports, in a temporary directory),
the BigQuery emulator with the demo data, our BigQuery MCP server, two gateway processes and a
round-robin TCP load balancer in front of them. Then, from 32 concurrent clients (8
identities), it runs the call mix (allowed, masked, denied, held-and-approved) plus the
adversarial SQL corpus, fuzzes the gateway with malformed, oversized, mistyped, replayed and
header-trick requests, and injects faults mid-run: the upstream killed and restarted,
PostgreSQL restarted, Redis restarted, one gateway process killed and restarted.

Figures: calls by outcome; p50/p99 latency before, during and after each fault; recovery time
per fault (from the dependency being back to the first good answer); audit records expected
vs found; chain verification; classified cells leaked (answers compared with the raw values
read straight from the emulator); gateway RSS at start and end. The last line is exactly

    soak: <calls> calls, <lost> lost, <leaked> leaked, chain ok      (or: chain broken)

    python bench/soak.py --quick     # 10,000 calls (under 5 minutes)
    python bench/soak.py             # 100,000 calls, 10,000 fuzzed requests, 5,000 adversarial
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROJECT, DATASET, CUSTOMERS = "wardgate-soak", "shop", 300
IDENTITIES, WORKERS = 8, 32
META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "soak", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {}}
PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)), None)
CLASSIFIED = ("full_name", "email", "phone", "ssn", "card_number",
              "CAST(date_of_birth AS STRING)", "street_address", "ip_address")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 60) -> float:
    """Seconds until 127.0.0.1:port accepts a connection."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return time.monotonic() - started
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {timeout}s")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# ------------------------------------------------------------------ the processes


class Postgres:
    """A throwaway cluster of our own (as user postgres when run as root)."""

    def __init__(self, workdir: Path) -> None:
        if PG_BIN is None:
            raise SystemExit("PostgreSQL binaries not found under /usr/lib/postgresql")
        self.port = free_port()
        self.dir = workdir / "pg"
        self.dir.mkdir()
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(self.dir, "postgres")
        self._run("initdb", "-D", str(self.dir / "data"), "-U", "postgres", "--auth=trust",
                  "-E", "UTF8")

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self.as_user, str(PG_BIN / tool), *args], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-l", str(self.dir / "log"), "-w",
                  "-o", f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} "
                        f"-c fsync=off -c max_connections=300", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop")

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/wardgate_soak"


class Child:
    """A restartable child process."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path,
                 port: int) -> None:
        self.name, self.argv, self.env, self.log, self.port = name, argv, env, log, port
        self.proc: subprocess.Popen | None = None

    def start(self) -> float:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.argv, env=self.env, cwd=ROOT, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        return wait_port(self.port, 120)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


async def balance(listen: int, backends: list[int]) -> None:
    """Round-robin TCP load balancer; a backend that refuses is skipped for that connection."""
    turn = itertools.count()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        start = next(turn)
        for i in range(len(backends)):
            port = backends[(start + i) % len(backends)]
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                continue
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
            return
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", listen, backlog=512)
    async with server:
        await server.serve_forever()


# ------------------------------------------------------------------ the stack


@dataclass
class Stack:
    workdir: Path
    env: dict[str, str]
    pg: Postgres
    redis: Child
    upstream: Child
    gateways: list[Child]
    balancer: Child
    emulator: Any
    tokens: list[str] = field(default_factory=list)
    raw: set[str] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.balancer.port}/mcp/demo-bigquery"


def stop_all(started: list[Any]) -> None:
    for thing in reversed(started):
        with contextlib.suppress(Exception):
            thing.stop()


def build_stack(workdir: Path, say: Any, started: list[Any]) -> Stack:
    """Everything started is appended to `started` at once, so a failure half-way can still
    stop it all."""
    pg = Postgres(workdir)
    pg.start()
    started.append(pg)
    subprocess.run([*pg.as_user, str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p",
                    str(pg.port), "-U", "postgres", "wardgate_soak"], check=True)
    redis_port = free_port()
    base_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("WARDGATE_", "DATABASE_URL", "CELERY_", "REDIS_"))}
    redis = Child("redis", ["redis-server", "--port", str(redis_port), "--save", "",
                            "--appendonly", "no"], base_env, workdir / "redis.log", redis_port)
    started.append(redis)
    redis.start()
    env = {**base_env, "DATABASE_URL": pg.url, "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
           "CELERY_BROKER_URL": f"redis://127.0.0.1:{redis_port}/1",
           "WARDGATE_VAR_DIR": str(workdir / "var"), "WARDGATE_FAST_PASSWORD_HASHER": "1",
           "WARDGATE_GATEWAY_MAX_BODY_BYTES": "200000", "WARDGATE_LOG_LEVEL": "ERROR",
           "WARDGATE_INCIDENT_MAX_DENIED": "1000000000",
           # As in production: with DEBUG on, Django keeps the last 9,000 queries of every
           # database connection (several per gateway), which reads as tens of MB of growth.
           "WARDGATE_DEBUG": "0"}
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "wardgate.settings"
    import django

    django.setup()
    from django.core.management import call_command

    from bigquery_mcp.client import make_bigquery_client
    from bigquery_mcp.emulator import BigQueryEmulator
    from bigquery_mcp.seed import seed_demo_dataset

    say("migrating, seeding the emulator ...")
    call_command("migrate", interactive=False, verbosity=0)
    emulator = BigQueryEmulator(PROJECT, workdir)
    started.append(emulator)
    emulator.start()
    client = make_bigquery_client(PROJECT, emulator.endpoint)
    seed_demo_dataset(client, DATASET, customers=CUSTOMERS)
    raw = raw_classified_values(client)
    mcp_port = free_port()
    upstream = Child("bigquery-mcp", [sys.executable, "-m", "bigquery_mcp", "--transport", "http",
                                      "--port", str(mcp_port), "--project", PROJECT,
                                      "--endpoint", emulator.endpoint],
                     env, workdir / "mcp.log", mcp_port)
    started.append(upstream)
    upstream.start()
    tokens = set_up_policy(f"http://127.0.0.1:{mcp_port}/mcp", emulator.endpoint)
    gateways = []
    for i in range(2):
        port = free_port()
        gateways.append(Child(f"gateway-{i}", [
            sys.executable, "-m", "uvicorn", "wardgate.asgi:application", "--port", str(port),
            "--log-level", "error", "--http", "proxy.http_protocol:GuardedH11Protocol",
            "--timeout-keep-alive", "30"], env, workdir / f"gateway-{i}.log", port))
    for gateway in gateways:
        started.append(gateway)
        gateway.start()
    lb_port = free_port()
    balancer = Child("balancer", [sys.executable, str(Path(__file__).resolve()), "--balance",
                                  str(lb_port), *(str(g.port) for g in gateways)],
                     env, workdir / "balancer.log", lb_port)
    started.append(balancer)
    balancer.start()
    return Stack(workdir, env, pg, redis, upstream, gateways, balancer, emulator, tokens, raw)


def raw_classified_values(client: Any) -> set[str]:
    """Every classified value in the emulator, and the encodings an adversary would try."""
    rows = client.query(f"SELECT {', '.join(CLASSIFIED)} FROM `{PROJECT}.{DATASET}.customers`"
                        ).result()
    raw: set[str] = set()
    for row in rows:
        for value in row.values():
            if value is None or len(str(value)) < 5:
                continue
            text = str(value)
            raw |= {text, text.upper(), text.lower(), text[::-1], text.encode().hex(),
                    base64.b64encode(text.encode()).decode()}
    return raw


def set_up_policy(upstream_url: str, bigquery_endpoint: str) -> list[str]:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from portal.services.catalog import tool_catalog_accept, tool_catalog_refresh
    from portal.services.demo import demo_connection_ensure, demo_policy_ensure
    from portal.services.events import SYSTEM
    from portal.services.security import security_revision_bump
    from portal.services.tokens import token_issue

    connection = demo_connection_ensure(upstream_url=upstream_url, bigquery_project=PROJECT,
                                        bigquery_endpoint=bigquery_endpoint, dataset=DATASET)
    role = demo_policy_ensure(connection)
    role.rules = {**role.rules, "approval": [
        {"id": "events", "tables": ["*.shop.events"], "approver_groups": ["approver"]}]}
    role.save()
    security_revision_bump()
    tool_catalog_refresh(connection=connection)
    tool_catalog_accept(connection=connection, by=None, meta=SYSTEM)
    users = get_user_model().objects
    engineers = Group.objects.get_or_create(name="engineer")[0]
    approver = users.create_user(username="soak-approver", password="x-soak-pass-123")
    approver.groups.add(Group.objects.get_or_create(name="approver")[0])
    tokens = []
    for i in range(IDENTITIES):
        user = users.create_user(username=f"soak-{i}", password="x-soak-pass-123")
        user.groups.add(engineers)
        tokens.append(token_issue(user=user, connections=[connection], by=None, meta=SYSTEM)[1])
    return tokens


def approve(approval_id: int) -> None:
    from django.contrib.auth import get_user_model

    from portal.models import QueryApproval
    from portal.services.approvals import query_approval_decide

    query_approval_decide(approval=QueryApproval.objects.get(pk=approval_id),
                          approver=get_user_model().objects.get(username="soak-approver"),
                          approve=True, comment="soak")


# ------------------------------------------------------------------ the work


def adversarial_statements() -> list[str]:
    try:
        from tests.adversarial_corpus import adversarial_statements as corpus
    except ImportError:
        corpus = None
    if corpus is not None:
        return list(corpus(DATASET))
    c = f"{DATASET}.customers"
    built_in = []
    for col in ("email", "phone", "ssn", "card_number", "full_name", "street_address",
                "ip_address"):
        built_in += [
            f"SELECT {col} FROM {c} LIMIT 3",
            f"SELECT LOWER({col}) AS x FROM {c} LIMIT 3",
            f"SELECT CONCAT({col}, '') AS x FROM {c} LIMIT 3",
            f"SELECT REVERSE({col}) AS x FROM {c} LIMIT 3",
            f"SELECT TO_HEX(CAST({col} AS BYTES)) AS x FROM {c} LIMIT 3",
            f"SELECT TO_BASE64(CAST({col} AS BYTES)) AS x FROM {c} LIMIT 3",
            f"WITH t AS (SELECT {col} AS v FROM {c}) SELECT v FROM t LIMIT 3",
            f"SELECT (SELECT {col} FROM {c} LIMIT 1) AS x",
            f"SELECT STRING_AGG({col}, '|') AS x FROM {c} WHERE customer_id <= 3",
            f"SELECT TO_JSON_STRING(t) AS x FROM {c} AS t LIMIT 2",
            f"SELECT * FROM {c} LIMIT 2",
            f"SELECT x FROM (SELECT {col} AS x FROM {c} UNION ALL SELECT 'a') LIMIT 3",
        ]
    return built_in


def call_mix(rng: random.Random, n: int) -> tuple[str, str]:
    """(kind, sql) for call number n."""
    k = n % 200 + 1
    roll = rng.random()
    if roll < 0.50:
        return "allowed", (f"SELECT order_id, amount, status FROM {DATASET}.orders "
                           f"WHERE customer_id = {k} ORDER BY order_id LIMIT 3")
    if roll < 0.80:
        return "masked", (f"SELECT customer_id, full_name, email, phone, ssn, card_number "
                          f"FROM {DATASET}.customers WHERE customer_id = {k}")
    if roll < 0.97:
        return "denied", rng.choice([
            f"DELETE FROM {DATASET}.orders WHERE order_id = {k}",
            f"SELECT * FROM secret.payroll WHERE id = {k}",
            f"INSERT INTO {DATASET}.orders (order_id) VALUES ({k})",
        ])
    return "held", (f"SELECT event_id, event_type FROM {DATASET}.events "
                    f"WHERE event_id = {k}")


@dataclass
class Result:
    started: float
    latency: float
    kind: str
    outcome: str
    user_agent: str
    recorded: bool  # the gateway's pipeline answered, so an audit record must exist


def classify(status: int, answer: Any) -> tuple[str, bool]:
    """(outcome, must have an audit record)."""
    if not isinstance(answer, dict):
        return (f"http_{status}", False)
    error = answer.get("error")
    if error:
        data = error.get("data") or {}
        reason = str(data.get("reason", ""))
        if status == 503 and reason in ("audit.unavailable", "database.unavailable"):
            return f"failed_closed.{reason.split('.')[0]}", False
        if status == 429:
            return "limited", True
        return (f"error.{reason or error.get('code')}", bool(data.get("request_id")))
    result = answer.get("result") or {}
    if result.get("isError"):
        decision = (result.get("_meta") or {}).get("io.wardgate/decision") or {}
        rules = [r.get("rule", "") for r in decision.get("reasons") or []]
        if "approval.required" in rules or decision.get("status") == "pending":
            return "held", True
        if any(r.startswith("upstream.") for r in rules):
            return f"failed_closed.{rules[0]}", True
        return f"denied ({', '.join(sorted(set(rules))) or 'no rule'})", True
    return "ok", True


LEAK_SPLIT = re.compile(r"[\s,|;\"'\[\]{}()]+")


def _leaks(text: str, raw: set[str]) -> bool:
    """The cell is a raw value, or carries one among its words (e.g. a JSON text)."""
    return text in raw or (len(text) > 8 and any(
        word in raw for word in LEAK_SPLIT.split(text) if len(word) >= 5))


def leaked_cells(answer: Any, raw: set[str]) -> int:
    found = 0
    stack = [answer]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and _leaks(item, raw):
            found += 1
    return found


class Soak:
    def __init__(self, stack: Stack, calls: int, adversarial: int, fuzz: int, seed: int,
                 faults: bool = True) -> None:
        self.inject = faults
        self.warm_rss: dict[str, float] = {}
        self.rss_trail: dict[str, list[tuple[int, float]]] = {}  # gateway -> (calls, MB) each tenth
        self.stack, self.target, self.adversarial, self.fuzz = stack, calls, adversarial, fuzz
        self.rng = random.Random(seed)
        self.issued = 0
        self.results: list[Result] = []
        self.fuzz_results: list[tuple[str, int, bool, str]] = []
        self.leaked = 0
        self.faults: list[dict[str, Any]] = []
        self.approvals = 0
        self.corpus = adversarial_statements()

    def next_call(self) -> tuple[int, str, str] | None:
        if self.issued >= self.target:
            return None
        n = self.issued
        self.issued += 1
        if n and n % max(1, self.target // 10) == 0:
            print(f"  ... {n} calls issued", flush=True)
            now = {g.name: rss_mb(g.proc.pid) for g in self.stack.gateways
                   if g.proc and g.proc.poll() is None}
            for name, mb in now.items():
                self.rss_trail.setdefault(name, []).append((n, mb))
            if n == self.target // 10:  # caches warm, no fault yet: the baseline for RSS
                self.warm_rss = now
        if n % max(1, self.target // max(1, self.adversarial)) == 0 and self.adversarial:
            return n, "adversarial", self.corpus[n % len(self.corpus)]
        kind, sql = call_mix(self.rng, n)
        return n, kind, sql

    async def post(self, http: Any, token: str, payload: Any, ua: str,
                   extra: dict[str, str] | None = None) -> tuple[int, Any]:
        headers = {"authorization": f"Bearer {token}", "content-type": "application/json",
                   "accept": "application/json, text/event-stream", "user-agent": ua,
                   "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call",
                   "mcp-name": "execute_sql", **(extra or {})}
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        response = await http.post(self.stack.url, content=body, headers=headers, timeout=90)
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, None

    async def one_call(self, http: Any, token: str, n: int, kind: str, sql: str) -> None:
        ua = f"soak-call-{n}"
        payload = {"jsonrpc": "2.0", "id": n, "method": "tools/call",
                   "params": {"name": "execute_sql", "arguments": {"sql": sql}, "_meta": META}}
        started = time.monotonic()
        try:
            status, answer = await self.post(http, token, payload, ua)
            outcome, recorded = classify(status, answer)
        except Exception as exc:  # noqa: BLE001 - a transport failure is a figure too
            status, answer, outcome, recorded = 0, None, f"transport.{type(exc).__name__}", False
        if kind == "held" and outcome == "held":
            self.results.append(Result(started, time.monotonic() - started, kind, outcome, ua,
                                       recorded))
            approval = answer["result"]["_meta"]["io.wardgate/approval"]["approval_id"]
            from proxy.db import run_db

            try:
                await run_db(approve, approval)
                self.approvals += 1
            except Exception:  # noqa: BLE001 - the database may be restarting right now
                return
            ua = f"soak-call-{n}-approved"
            started = time.monotonic()
            try:
                status, answer = await self.post(http, token, payload, ua)
                outcome, recorded = classify(status, answer)
            except Exception as exc:  # noqa: BLE001
                status, answer, outcome, recorded = 0, None, f"transport.{type(exc).__name__}", False
            kind = "approved"
        if answer is not None:
            self.leaked += leaked_cells(answer, self.stack.raw)
        self.results.append(Result(started, time.monotonic() - started, kind, outcome, ua,
                                   recorded))

    async def worker(self, http: Any, token: str) -> None:
        while (job := self.next_call()) is not None:
            await self.one_call(http, token, *job)

    async def run(self) -> None:
        import httpx

        limits = httpx.Limits(max_connections=WORKERS + 8, max_keepalive_connections=WORKERS)
        async with httpx.AsyncClient(limits=limits) as http:
            faults = asyncio.create_task(self.inject_faults())
            fuzz = asyncio.create_task(self.fuzzer())
            await asyncio.gather(*(self.worker(http, self.stack.tokens[i % IDENTITIES])
                                   for i in range(WORKERS)))
            await faults
            await fuzz

    # ------------------------------------------------------------ faults

    async def inject_faults(self) -> None:
        plan = [(0.2, "upstream killed", self.stack.upstream.kill, self.stack.upstream.start),
                (0.4, "PostgreSQL restarted", self.stack.pg.stop, self._pg_start),
                (0.6, "Redis restarted", self.stack.redis.kill, self.stack.redis.start),
                (0.8, "gateway process killed", self.stack.gateways[0].kill,
                 self.stack.gateways[0].start)]
        for at, name, down, up in plan if self.inject else []:
            while self.issued < self.target * at:
                await asyncio.sleep(0.05)
            fault = {"name": name, "at": time.monotonic()}
            await asyncio.to_thread(down)
            await asyncio.sleep(3)  # the dependency stays away this long
            await asyncio.to_thread(up)
            fault["back"] = time.monotonic()
            self.faults.append(fault)

    def _pg_start(self) -> None:
        self.stack.pg.start()

    # ------------------------------------------------------------ fuzzing

    async def fuzzer(self) -> None:
        import httpx

        rng = random.Random(7)
        token = self.stack.tokens[0]
        cases = fuzz_cases(token)
        per_call = max(1, self.target // max(1, self.fuzz))
        async with httpx.AsyncClient() as http:
            for i in range(self.fuzz):
                while self.issued < i * per_call and self.issued < self.target:
                    await asyncio.sleep(0.01)
                name, method, headers, body = rng.choice(cases)(rng)
                ua = f"soak-fuzz-{i}"
                try:
                    response = await http.request(
                        method, self.stack.url, content=body, timeout=30,
                        headers={"user-agent": ua, **headers})
                    status = response.status_code
                    try:
                        data = response.json()
                    except ValueError:
                        data = None
                    recorded = isinstance(data, dict) and bool(
                        ((data.get("error") or {}).get("data") or {}).get("request_id")) \
                        and status != 503
                except Exception:  # noqa: BLE001
                    status, recorded = 0, False
                self.fuzz_results.append((name, status, recorded, ua))


def fuzz_cases(token: str) -> list[Any]:
    auth = {"authorization": f"Bearer {token}", "content-type": "application/json",
            "accept": "application/json, text/event-stream",
            "mcp-protocol-version": "2026-07-28"}

    # What a valid 2026-07-28 call carries besides the body: each case below breaks one thing.
    call_headers = {**auth, "mcp-method": "tools/call", "mcp-name": "execute_sql"}

    def call(rng: random.Random, modern: bool = True, **params: Any) -> bytes:
        envelope = {"_meta": META} if modern else {}
        return json.dumps({"jsonrpc": "2.0", "id": rng.randrange(10**6), "method": "tools/call",
                           "params": {"name": "execute_sql", **envelope, **params}}).encode()

    return [
        lambda r: ("malformed_json", "POST", auth, bytes(r.randrange(256) for _ in range(r.randrange(1, 400)))),
        lambda r: ("truncated_json", "POST", auth, call(r, arguments={"sql": "SELECT 1"})[:r.randrange(1, 60)]),
        lambda r: ("oversized", "POST", auth, b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"x":"' + b"a" * 250_000 + b'"}}'),
        lambda r: ("batch", "POST", auth, b'[{"jsonrpc":"2.0","id":1,"method":"ping"}]'),
        lambda r: ("wrong_types", "POST", auth, json.dumps(r.choice([
            {"jsonrpc": "2.0", "id": {"a": 1}, "method": "tools/call"},
            {"jsonrpc": "2.0", "id": 1, "method": 42},
            {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": [1, 2]},
            {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
             "params": {"name": 7, "arguments": "x"}},
            {"jsonrpc": "2.0", "id": True, "method": "tools/call"},
            {"jsonrpc": "1.0", "id": 1, "method": "tools/list"}])).encode()),
        lambda r: ("bad_sql_argument", "POST", call_headers,
                   call(r, arguments={"sql": r.choice([None, 5, ["SELECT 1"], "", "SELECT" * 20_000])})),
        lambda r: ("replayed_session", "POST", {**auth, "mcp-session-id": r.choice(["deadbeef" * 4, "0" * 32, "../../etc"]), "mcp-protocol-version": "2025-06-18"},
                   call(r, modern=False, arguments={"sql": "SELECT 1"})),
        lambda r: ("bad_host", "POST", {**call_headers, "host": "evil.example"}, call(r, arguments={"sql": "SELECT 1"})),
        lambda r: ("bad_origin", "POST", {**call_headers, "origin": "http://evil.example"}, call(r, arguments={"sql": "SELECT 1"})),
        lambda r: ("header_mismatch", "POST", {**auth, "mcp-method": "tools/list", "mcp-name": "other_tool"},
                   call(r, arguments={"sql": "SELECT 1"})),
        lambda r: ("missing_header", "POST", auth, call(r, arguments={"sql": "SELECT 1"})),
        lambda r: ("no_auth", "POST", {k: v for k, v in call_headers.items() if k != "authorization"}, call(r)),
        lambda r: ("bad_token", "POST", {**call_headers, "authorization": "Bearer wgp_" + "x" * r.randrange(1, 80)}, call(r)),
        lambda r: ("wrong_method", r.choice(["PUT", "PATCH"]), auth, b"{}"),
        lambda r: ("huge_header", "POST", {**call_headers, "x-junk": "j" * r.choice([100, 9000])},
                   call(r, arguments={"sql": "SELECT 1"})),
        lambda r: ("unknown_tool", "POST", {**call_headers, "mcp-name": "drop_everything"}, json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "drop_everything", "_meta": META}}).encode()),
    ]


# ------------------------------------------------------------------ figures


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def report(soak: Soak, rss: dict[str, tuple[float, float, float]], cpu: dict[str, float],
           elapsed: float, say: Any) -> tuple[int, int, bool]:
    from django.db import connections

    from audit.models import AuditRecord
    from audit.verify import verify_chain

    connections.close_all()  # the database was restarted under this process's connection
    results = soak.results
    calls = len(results)
    say(f"\n== {calls} tool calls in {elapsed:.0f} s ({calls / elapsed:.0f}/s), "
        f"{WORKERS} concurrent clients, {IDENTITIES} identities ==")
    by = Counter((r.kind, r.outcome) for r in results)
    say("calls by kind and outcome:")
    for (kind, outcome), n in sorted(by.items()):
        say(f"  {kind:<12} {outcome:<32} {n}")
    say(f"  held calls approved in the portal service: {soak.approvals}")
    say("latency (ms) and recovery, per fault:")
    for fault in soak.faults:
        windows = {
            "before": [r.latency for r in results if fault["at"] - 10 <= r.started < fault["at"]],
            "during": [r.latency for r in results if fault["at"] <= r.started < fault["back"]],
            "after": [r.latency for r in results if fault["back"] <= r.started < fault["back"] + 10],
        }
        good_after = [r.started + r.latency for r in results
                      if r.started >= fault["back"] and r.outcome == "ok"]
        recovery = (min(good_after) - fault["back"]) if good_after else float("nan")
        figures = "  ".join(f"{k} p50 {pct(v, .5):.0f} p99 {pct(v, .99):.0f} (n={len(v)})"
                            for k, v in windows.items())
        say(f"  {fault['name']:<24} {figures}  recovered in {recovery:.2f} s")
    fuzz_by = Counter((name, status) for name, status, _, _ in soak.fuzz_results)
    say(f"fuzzed requests: {len(soak.fuzz_results)}")
    for (name, status), n in sorted(fuzz_by.items()):
        say(f"  {name:<20} HTTP {status:<4} {n}")
    fuzz_5xx = sum(n for (_, status), n in fuzz_by.items() if status >= 500 and status != 503)
    say(f"  5xx other than 503 (database or audit unavailable during the PostgreSQL restart): "
        f"{fuzz_5xx}")

    expected = {r.user_agent for r in results if r.recorded} | {
        ua for _, _, recorded, ua in soak.fuzz_results if recorded}
    found = set(AuditRecord.objects.filter(user_agent__startswith="soak-")
                .values_list("user_agent", flat=True).distinct())
    lost = len(expected - found)
    total = AuditRecord.objects.count()
    say(f"audit: {len(expected)} answered calls and requests expected a record, "
        f"{len(expected & found)} found, {lost} lost; {total} records in all")
    chain = verify_chain()
    say(f"chain: {'ok' if chain.ok else 'BROKEN'} ({chain.records_checked} records checked)")
    say(f"classified cells leaked: {soak.leaked} "
        f"(answers compared with {len(soak.stack.raw)} raw values and encodings)")
    for name, (start, warm, end) in rss.items():
        line = f"RSS {name}: {start:.0f} MB at start, {end:.0f} MB at end " \
               f"({(end - start) / start * 100:+.1f} %)"
        if warm:
            line += f"; {warm:.0f} MB after the first 10 % of calls (caches filled), " \
                    f"{(end - warm) / warm * 100:+.1f} % since"
        say(line)
    for name, trail in sorted(soak.rss_trail.items()):
        say(f"RSS {name} by tenth of the run (calls: MB): " +
            ", ".join(f"{n}: {mb:.0f}" for n, mb in trail))
    say("CPU seconds (process itself, children excluded; the busiest bounds the rate): " +
        ", ".join(f"{name} {seconds:.0f}" for name, seconds in sorted(cpu.items())))
    return lost, soak.leaked, chain.ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10,000 calls (under 5 minutes)")
    parser.add_argument("--calls", type=int, help="tool calls (default 100,000; quick 10,000)")
    parser.add_argument("--seed", type=int, default=20261129)
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    parser.add_argument("--no-faults", action="store_true", help="load and fuzzing only")
    parser.add_argument("--balance", nargs="+", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.balance:
        asyncio.run(balance(args.balance[0], args.balance[1:]))
        return 0
    calls = args.calls or (10_000 if args.quick else 100_000)
    adversarial, fuzz = (calls // 20, calls // 10)

    def say(line: str) -> None:
        print(line, flush=True)

    # SIGTERM stops the run as Ctrl-C does: the finally below stops every child we started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = Path(tempfile.mkdtemp(prefix="wardgate-soak-"))
    os.chmod(workdir, 0o755)
    started = time.monotonic()
    running: list[Any] = []
    try:
        stack = build_stack(workdir, say, running)
        say(f"stack up in {time.monotonic() - started:.0f} s (work dir {workdir}); "
            f"{calls} calls, {adversarial} adversarial, {fuzz} fuzzed ...")
        soak = Soak(stack, calls, adversarial, fuzz, args.seed, faults=not args.no_faults)
        pids = {g.name: g.proc.pid for g in stack.gateways if g.proc}
        start_rss = {name: rss_mb(pid) for name, pid in pids.items()}
        run_started = time.monotonic()
        asyncio.run(soak.run())
        elapsed = time.monotonic() - run_started
        rss = {}
        for gateway in stack.gateways:
            name = gateway.name
            now = rss_mb(gateway.proc.pid) if gateway.proc else 0.0
            if gateway.proc and gateway.proc.pid == pids[name]:
                rss[name] = (start_rss[name], soak.warm_rss.get(name, 0.0), now)
            elif gateway.proc:
                rss[f"{name} (killed and restarted)"] = (start_rss[name], 0.0, now)
        cpu = {c.name: cpu_seconds(c.proc.pid) for c in (*stack.gateways, stack.upstream)
               if c.proc and c.proc.poll() is None}
        if stack.emulator.process is not None:
            cpu["emulator"] = cpu_seconds(stack.emulator.process.pid)
        lost, leaked, chain_ok = report(soak, rss, cpu, elapsed, say)
    finally:
        stop_all(running)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"soak: {len(soak.results)} calls, {lost} lost, {leaked} leaked, "
          f"chain {'ok' if chain_ok else 'broken'}", flush=True)
    return 0 if (lost == 0 and leaked == 0 and chain_ok) else 1


if __name__ == "__main__":
    sys.exit(main())
