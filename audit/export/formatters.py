"""Turning an exported record into one SIEM message (a str without framing or trailing newline).

Framing (newlines for files and HTTP bodies, octet counting for syslog over TCP) is the sink's
job, so every format works with every sink that can carry it.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
from typing import Any, Protocol

from .records import PRODUCT_VERSION, ExportRecord, record_time, severity, succeeded


class Formatter(Protocol):
    def format(self, record: ExportRecord) -> str: ...


class DocumentFormatter(Protocol):
    """A formatter whose message is a JSON object, so envelopes (HEC, bulk) can wrap it."""

    def document(self, record: ExportRecord) -> dict[str, Any]: ...

    def format(self, record: ExportRecord) -> str: ...


def _json(value: Any) -> str:
    # ASCII-only: safe in any transport and in syslog MSG without a BOM.
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def _epoch_ms(record: ExportRecord) -> int:
    return int(record_time(record).timestamp() * 1000)


# --- JSON lines --------------------------------------------------------------------------------


class JsonFormatter:
    """The record itself, keys sorted: seq, hash and prev_hash let a SIEM deduplicate by seq
    and spot gaps."""

    def document(self, record: ExportRecord) -> dict[str, Any]:
        return dict(record)

    def format(self, record: ExportRecord) -> str:
        return _json(self.document(record))


# --- OCSF API Activity -------------------------------------------------------------------------

OCSF_VERSION = "1.3.0"
_OCSF_SEVERITY = {
    "info": (1, "Informational"),
    "notice": (2, "Low"),
    "warning": (3, "Medium"),
    "error": (4, "High"),
}
_OCSF_DISPOSITION = {
    "allow": (1, "Allowed"),
    "deny": (2, "Blocked"),
    "hold": (99, "Held"),
    "withheld": (99, "Withheld"),
}
_READ_METHODS = re.compile(r"(^|/)(list|read|get)$")


class OcsfFormatter:
    """OCSF 1.3 API Activity (class 6003, category 6 Application Activity). MCP JSON-RPC
    methods map to activities: list/read/get are Read (2), everything else (tool calls
    included: their effect depends on the tool) is Other (99). Wardgate's own fields without an
    OCSF home go to `unmapped`."""

    def document(self, record: ExportRecord) -> dict[str, Any]:
        method = record.get("jsonrpc_method", "")
        if _READ_METHODS.search(method):
            activity_id, activity = 2, "Read"
        else:
            activity_id, activity = 99, "Other"
        severity_id, severity_name = _OCSF_SEVERITY[severity(record)]
        ok = succeeded(record)
        status_id, status = (
            (0, "Unknown") if ok is None else (1, "Success") if ok else (2, "Failure")
        )
        time_ms = _epoch_ms(record)
        source_ip = _ip(record.get("source_ip", ""))
        doc: dict[str, Any] = {
            "category_uid": 6,
            "category_name": "Application Activity",
            "class_uid": 6003,
            "class_name": "API Activity",
            "activity_id": activity_id,
            "activity_name": activity,
            "type_uid": 6003 * 100 + activity_id,
            "type_name": f"API Activity: {activity}",
            "time": time_ms,
            "severity_id": severity_id,
            "severity": severity_name,
            "status_id": status_id,
            "status": status,
            "message": record["event"],
            "metadata": {
                "version": OCSF_VERSION,
                "uid": f"wardgate-{record['seq']}",
                "sequence": record["seq"],
                "correlation_uid": record.get("request_id", ""),
                "log_name": "wardgate.audit",
                "logged_time": time_ms,
                "product": {
                    "name": "Wardgate",
                    "vendor_name": "Wardgate",
                    "version": PRODUCT_VERSION,
                },
            },
            "actor": {
                "user": {"name": record.get("actor") or "anonymous"},
                **(
                    {"session": {"uid": record["mcp_session_id"]}}
                    if record.get("mcp_session_id")
                    else {}
                ),
            },
            "api": {
                "operation": method or record["event"],
                "request": {"uid": record.get("request_id", "")},
                "service": {"name": record.get("connection", "")},
            },
            "src_endpoint": {"ip": str(source_ip)} if source_ip else {},
            "unmapped": {
                name: record.get(name)
                for name in (
                    "seq",
                    "hash",
                    "prev_hash",
                    "event",
                    "decision",
                    "reasons",
                    "masking",
                    "tool",
                    "auth_method",
                    "sql_text",
                    "sql_fingerprint",
                    "row_count",
                    "result_bytes",
                    "response_sha256",
                    "upstream_latency_ms",
                    "detail",
                )
            },
        }
        if record.get("user_agent"):
            doc["http_request"] = {"user_agent": record["user_agent"]}
        resources = []
        if record.get("tool"):
            resources.append({"name": record["tool"], "type": "MCP tool"})
        if record.get("connection"):
            resources.append({"name": record["connection"], "type": "MCP connection"})
        if resources:
            doc["resources"] = resources
        if record.get("decision") in _OCSF_DISPOSITION:
            doc["disposition_id"], doc["disposition"] = _OCSF_DISPOSITION[record["decision"]]
        return doc

    def format(self, record: ExportRecord) -> str:
        return _json(self.document(record))


# --- CEF ---------------------------------------------------------------------------------------

_CEF_SEVERITY = {"info": 2, "notice": 4, "warning": 6, "error": 8}
CEF_MSG_LIMIT = 1023  # what most CEF consumers keep of msg


def _cef_header(value: str) -> str:
    value = value.replace("\\", "\\\\").replace("|", "\\|")
    return re.sub(r"[\r\n]+", " ", value)


def _cef_value(value: Any) -> str:
    text = str(value)
    return (
        text.replace("\\", "\\\\")
        .replace("=", "\\=")
        .replace("\r\n", "\\n")
        .replace("\n", "\\n")
        .replace("\r", "\\r")
    )


class CefFormatter:
    """ArcSight Common Event Format, version 0. Custom fields use the csN/cnN pairs with labels,
    as CEF requires; empty values are left out."""

    def __init__(self, vendor: str = "Wardgate", product: str = "Wardgate") -> None:
        self.vendor = vendor
        self.product = product

    def format(self, record: ExportRecord) -> str:
        decision = record.get("decision", "")
        name = (
            " ".join(
                part
                for part in (record.get("jsonrpc_method"), record.get("tool"), decision)
                if part
            )
            or record["event"]
        )
        header = "|".join(
            [
                "CEF:0",
                _cef_header(self.vendor),
                _cef_header(self.product),
                _cef_header(PRODUCT_VERSION),
                _cef_header(record["event"]),
                _cef_header(name),
                str(_CEF_SEVERITY[severity(record)]),
            ]
        )
        ok = succeeded(record)
        source_ip = _ip(record.get("source_ip", ""))
        reasons = record.get("reasons") or []
        pairs: list[tuple[str, Any]] = [
            ("rt", _epoch_ms(record)),
            ("externalId", record["seq"]),
            ("suser", record.get("actor")),
            ("src" if isinstance(source_ip, ipaddress.IPv4Address) else "c6a2", source_ip),
            ("requestClientApplication", record.get("user_agent")),
            ("requestMethod", record.get("jsonrpc_method")),
            ("act", decision),
            ("outcome", None if ok is None else "success" if ok else "failure"),
            ("reason", "; ".join(_json(r) if not isinstance(r, str) else r for r in reasons)),
            ("msg", (record.get("sql_text") or "")[:CEF_MSG_LIMIT]),
            ("cs1Label", "tool"),
            ("cs1", record.get("tool")),
            ("cs2Label", "connection"),
            ("cs2", record.get("connection")),
            ("cs3Label", "requestId"),
            ("cs3", record.get("request_id")),
            ("cs4Label", "recordHash"),
            ("cs4", record.get("hash")),
            ("cs5Label", "sqlFingerprint"),
            ("cs5", record.get("sql_fingerprint")),
            ("cs6Label", "authMethod"),
            ("cs6", record.get("auth_method")),
            ("cn1Label", "rowCount"),
            ("cn1", record.get("row_count")),
            ("cn2Label", "resultBytes"),
            ("cn2", record.get("result_bytes")),
        ]
        if isinstance(source_ip, ipaddress.IPv6Address):
            pairs.append(("c6a2Label", "sourceIPv6"))
        present = {key for key, value in pairs if value not in (None, "") and "Label" not in key}
        extension = " ".join(
            f"{key}={_cef_value(value)}"
            for key, value in pairs
            if value not in (None, "")
            # A label only travels with its value.
            and ("Label" not in key or key.replace("Label", "") in present)
        )
        return f"{header}|{extension}"


# --- envelopes for HTTP collectors -------------------------------------------------------------


class SplunkHecFormatter:
    """One Splunk HTTP Event Collector event per record (the HEC batch format is these objects
    one after another)."""

    def __init__(
        self,
        inner: DocumentFormatter,
        *,
        sourcetype: str = "wardgate:audit",
        source: str = "wardgate",
        index: str = "",
        host: str = "",
    ) -> None:
        self.inner = inner
        self.envelope = {
            "sourcetype": sourcetype,
            "source": source,
            "host": host or socket.gethostname(),
        }
        if index:
            self.envelope["index"] = index

    def format(self, record: ExportRecord) -> str:
        return _json(
            {
                **self.envelope,
                "time": record_time(record).timestamp(),
                "event": self.inner.document(record),
            }
        )


class ElasticsearchBulkFormatter:
    """Two NDJSON lines per record for the _bulk API. `create` with _id = the seq makes a
    re-sent batch harmless: Elasticsearch answers 409 for records it already has."""

    def __init__(self, inner: DocumentFormatter, *, index: str = "wardgate-audit") -> None:
        self.inner = inner
        self.index = index

    def format(self, record: ExportRecord) -> str:
        action = {"create": {"_index": self.index, "_id": f"wardgate-{record['seq']}"}}
        return _json(action) + "\n" + _json(self.inner.document(record))


# --- RFC 5424 syslog ---------------------------------------------------------------------------

_SYSLOG_SEVERITY = {"error": 3, "warning": 4, "notice": 5, "info": 6}
LOG_AUDIT_FACILITY = 13  # RFC 5424 "log audit"
# 32473 is the private enterprise number RFC 5612 reserves for documentation; set your own.
DEFAULT_SD_ID = "wardgate@32473"
_SD_PARAMS = (
    "seq",
    "hash",
    "event",
    "actor",
    "decision",
    "connection",
    "tool",
    "request_id",
    "source_ip",
)


def _printable(value: str, limit: int) -> str:
    # HOSTNAME, APP-NAME, MSGID: printable US-ASCII (33..126), "-" when empty.
    cleaned = "".join(ch if 33 <= ord(ch) <= 126 else "_" for ch in value)[:limit]
    return cleaned or "-"


def _sd_value(value: Any) -> str:
    text = re.sub(r"[\x00-\x1f\x7f]", " ", str(value))
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


class SyslogFormatter:
    """An RFC 5424 message: the record's key fields as structured data, the `body` formatter's
    output (JSON, CEF or OCSF) as MSG. UTF-8 MSGs get the BOM the RFC asks for."""

    def __init__(
        self,
        body: Formatter,
        *,
        hostname: str = "",
        app_name: str = "wardgate",
        facility: int = LOG_AUDIT_FACILITY,
        sd_id: str = DEFAULT_SD_ID,
    ) -> None:
        if not 0 <= facility <= 23:
            raise ValueError("syslog facility must be 0..23")
        self.body = body
        self.hostname = _printable(hostname or socket.getfqdn() or socket.gethostname(), 255)
        self.app_name = _printable(app_name, 48)
        self.facility = facility
        self.sd_id = _printable(sd_id.replace("=", "").replace("]", "").replace('"', ""), 32)

    def format(self, record: ExportRecord) -> str:
        pri = self.facility * 8 + _SYSLOG_SEVERITY[severity(record)]
        timestamp = record_time(record).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        msgid = _printable(record["event"], 32)
        params = " ".join(
            f'{name}="{_sd_value(record[name])}"' for name in _SD_PARAMS if record.get(name)
        )
        structured = f"[{self.sd_id} {params}]" if params else "-"
        message = self.body.format(record)
        if not message.isascii():
            message = "\ufeff" + message
        return (
            f"<{pri}>1 {timestamp} {self.hostname} {self.app_name} - {msgid} {structured} {message}"
        )


FORMATS = ("json", "ocsf", "cef", "syslog", "splunk_hec", "elasticsearch_bulk")


def build_formatter(spec: dict[str, Any], *, default: str = "json") -> Formatter:
    """The formatter a sink spec names in `format` (see audit/export/config.py)."""
    name = spec.get("format", default)
    documents: dict[str, DocumentFormatter] = {"json": JsonFormatter(), "ocsf": OcsfFormatter()}
    if name in documents:
        return documents[name]
    if name == "cef":
        return CefFormatter()
    if name == "syslog":
        return SyslogFormatter(
            build_formatter({"format": spec.get("body", "json")}),
            hostname=spec.get("hostname", ""),
            app_name=spec.get("app_name", "wardgate"),
            facility=int(spec.get("facility", LOG_AUDIT_FACILITY)),
            sd_id=spec.get("sd_id", DEFAULT_SD_ID),
        )
    inner_name = spec.get("body", "json")
    if inner_name not in documents:
        raise ValueError(f"{name} wraps json or ocsf, not {inner_name!r}")
    if name == "splunk_hec":
        return SplunkHecFormatter(
            documents[inner_name],
            sourcetype=spec.get("sourcetype", "wardgate:audit"),
            source=spec.get("source", "wardgate"),
            index=spec.get("index", ""),
            host=spec.get("hostname", ""),
        )
    if name == "elasticsearch_bulk":
        return ElasticsearchBulkFormatter(
            documents[inner_name], index=spec.get("index", "wardgate-audit")
        )
    raise ValueError(f"unknown SIEM format {name!r} (one of {', '.join(FORMATS)})")
