"""SIEM sinks from the audit configuration: WARDGATE_SIEM_SINKS is a JSON list of objects.

Common keys: `name` (unique; also the cursor name unless `cursor` is given), `type` (file, http,
syslog), `format`, `batch_size` (default WARDGATE_SIEM_BATCH_SIZE), `include_response_body`
(default false), `lease_seconds` (default 120: how long a crashed exporter keeps others out;
must exceed one delivery attempt).

- file: `path`; format json (default), ocsf, cef or syslog (RFC 5424 lines).
- http: `url`, `headers` (e.g. {"Authorization": "Splunk <token>"}), `hmac_secret` (default
  WARDGATE_SIEM_HMAC_SECRET), `timeout`, `ca_file` or `verify`; format json (default), ocsf,
  splunk_hec or elasticsearch_bulk (`index`; `body`: json or ocsf).
- syslog: `host`, `port` (514, or 6514 with TLS), `tls`, `ca_file`, `cert_file`/`key_file`
  (mutual TLS), `server_name`, `verify`; `body` json (default), cef or ocsf; `hostname`,
  `app_name`, `facility` (default 13, log audit), `sd_id` (default wardgate@32473: use your
  own private enterprise number).
"""

from __future__ import annotations

import ssl
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from ..config import audit_config
from .exporter import Exporter
from .formatters import build_formatter
from .sinks import FileSink, HttpSink, Sink, SyslogTcpSink

SINK_TYPES = ("file", "http", "syslog")


def sink_specs() -> list[dict[str, Any]]:
    specs = list(audit_config().siem_sinks)
    names = [spec.get("name") for spec in specs]
    duplicates = {name for name in names if names.count(name) > 1}
    if duplicates:
        raise ImproperlyConfigured(f"WARDGATE_SIEM_SINKS: duplicate names {sorted(duplicates)}")
    return specs


def sink_spec(name: str) -> dict[str, Any]:
    for spec in sink_specs():
        if spec.get("name") == name:
            return spec
    known = ", ".join(str(spec.get("name")) for spec in sink_specs()) or "none configured"
    raise ImproperlyConfigured(f"no SIEM sink named {name!r} in WARDGATE_SIEM_SINKS ({known})")


def _require(spec: dict[str, Any], *keys: str) -> None:
    missing = [key for key in keys if not spec.get(key)]
    if missing:
        raise ImproperlyConfigured(f"SIEM sink {spec.get('name')!r} needs {', '.join(missing)}")


def build_sink(spec: dict[str, Any]) -> Sink:
    name, kind = str(spec.get("name", "")), spec.get("type")
    try:
        if kind == "file":
            _require(spec, "name", "path")
            return FileSink(name, build_formatter(spec), spec["path"])
        if kind == "http":
            _require(spec, "name", "url")
            verify: bool | ssl.SSLContext = bool(spec.get("verify", True))
            if spec.get("ca_file"):
                verify = ssl.create_default_context(cafile=spec["ca_file"])
            return HttpSink(
                name,
                build_formatter(spec),
                spec["url"],
                secret=spec.get("hmac_secret") or audit_config().siem_hmac_secret,
                headers=spec.get("headers") or {},
                timeout=float(spec.get("timeout", 30)),
                verify=verify,
            )
        if kind == "syslog":
            _require(spec, "name", "host")
            tls = bool(spec.get("tls", False))
            body = spec.get("body", spec.get("format", "json"))
            return SyslogTcpSink(
                name,
                build_formatter({**spec, "format": "syslog", "body": body}),
                spec["host"],
                int(spec.get("port", 6514 if tls else 514)),
                tls=tls,
                ca_file=spec.get("ca_file"),
                cert_file=spec.get("cert_file"),
                key_file=spec.get("key_file"),
                server_name=spec.get("server_name"),
                verify=bool(spec.get("verify", True)),
                timeout=float(spec.get("timeout", 30)),
            )
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(f"SIEM sink {name!r}: {exc}") from exc
    raise ImproperlyConfigured(
        f"SIEM sink {name!r}: type must be one of {', '.join(SINK_TYPES)}, not {kind!r}"
    )


def build_exporter(spec: dict[str, Any], **overrides: Any) -> Exporter:
    options: dict[str, Any] = {
        "cursor_name": spec.get("cursor") or spec["name"],
        "batch_size": int(spec.get("batch_size", audit_config().siem_batch_size)),
        "include_response_body": bool(spec.get("include_response_body", False)),
        "lease_seconds": float(spec.get("lease_seconds", 120)),
    }
    options.update({key: value for key, value in overrides.items() if value is not None})
    return Exporter(build_sink(spec), **options)
