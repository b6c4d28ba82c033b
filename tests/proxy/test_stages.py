"""The stage list on its own: its order, and that a stage's verdict ends the run. Fakes stand
in for the services; no database, emulator or server."""

from __future__ import annotations

import re
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import pytest

from policy.roles import AccessPlan
from proxy import jsonrpc, stages
from proxy.authenticate import AuthFailure
from proxy.call import Call
from proxy.context import CallContext, Identity
from proxy.verdict import Reason, Verdict

EXPECTED_ORDER = ["authenticate", "connection", "token_scope", "grant", "session", "admission",
                  "live", "upstream", "parse"]
ALICE = Identity(user_id=7, username="alice", groups=(), auth_method="oidc")


class FakeAuthenticator:
    def __init__(self, failure: AuthFailure | None = None) -> None:
        self.failure = failure

    async def authenticate(self, headers: dict[str, str]) -> Identity:
        if self.failure is not None:
            raise self.failure
        return ALICE


class FakeDirectory:
    def __init__(self, spec: Any) -> None:
        self.spec = spec

    async def get(self, slug: str) -> Any:
        return self.spec


class FakeAccess:
    def __init__(self, plan: AccessPlan) -> None:
        self.plan = plan

    async def plan_for(self, user_id: int, groups: tuple[str, ...], connection_id: int) -> Any:
        return self.plan


class FakeLive:
    def __init__(self) -> None:
        self.tracking: list[str] = []

    async def session_owner(self, key: str) -> Any:
        return None

    @contextmanager
    def track(self, identity: Identity, connection_id: int, session_key: str):  # type: ignore[no-untyped-def]
        self.tracking.append("in")
        try:
            yield
        finally:
            self.tracking.append("out")


class FakeAdmission:
    def __init__(self) -> None:
        self.events: list[str] = []

    def enter(self, user: int, connection_id: int, kind: str) -> None:
        self.events.append(f"enter {kind}")

    def leave(self, user: int, connection_id: int, kind: str) -> None:
        self.events.append(f"leave {kind}")

    def session_seen(self, key: str, user: int) -> None:
        self.events.append("seen")


def build(*, failure: AuthFailure | None = None, roles: tuple[Any, ...] = ("reader",),
          spec: Any = None) -> tuple[list[stages.Stage], FakeAdmission, FakeLive, list[Any]]:
    admission, live, upstreams = FakeAdmission(), FakeLive(), []
    spec = spec or SimpleNamespace(connection_id=1, quarantined=False)

    async def upstream_for(s: Any) -> Any:
        upstreams.append(s)
        return "upstream"

    built = stages.default_stages(
        authenticator=FakeAuthenticator(failure),  # type: ignore[arg-type]
        directory=FakeDirectory(spec),  # type: ignore[arg-type]
        access=FakeAccess(AccessPlan(roles=roles)),  # type: ignore[arg-type]
        live=live,  # type: ignore[arg-type]
        admission=admission,  # type: ignore[arg-type]
        upstream_for=upstream_for)
    return built, admission, live, upstreams


def new_call(body: bytes = b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}',
             method: str = "POST") -> Call:
    async def never(*_: Any) -> Any:
        raise AssertionError("stages do not do I/O with the client")

    ctx = CallContext("demo", "127.0.0.1", "test", "", "")
    return Call(ctx, {}, method, body, never, never)


def test_the_stages_run_in_the_documented_order() -> None:
    built, *_ = build()
    assert [s.name for s in built] == EXPECTED_ORDER
    # The table in proxy.stages' docstring lists the same stages, numbered in the same order.
    table = re.findall(r"^\s+(\d+) (\w+)\s", stages.__doc__ or "", re.MULTILINE)
    assert [(int(n), name) for n, name in table][:len(EXPECTED_ORDER)] == \
        list(enumerate(EXPECTED_ORDER, start=1))
    assert [name for _, name in table][len(EXPECTED_ORDER):] == list(stages.HANDLER_STEPS)


