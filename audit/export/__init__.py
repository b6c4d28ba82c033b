"""Streaming audit records to SIEMs with at-least-once delivery and a persisted cursor.

- `formatters`: JSON lines, RFC 5424 syslog (structured data), CEF, OCSF API Activity (6003),
  Splunk HEC and Elasticsearch bulk envelopes.
- `sinks`: file (append + fsync), HTTP (HMAC-signed POST), syslog over TCP or TLS (RFC 6587
  octet counting).
- `exporter.Exporter`: reads records after the sink's cursor in seq order, delivers a batch,
  then saves the cursor. A crash between delivery and the cursor save re-sends that one batch
  (at most `batch_size` records) on restart; nothing is ever skipped. Every message carries the
  record's seq (and hash), by which a SIEM can drop the duplicates.
- `config`: sinks from WARDGATE_SIEM_SINKS.
"""
