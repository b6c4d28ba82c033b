"""Structured logs: one JSON object per line, carrying the request id of the call being served.

`WARDGATE_LOG_FORMAT=json` selects `JsonFormatter` (wardgate.settings.LOGGING). The gateway sets
`request_id` at the start of each call (proxy.pipeline), so every line logged while serving it,
in any module, names the call's audit request id. This module imports nothing but the standard
library: settings name it by path, the gateway imports it on its hot path.
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime

# The audit request id of the call this task serves ("" outside a call).
request_id: ContextVar[str] = ContextVar("wardgate_request_id", default="")


class JsonFormatter(logging.Formatter):
    """time, level, logger, message, request_id (when serving a call), and the traceback."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        current = request_id.get()
        if current:
            line["request_id"] = current
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)
