"""The real stage list (proxy.stages.default_stages) over the in-memory store: each stage's
refusal, in order, with the services the gateway really uses (authenticator, connection
directory, access cache, live registry, admission). No database, emulator or server."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from proxy import stages
from proxy.access import AccessCache
from proxy.admission import Admission, AdmissionLimits
from proxy.authenticate import Authenticator
from proxy.call import Call
from proxy.context import CallContext
from proxy.directory import ConnectionDirectory
from proxy.live import LiveRegistry
from tests.proxy.store_memory import MemoryGatewayStore, MemoryUser

TOKEN = "wgp_" + "s" * 40
READER = {"tools": ["execute_sql"], "sql": {"allowed_tables": ["*.shop.orders"]}}
LIST_TOOLS = b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}'


def _bearer() -> dict[str, str]:
    return {"authorization": f"Bearer {TOKEN}"}


class Gateway:
    """The stage list wired as the pipeline wires it, on one store."""

    def __init__(self, store: MemoryGatewayStore, limits: AdmissionLimits | None = None) -> None:
        self.upstreams: list[Any] = []

        async def upstream_for(spec: Any) -> Any:
            self.upstreams.append(spec.slug)
            return "upstream"

        self.live = LiveRegistry(store)
        self.stages = stages.default_stages(
            authenticator=Authenticator(store, None),
            directory=ConnectionDirectory(store, 30.0),
            access=AccessCache(store, b"k" * 32),
            live=self.live, admission=Admission(limits or AdmissionLimits()),
            upstream_for=upstream_for)

    async def run(self, slug: str = "demo", headers: dict[str, str] | None = None,
                  body: bytes = LIST_TOOLS) -> tuple[Any, Call]:
        async def never(*_: Any) -> Any:
            raise AssertionError("stages do not talk to the client")

        call = Call(CallContext(slug, "127.0.0.1", "stage-test", "", ""),
                    _bearer() if headers is None else headers, "POST", body, never, never)
        with call.exits:
            verdict = await stages.run_stages(self.stages, call)
        return verdict, call


def _setup(store: MemoryGatewayStore, **user: Any) -> tuple[MemoryUser, int]:
    ana = store.add_user("ana", groups={"engineer"}, **user)
    connection = store.add_connection("demo")
    store.add_token(hashlib.sha256(TOKEN.encode()).hexdigest(), ana,
                    connection_ids=frozenset({connection.connection_id}))
    return ana, connection.connection_id


async def test_a_granted_caller_passes_every_stage(store: MemoryGatewayStore) -> None:
    ana, connection_id = _setup(store)
    store.grant("reader", READER, connection_id, user_id=ana.user_id)
    gateway = Gateway(store)
    verdict, call = await gateway.run()
    assert verdict is None
    assert call.ctx.actor == "ana" and call.plan is not None and call.plan.roles
    assert call.ctx.jsonrpc_method == "tools/list" and gateway.upstreams == ["demo"]


@pytest.mark.parametrize(("arrange", "status", "rule"), [
    # Deny by default: a known caller on a known connection, but no grant.
    (lambda store, ana, cid: None, 403, "access.no_grant"),
    # A grant to someone else, or to another connection, gives nothing.
    (lambda store, ana, cid: store.grant("reader", READER, cid, user_id=ana.user_id + 99),
     403, "access.no_grant"),
    (lambda store, ana, cid: store.grant("reader", READER, cid + 1000, user_id=ana.user_id),
     403, "access.no_grant"),
    # An expired or revoked grant gives nothing.
    (lambda store, ana, cid: store.grant("reader", READER, cid, user_id=ana.user_id,
                                         revoked=True), 403, "access.no_grant"),
    (lambda store, ana, cid: store.grant("reader", READER, cid, user_id=ana.user_id,
                                         expires_at=1.0), 403, "access.no_grant"),
    # A quarantined connection is refused even with a grant.
    (lambda store, ana, cid: (store.grant("reader", READER, cid, user_id=ana.user_id),
                              store.quarantined_connections.add(cid)),
     403, "connection.quarantined"),
])
async def test_each_refusal_stops_the_call_before_the_upstream(
        store: MemoryGatewayStore, arrange: Any, status: int, rule: str) -> None:
    ana, connection_id = _setup(store)
    arrange(store, ana, connection_id)
    gateway = Gateway(store)
    verdict, call = await gateway.run()
    assert verdict is not None and (verdict.status, verdict.reason.rule) == (status, rule)
    assert gateway.upstreams == [] and call.message is None


@pytest.mark.parametrize(("user", "token", "rule"), [
    ({"active": False}, {}, "auth.account_disabled"),
    ({"quarantined": True}, {}, "auth.quarantined"),
])
async def test_a_refused_identity_is_a_401_that_names_its_owner(
        store: MemoryGatewayStore, user: dict, token: dict, rule: str) -> None:
    ana, connection_id = _setup(store, **user)
    store.grant("reader", READER, connection_id, user_id=ana.user_id)
    verdict, call = await Gateway(store).run()
    assert verdict is not None and (verdict.status, verdict.reason.rule) == (401, rule)
    assert call.ctx.refused_owner == "ana"


async def test_an_unknown_connection_is_a_404_and_no_token_is_a_401(
        store: MemoryGatewayStore) -> None:
    ana, connection_id = _setup(store)
    store.grant("reader", READER, connection_id, user_id=ana.user_id)
    gateway = Gateway(store)
    verdict, _ = await gateway.run(slug="nope")
    assert verdict is not None and verdict.status == 404
    verdict, _ = await gateway.run(headers={})
    assert verdict is not None and (verdict.status, verdict.reason.rule) == \
        (401, "auth.missing_token")
    assert gateway.upstreams == []


async def test_a_token_scoped_to_another_connection_is_refused(
        store: MemoryGatewayStore) -> None:
    ana = store.add_user("ana")
    demo = store.add_connection("demo")
    other = store.add_connection("other")
    store.add_token(hashlib.sha256(TOKEN.encode()).hexdigest(), ana,
                    connection_ids=frozenset({other.connection_id}))
    store.grant("reader", READER, demo.connection_id, user_id=ana.user_id)
    verdict, _ = await Gateway(store).run()
    assert verdict is not None and verdict.status == 403
    assert verdict.reason.rule.startswith("token.")


async def test_admission_refuses_past_the_per_identity_cap_with_retry_after(
        store: MemoryGatewayStore) -> None:
    ana, connection_id = _setup(store)
    store.grant("reader", READER, connection_id, user_id=ana.user_id)
    gateway = Gateway(store, AdmissionLimits(max_requests=1))

    async def never(*_: Any) -> Any:
        raise AssertionError

    held = Call(CallContext("demo", "127.0.0.1", "a", "", ""), _bearer(), "POST", LIST_TOOLS,
                never, never)
    with held.exits:  # the first call is still in flight while the second arrives
        assert await stages.run_stages(gateway.stages, held) is None
        verdict, _ = await gateway.run()
    assert verdict is not None and verdict.status == 429 and "retry-after" in verdict.headers
    verdict, _ = await gateway.run()  # the slot was released with the first call
    assert verdict is None
