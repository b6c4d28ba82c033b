"""One handler per kind of request, each reading top to bottom; `handler_for` picks it once
the stages (proxy.stages) have passed the call."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from proxy.call import Call
from proxy.handlers.client_message import handle_client_message
from proxy.handlers.data_request import handle_data_request
from proxy.handlers.delete import handle_delete
from proxy.handlers.plain_request import handle_plain_request
from proxy.handlers.stream import handle_stream
from proxy.handlers.tool_call import handle_tool_call

if TYPE_CHECKING:
    from proxy.pipeline import Pipeline

Handler = Callable[["Pipeline", Call], Awaitable[None]]


def handler_for(call: Call) -> Handler:
    if call.http_method == "GET":
        return handle_stream
    if call.http_method == "DELETE":
        return handle_delete
    if call.kind != "request":  # notifications and responses
        return handle_client_message
    if call.ctx.jsonrpc_method == "tools/call":
        return handle_tool_call
    if call.ctx.jsonrpc_method in ("resources/read", "prompts/get"):
        return handle_data_request
    return handle_plain_request