async def test_a_call_that_passes_every_stage_is_parsed_and_holds_its_slot() -> None:
    built, admission, live, upstreams = build()
    call = new_call()
    with call.exits:
        assert await stages.run_stages(built, call) is None
        assert call.upstream == "upstream" and call.plan is not None and call.kind == "request"
        assert call.ctx.jsonrpc_method == "tools/list" and call.ctx.jsonrpc_id == 1
        assert call.ctx.auth_method == "oidc"
        assert admission.events == ["enter request", "seen"] and live.tracking == ["in"]
    # Released in reverse order once the call is done.
    assert live.tracking == ["in", "out"] and admission.events[-1] == "leave request"
    assert len(upstreams) == 1


async def test_a_denying_stage_short_circuits_the_rest() -> None:
    built, admission, live, upstreams = build(roles=())
    call = new_call()
    with call.exits:
        verdict = await stages.run_stages(built, call)
    assert verdict is not None and verdict.decision == "deny"
    assert (verdict.status, verdict.reason.rule) == (403, "access.no_grant")
    assert admission.events == [] and live.tracking == [] and upstreams == []
    assert call.message is None


async def test_authentication_failure_is_a_401_with_a_challenge() -> None:
    failure = AuthFailure("token.expired", "Token expired", "personal_token", owner="bob",
                          token_id=3)
    built, _, _, upstreams = build(failure=failure)
    call = new_call()
    verdict = await stages.run_stages(built, call)
    assert verdict is not None and verdict.status == 401
    assert 'error_description="token.expired"' in verdict.headers["www-authenticate"]
    assert (call.ctx.refused_owner, call.ctx.detail) == ("bob", {"token_id": 3})
    assert upstreams == []


async def test_a_quarantined_connection_is_refused_before_any_grant_lookup() -> None:
    built, *_ = build(spec=SimpleNamespace(connection_id=1, quarantined=True))
    verdict = await stages.run_stages(built, new_call())
    assert verdict is not None and verdict.reason.rule == "connection.quarantined"


@pytest.mark.parametrize(("body", "rule", "code"), [
    (b"{not json", "request.malformed_json", jsonrpc.PARSE_ERROR),
    (b"[]", "request.batch", jsonrpc.INVALID_REQUEST),
    (b'{"jsonrpc":"2.0","method":"tools/call"}', "request.missing_id", jsonrpc.INVALID_REQUEST),
])
async def test_a_bad_message_is_refused_by_the_parse_stage(body: bytes, rule: str,
                                                           code: int) -> None:
    built, admission, *_ = build()
    call = new_call(body)
    with call.exits:
        verdict = await stages.run_stages(built, call)
    assert verdict is not None and (verdict.status, verdict.reason.rule, verdict.code) == \
        (400, rule, code)
    assert call.ctx.detail["body_bytes"] == len(body)
    assert admission.events[-1] == "leave request"  # the slot taken before parse is released


async def test_get_and_delete_carry_no_message() -> None:
    for method in ("GET", "DELETE"):
        built, admission, *_ = build()
        call = new_call(b"", method)
        with call.exits:
            assert await stages.run_stages(built, call) is None
        assert call.message is None
        assert admission.events[0] == ("enter stream" if method == "GET" else "enter request")


def test_a_verdict_settles_the_context_once() -> None:
    ctx = CallContext("demo", "", "", "", "")
    ctx.settle(Verdict.deny(Reason("sql.table", "Not allowed", table="t")))
    assert ctx.decision == "deny"
    assert ctx.reasons == [{"rule": "sql.table", "message": "Not allowed", "table": "t"}]
    ctx.settle(Verdict.allow())
    assert (ctx.decision, ctx.reasons) == ("allow", [])


def test_jsonrpc_error_envelope() -> None:
    assert jsonrpc.error(1, -32001, "no") == {"jsonrpc": "2.0", "id": 1,
                                              "error": {"code": -32001, "message": "no"}}
    assert jsonrpc.error(None, -32603, "x", {"reason": "r"})["error"]["data"] == {"reason": "r"}
