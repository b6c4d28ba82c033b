"""SIEM message formats for one audit record: JSON lines, RFC 5424 syslog, CEF, OCSF API
Activity, and the Splunk HEC / Elasticsearch bulk envelopes."""

from __future__ import annotations

import json
import re

import pytest

from audit.export.formatters import (
    CefFormatter,
    ElasticsearchBulkFormatter,
    JsonFormatter,
    OcsfFormatter,
    SplunkHecFormatter,
    SyslogFormatter,
    build_formatter,
)
from audit.export.records import EXPORT_FIELDS, ExportRecord, export_record
from audit.export.sinks import octet_frame
from audit.models import AuditRecord
from audit.services import append_records

from .conftest import make_entry

pytestmark = pytest.mark.django_db

RFC5424 = re.compile(
    r"^<(?P<pri>\d{1,3})>1 (?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z) (?P<host>\S+) "
    r"(?P<app>\S+) (?P<procid>\S+) (?P<msgid>\S+) (?P<sd>-|\[.*?[^\\]\]) (?P<msg>.*)$",
    re.DOTALL,
)


def one_record(**overrides: object) -> ExportRecord:
    values: dict[str, object] = {
        "source_ip": "203.0.113.9",
        "user_agent": "mcp-client/1.0",
        "jsonrpc_method": "tools/call",
        "mcp_session_id": "sess-1",
        "row_count": 42,
        "response_body": '{"rows": 42}',
        **overrides,
    }
    append_records([make_entry(7, **values)])
    row = AuditRecord.objects.values(*EXPORT_FIELDS).get()
    return export_record(row)


def test_json_lines_carry_every_field_but_the_body_by_default() -> None:
    record = one_record()
    line = JsonFormatter().format(record)
    assert "\n" not in line and line.isascii()
    doc = json.loads(line)
    assert doc["seq"] == 1 and len(doc["hash"]) == 64 and doc["prev_hash"] == "0" * 64
    assert doc["at"].endswith("+00:00") and doc["tool"] == "execute_sql"
    assert "response_body" not in doc and doc["response_sha256"] == ""
    full = export_record(
        AuditRecord.objects.values(*EXPORT_FIELDS).get(), include_response_body=True
    )
    assert json.loads(JsonFormatter().format(full))["response_body"] == '{"rows": 42}'


def test_rfc5424_syslog_with_structured_data_and_octet_counting() -> None:
    record = one_record(decision="deny", actor='eve "the" ]admin[ \\')
    message = SyslogFormatter(JsonFormatter(), hostname="gw-1.example").format(record)
    match = RFC5424.match(message)
    assert match, message
    assert match["pri"] == str(13 * 8 + 4)  # log audit, warning (a denial)
    assert match["host"] == "gw-1.example" and match["app"] == "wardgate"
    assert match["procid"] == "-" and match["msgid"] == "mcp.decision"
    sd = match["sd"]
    assert sd.startswith('[wardgate@32473 seq="1" hash="')
    assert 'actor="eve \\"the\\" \\]admin[ \\\\"' in sd
    assert 'decision="deny"' in sd and 'source_ip="203.0.113.9"' in sd
    assert json.loads(match["msg"])["seq"] == 1
    frame = octet_frame(message)
    length, _, rest = frame.partition(b" ")
    assert int(length) == len(rest) == len(message.encode("utf-8"))


def test_syslog_utf8_messages_get_a_bom_and_byte_counts() -> None:
    record = one_record(actor="jürgen")
    message = SyslogFormatter(CefFormatter(), hostname="h").format(record)
    msg = RFC5424.match(message)["msg"]  # type: ignore[index]
    assert msg.startswith("\ufeffCEF:0|")
    frame = octet_frame(message)
    assert int(frame.split(b" ", 1)[0]) == len(message.encode("utf-8")) > len(message)


