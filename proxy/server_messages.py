"""Messages from the upstream that are not the response to the call (issue 8): log messages,
progress, and server-to-client requests (sampling, elicitation, roots, ping).

An upstream that logs what it read ("converting '248-48-5228' failed") would otherwise carry a
classified value past the masking. So every string such a message carries leaves under the
call's error-text policy (proxy.error_texts): when the call reads a column that is masked for
the caller's role, a log or progress text is withheld (a fixed text with its class and the
request id); otherwise it goes through the content detectors, like result text. A server
request that carries strings during such a call is not relayed at all (the relay refuses it to
the upstream); a message that cannot be read or masked is dropped. These functions only decide
what leaves; proxy.handlers.relay sends, refuses and records.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

from proxy.context import CallContext
from proxy.error_texts import ErrorTextPolicy

__all__ = ["LOG", "PROGRESS", "Unrelayable", "carries_strings", "message_texts", "method_name",
           "public_notification", "public_params"]

LOG: Final = "notifications/message"
PROGRESS: Final = "notifications/progress"
# The MCP logging levels (a closed vocabulary: relayed as they are, never masked).
LOG_LEVELS: Final = frozenset({"debug", "info", "notice", "warning", "error", "critical",
                               "alert", "emergency"})
# A method name is protocol vocabulary: letters, '/' and '_' only (no digits, '@', '.', '-'),
# so an upstream cannot pass a value off as one.
_METHOD: Final = re.compile(r"[A-Za-z_/]{1,64}")
# Deeper than this the message is not walked but dropped (fail closed, bounded work).
_MAX_DEPTH: Final = 32


class Unrelayable(Exception):
    """A server message that cannot leave in a masked form: it is dropped."""


def message_texts(ctx: CallContext) -> ErrorTextPolicy:
    """How the texts of server messages relayed on ``ctx`` leave: the call's error-text policy
    (set for tools/call), else the content detectors with every finding redacted."""
    texts = ctx.error_texts
    return texts if isinstance(texts, ErrorTextPolicy) else ErrorTextPolicy(ctx.request_id,
                                                                            withhold=False)


def method_name(value: object) -> str | None:
    """``value`` if it has the shape of a JSON-RPC method name, else None."""
    return value if isinstance(value, str) and _METHOD.fullmatch(value) else None


def carries_strings(value: Any, depth: int = 0) -> bool:
    """Whether ``value`` holds a string anywhere (object keys included); too deep: yes."""
    if depth > _MAX_DEPTH:
        return True
    if isinstance(value, str):
        return True
    if isinstance(value, dict):
        return bool(value)  # JSON object keys are strings
    if isinstance(value, list):
        return any(carries_strings(v, depth + 1) for v in value)
    return False


def public_params(value: Any, texts: ErrorTextPolicy, depth: int = 0) -> Any:
    """``value`` with every string (object keys too) after the content detectors. Raises
    Unrelayable when the texts are withheld and it holds a string, or when it is too deep."""
    if depth > _MAX_DEPTH:
        raise Unrelayable("nested too deeply to mask")
    if isinstance(value, str):
        if texts.withhold:
            raise Unrelayable("it quotes text during a call that reads masked columns")
        return texts.public(value)
    if isinstance(value, dict):
        return {public_params(k, texts, depth + 1): public_params(v, texts, depth + 1)
                for k, v in value.items()}
    if isinstance(value, list):
        return [public_params(v, texts, depth + 1) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    raise Unrelayable(f"a value of type {type(value).__name__}")


def public_notification(message: dict[str, Any], texts: ErrorTextPolicy,
                        progress_token: Any = None) -> dict[str, Any]:
    """A notification from the upstream as it may leave. Log and progress notifications keep
    their shape (level, token, counts) with their texts withheld or detected; any other
    notification has its params detected, and is dropped if they hold text that would be
    withheld. ``progress_token``: the one the client sent with the call (progress for any
    other token is dropped). Raises Unrelayable."""
    method, params = message.get("method"), message.get("params")
    if method == LOG:
        return {"jsonrpc": "2.0", "method": LOG, "params": _public_log(params, texts)}
    if method == PROGRESS:
        return {"jsonrpc": "2.0", "method": PROGRESS, "params": _public_progress(params, texts, progress_token)}
    out = {"jsonrpc": "2.0", "method": method}
    if "params" in message:
        out["params"] = public_params(params, texts)
    return out


def _public_log(params: Any, texts: ErrorTextPolicy) -> dict[str, Any]:
    if not isinstance(params, dict) or params.get("level") not in LOG_LEVELS \
            or "data" not in params:
        raise Unrelayable("a log message without a level and data")
    if texts.withhold:
        # Logger name, data (any JSON) and _meta could all quote a value: one fixed text.
        raw = params["data"] if isinstance(params["data"], str) else _json(params["data"])
        return {"level": params["level"], "data": texts.public(raw, kind="a log message")}
    out = {"level": params["level"], "data": public_params(params["data"], texts)}
    if isinstance(params.get("logger"), str):
        out["logger"] = texts.public(params["logger"])
    if "_meta" in params:
        out["_meta"] = public_params(params["_meta"], texts)
    return out


def _public_progress(params: Any, texts: ErrorTextPolicy, expected: Any) -> dict[str, Any]:
    if not isinstance(params, dict) or not _is_number(params.get("progress")):
        raise Unrelayable("a progress notification without a progress count")
    token = params.get("progressToken")
    # The token is the client's own, relayed as it is: so it must be the one the client sent.
    if expected is None or isinstance(token, bool) or token != expected:
        raise Unrelayable("a progress notification for a token the client did not send")
    out: dict[str, Any] = {"progressToken": token, "progress": params["progress"]}
    if _is_number(params.get("total")):
        out["total"] = params["total"]
    if isinstance(params.get("message"), str):
        out["message"] = texts.public(params["message"], kind="a progress message")
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _json(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return ""
