"""JSON-RPC 2.0 for the gateway: every envelope it builds (errors, results, notifications) and
the one parser for what clients send. Error codes follow the MCP convention: -32001 for a policy
refusal, -32603 for the gateway's own failures."""

from __future__ import annotations

import json
from typing import Any

from mcp.shared.inbound import NAME_BEARING_METHODS, decode_header_value
from mcp_types import PROTOCOL_VERSION_META_KEY
from mcp_types.jsonrpc import HEADER_MISMATCH  # -32020: a routing header missing or wrong

from policy import json_codec

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
POLICY_DENIED = -32001
GATEWAY_ERROR = -32603


class BadMessage(Exception):
    """A client message the gateway refuses to police (400); `reason` is the audit rule."""

    def __init__(self, reason: str, message: str, code: int = INVALID_REQUEST,
                 method: str = "") -> None:
        super().__init__(message)
        self.reason, self.message, self.code, self.method = reason, message, code, method


def error(id_: Any, code: int, message: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
    """A JSON-RPC error response; `data` is left out when None."""
    body: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        body["data"] = data
    return {"jsonrpc": "2.0", "id": id_, "error": body}


def result(id_: Any, value: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id_, "result": value}


def notification(method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "params": params}


def refusal_data(reason: str, request_id: str) -> dict[str, str]:
    """The `data` of an error the gateway itself answers: the rule and the audit request id."""
    return {"reason": reason, "request_id": request_id}


def tool_error_result(protocol_version: str, text: str, data: dict[str, Any]) -> dict[str, Any]:
    """A CallToolResult with isError, so the model sees why (the MCP way to report tool
    failures); shaped for the protocol revision the client speaks."""
    value: dict[str, Any] = {"content": [{"type": "text", "text": text}], "isError": True,
                             "_meta": {"io.wardgate/decision": data}}
    if protocol_version >= "2026-07-28":
        value["resultType"] = "complete"
    return value


def tool_error_in_place_of(result: Any, text: str) -> dict[str, Any]:
    """A CallToolResult with isError saying ``text``, in place of the upstream's ``result``:
    its envelope fields are kept (2026-07-28 needs resultType), nothing else of it."""
    out: dict[str, Any] = {"content": [{"type": "text", "text": text}], "isError": True}
    for key in ("_meta", "resultType"):
        if isinstance(result, dict) and key in result:
            out[key] = result[key]
    return out


def dumps(payload: Any) -> bytes:
    """json.dumps with its default separators (these bodies have always left spaced)."""
    return json.dumps(payload).encode()


def dumps_compact(payload: Any, *, ensure_ascii: bool = True) -> bytes:
    return json_codec.dumps_compact(payload, ensure_ascii=ensure_ascii)


def loads_or_none(raw: str | bytes) -> Any:
    try:
        return json_codec.loads(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None


def _unambiguous_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose keys are distinct even ignoring case. Two keys that repeat, or differ
    only in case, read differently to different parsers: Python keeps the last of equal keys,
    some parsers the first, and Go's encoding/json (MCP servers written in Go) matches struct
    fields ignoring case, so `{"sql": "SELECT 1", "SQL": "..."}` would be policed as one
    statement and run as the other. The forwarded body is the one the client sent: refused."""
    found = dict(pairs)
    if len(found) != len(pairs) or len({key.casefold() for key in found}) != len(found):
        raise BadMessage("request.ambiguous_keys",
                         "Invalid Request: an object repeats a key, or has keys that differ only "
                         "in case; send each key once")
    return found


def parse_message(body: bytes) -> tuple[dict[str, Any], str]:
    """One JSON-RPC 2.0 message and its kind: request, notification or response. Objects with
    repeated or case-colliding keys are refused (`_unambiguous_object`)."""
    try:
        message = json.loads(body, object_pairs_hook=_unambiguous_object)
    except (ValueError, UnicodeDecodeError):
        raise BadMessage("request.malformed_json", "Parse error: the body is not JSON",
                         PARSE_ERROR) from None
    except RecursionError:  # e.g. 100,000 nested arrays: refused, never a crash
        raise BadMessage("request.too_deep", "Parse error: the body is nested too deeply",
                         PARSE_ERROR) from None
    if isinstance(message, list):
        raise BadMessage("request.batch", "JSON-RPC batches are not accepted; send one message")
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        raise BadMessage("request.not_jsonrpc", "Invalid Request: not a JSON-RPC 2.0 message")
    has_id = "id" in message
    id_ = message.get("id")
    if has_id and (isinstance(id_, bool) or not isinstance(id_, str | int)):
        raise BadMessage("request.bad_id", "Invalid Request: id must be a string or integer")
    if "method" in message:
        if not isinstance(message["method"], str) or not message["method"]:
            raise BadMessage("request.bad_method", "Invalid Request: method must be a string")
        if "params" in message and not isinstance(message["params"], dict):
            raise BadMessage("request.bad_params", "Invalid Request: params must be an object")
        if not has_id and not message["method"].startswith("notifications/"):
            # A request sent without an id would be answered by nobody and policed by nothing
            # (e.g. tools/call as a "notification"): refused.
            raise BadMessage("request.missing_id",
                             f"Invalid Request: {message['method'][:100]!r} needs an id; only "
                             "notifications/* may be sent without one",
                             method=message["method"][:100])
        return message, ("request" if has_id else "notification")
    if has_id and ("result" in message or "error" in message):
        return message, "response"
    raise BadMessage("request.not_jsonrpc", "Invalid Request: neither a request nor a response")


def check_routing_headers(headers: dict[str, str], message: dict[str, Any]) -> None:
    """From 2026-07-28 the method and name also travel as headers. The gateway polices the
    body, so the two must agree, or a header-routing upstream could run something else. A
    request in the 2026-07-28 form (its protocol version in `params._meta`) must carry them,
    as the specification requires a server to check; older clients send none."""
    method = message.get("method")
    params = message.get("params") or {}
    meta = params.get("_meta") if isinstance(params, dict) else None
    modern = "id" in message and isinstance(meta, dict) and PROTOCOL_VERSION_META_KEY in meta
    method_header = headers.get("mcp-method")
    if method_header is None and modern:
        raise BadMessage("request.header_missing",
                         "This request needs the Mcp-Method header (MCP 2026-07-28)",
                         code=HEADER_MISMATCH, method=str(method)[:100])
    if method_header is not None and method_header != method:
        raise BadMessage("request.header_mismatch",
                         "Mcp-Method header does not match the body's method",
                         code=HEADER_MISMATCH)
    name_header = headers.get("mcp-name")
    name_key = NAME_BEARING_METHODS.get(method) if isinstance(method, str) else None
    if (name_header is None and modern and name_key is not None
            and params.get(name_key) is not None):
        raise BadMessage("request.header_missing",
                         f"This request needs the Mcp-Name header (MCP 2026-07-28): {method} "
                         f"names its {name_key} in the header too", code=HEADER_MISMATCH,
                         method=method)
    if name_header is not None:
        body_name = params.get("name", params.get("uri"))
        if decode_header_value(name_header) != body_name:
            raise BadMessage("request.header_mismatch",
                             "Mcp-Name header does not match the body",
                             code=HEADER_MISMATCH)
    if modern and headers.get("mcp-protocol-version") != meta[PROTOCOL_VERSION_META_KEY]:
        raise BadMessage("request.header_mismatch",
                         "MCP-Protocol-Version header is missing or does not match "
                         "params._meta's protocol version", code=HEADER_MISMATCH)


def protocol_version_of(headers: dict[str, str], message: dict[str, Any] | None) -> str:
    version = headers.get("mcp-protocol-version", "")
    if not version and message is not None:
        meta = (message.get("params") or {}).get("_meta") or {}
        if isinstance(meta, dict):
            version = str(meta.get(PROTOCOL_VERSION_META_KEY) or "")
    return version[:32]