def test_cef_header_extension_and_escaping() -> None:
    record = one_record(
        decision="allow",
        sql_text="SELECT a=1\nFROM t",
        tool="exec|sql",
        reasons=[{"rule": "grant"}],
    )
    line = CefFormatter().format(record)
    assert "\n" not in line
    header, _, extension = line.partition("|rt=")
    parts = re.split(r"(?<!\\)\|", header)
    assert parts[:4] == ["CEF:0", "Wardgate", "Wardgate", parts[3]]
    assert parts[4] == "mcp.decision"
    assert parts[5] == "tools/call exec\\|sql allow"
    assert parts[6] == "2"  # informational
    extension = "rt=" + extension
    assert "externalId=1 " in extension
    assert "suser=engineer " in extension
    assert "src=203.0.113.9 " in extension
    assert "act=allow " in extension and "outcome=success " in extension
    assert "msg=SELECT a\\=1\\nFROM t " in extension
    assert "cs1Label=tool cs1=exec|sql " in extension  # pipes need no escape in extensions
    assert f"cs4Label=recordHash cs4={record['hash']} " in extension
    assert "cn1Label=rowCount cn1=42" in extension
    assert 'reason={"rule":"grant"}' in extension
    assert "cs5Label" not in extension  # empty value: label left out too


def test_cef_ipv6_source_and_failure() -> None:
    line = CefFormatter().format(one_record(source_ip="2001:db8::1", decision="error"))
    assert "c6a2=2001:db8::1" in line and "c6a2Label=sourceIPv6" in line
    assert "outcome=failure" in line and line.split("|")[6] == "8"


def test_ocsf_api_activity() -> None:
    record = one_record(decision="deny")
    doc = json.loads(OcsfFormatter().format(record))
    assert (doc["class_uid"], doc["category_uid"]) == (6003, 6)
    assert doc["class_name"] == "API Activity"
    assert (doc["activity_id"], doc["type_uid"]) == (99, 600399)
    assert doc["time"] == int(doc["metadata"]["logged_time"])
    assert doc["status_id"] == 2 and doc["status"] == "Failure"
    assert (doc["disposition_id"], doc["disposition"]) == (2, "Blocked")
    assert doc["severity_id"] == 3
    assert doc["metadata"]["version"] == "1.3.0" and doc["metadata"]["uid"] == "wardgate-1"
    assert doc["metadata"]["product"]["name"] == "Wardgate"
    assert doc["actor"] == {"user": {"name": "engineer"}, "session": {"uid": "sess-1"}}
    assert doc["api"] == {
        "operation": "tools/call",
        "request": {"uid": "req-7"},
        "service": {"name": "demo-bigquery"},
    }
    assert doc["src_endpoint"] == {"ip": "203.0.113.9"}
    assert doc["http_request"] == {"user_agent": "mcp-client/1.0"}
    assert {"name": "execute_sql", "type": "MCP tool"} in doc["resources"]
    assert doc["unmapped"]["seq"] == 1 and doc["unmapped"]["hash"] == record["hash"]
    listing = json.loads(OcsfFormatter().format({**record, "jsonrpc_method": "tools/list"}))
    assert (listing["activity_id"], listing["type_uid"]) == (2, 600302)


def test_splunk_hec_and_elasticsearch_bulk_envelopes() -> None:
    record = one_record()
    hec = json.loads(SplunkHecFormatter(OcsfFormatter(), index="sec", host="gw").format(record))
    assert hec["sourcetype"] == "wardgate:audit" and hec["index"] == "sec"
    assert hec["host"] == "gw" and hec["event"]["class_uid"] == 6003
    assert isinstance(hec["time"], float)
    action, doc = ElasticsearchBulkFormatter(JsonFormatter()).format(record).split("\n")
    assert json.loads(action) == {"create": {"_index": "wardgate-audit", "_id": "wardgate-1"}}
    assert json.loads(doc)["seq"] == 1


def test_build_formatter_from_sink_specs() -> None:
    assert isinstance(build_formatter({}), JsonFormatter)
    assert isinstance(build_formatter({"format": "ocsf"}), OcsfFormatter)
    syslog = build_formatter({"format": "syslog", "body": "cef", "facility": 10})
    assert isinstance(syslog, SyslogFormatter) and isinstance(syslog.body, CefFormatter)
    assert isinstance(build_formatter({"format": "splunk_hec", "body": "ocsf"}), SplunkHecFormatter)
    with pytest.raises(ValueError, match="unknown SIEM format"):
        build_formatter({"format": "xml"})
    with pytest.raises(ValueError, match="wraps json or ocsf"):
        build_formatter({"format": "elasticsearch_bulk", "body": "cef"})
    with pytest.raises(ValueError, match="facility"):
        build_formatter({"format": "syslog", "facility": 40})
