"""Where exported records go. A sink delivers one batch of formatted records per `deliver`,
returning only once the destination has taken all of it, and raising DeliveryError otherwise
(the exporter then keeps its cursor and re-sends the batch).

What "taken" means differs, and bounds what at-least-once can promise:
- file: written and fsync'ed;
- http: a 2xx answer (for the Elasticsearch bulk format, and every item created or already
  there);
- syslog over TCP/TLS: written to the socket. Plain syslog has no acknowledgement, so a receiver
  that dies with unread bytes loses them. Before each batch the sink checks that the receiver
  has not closed the connection (so a restarted receiver does not silently swallow a batch);
  prefer the HTTP sink where end-to-end acknowledgement matters.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import select
import socket
import ssl
from collections.abc import Mapping
from pathlib import Path

import httpx

from .formatters import ElasticsearchBulkFormatter, Formatter
from .records import ExportRecord

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Wardgate-Signature"


class DeliveryError(Exception):
    """The batch was not (entirely) accepted; it will be sent again."""


class Sink:
    """Base: formats the batch, hands the messages to `_send`."""

    def __init__(self, name: str, formatter: Formatter) -> None:
        self.name = name
        self.formatter = formatter

    def deliver(self, records: list[ExportRecord]) -> None:
        if records:
            self._send(records, [self.formatter.format(record) for record in records])

    def _send(self, records: list[ExportRecord], messages: list[str]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release connections/files; the sink can be used again afterwards."""

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FileSink(Sink):
    """Appends one message per line and fsyncs each batch. Reopens the file when it was rotated
    away (a new inode at the path), and terminates a line left half-written by a crash, so the
    re-sent batch starts on a line of its own."""

    def __init__(self, name: str, formatter: Formatter, path: str | Path) -> None:
        super().__init__(name, formatter)
        self.path = Path(path)
        self._fd: int | None = None

    def _open(self) -> int:
        if self._fd is not None:
            try:
                if os.stat(self.path).st_ino == os.fstat(self._fd).st_ino:
                    return self._fd
            except FileNotFoundError:
                pass
            self.close()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        size = os.fstat(fd).st_size
        if size:
            with open(self.path, "rb") as existing:
                existing.seek(size - 1)
                if existing.read(1) != b"\n":
                    os.write(fd, b"\n")
        self._fd = fd
        return fd

    def _send(self, records: list[ExportRecord], messages: list[str]) -> None:
        data = ("\n".join(messages) + "\n").encode("utf-8")
        try:
            fd = self._open()
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError as exc:
            self.close()
            raise DeliveryError(f"{self.path}: {exc}") from exc

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def hmac_signature(secret: str, body: bytes) -> str:
    """The X-Wardgate-Signature value: "sha256=" + hex HMAC-SHA256 of the exact body bytes."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


class HttpSink(Sink):
    """POSTs each batch as newline-delimited messages. With a secret, the body is signed in
    `X-Wardgate-Signature: sha256=<hex HMAC-SHA256(secret, body)>` so the receiver can check it
    came from Wardgate unmodified; `X-Wardgate-Seq` names the batch's first and last seq."""

    def __init__(
        self,
        name: str,
        formatter: Formatter,
        url: str,
        *,
        secret: str = "",
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        verify: bool | ssl.SSLContext = True,
        content_type: str = "application/x-ndjson",
    ) -> None:
        super().__init__(name, formatter)
        self.url = url
        self.secret = secret
        self.headers = {"Content-Type": content_type, **(headers or {})}
        self.timeout = timeout
        self.verify = verify
        self._client: httpx.Client | None = None
        if not secret:
            log.warning("SIEM sink %s: no HMAC secret, deliveries are not signed", name)

    def _send(self, records: list[ExportRecord], messages: list[str]) -> None:
        body = ("\n".join(messages) + "\n").encode("utf-8")
        headers = {**self.headers, "X-Wardgate-Seq": f"{records[0]['seq']}-{records[-1]['seq']}"}
        if self.secret:
            headers[SIGNATURE_HEADER] = hmac_signature(self.secret, body)
        if self._client is None:
            self._client = httpx.Client(timeout=self.timeout, verify=self.verify)
        try:
            response = self._client.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            self.close()
            raise DeliveryError(f"POST {self.url}: {exc!r}") from exc
        if not 200 <= response.status_code < 300:
            raise DeliveryError(
                f"POST {self.url}: HTTP {response.status_code} {response.text[:300]!r}"
            )
        if isinstance(self.formatter, ElasticsearchBulkFormatter):
            self._check_bulk(response)

    def _check_bulk(self, response: httpx.Response) -> None:
        # _bulk answers 200 even when items fail; 409 means the record is already indexed (a
        # re-sent batch), which is what at-least-once expects.
        try:
            answer = response.json()
        except ValueError as exc:
            raise DeliveryError(f"POST {self.url}: not a bulk response") from exc
        if not answer.get("errors"):
            return
        for item in answer.get("items", []):
            result = next(iter(item.values()), {})
            if result.get("status") not in (200, 201, 409):
                raise DeliveryError(f"POST {self.url}: bulk item failed: {result!r:.300}")

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def octet_frame(message: str) -> bytes:
    """RFC 6587 octet counting: "<length> <message>", length in bytes."""
    data = message.encode("utf-8")
    return str(len(data)).encode("ascii") + b" " + data


class SyslogTcpSink(Sink):
    """RFC 5424 messages over TCP (RFC 6587, octet-counting framing) or TLS (RFC 5425, same
    framing). The connection is opened lazily and kept across batches."""

    def __init__(
        self,
        name: str,
        formatter: Formatter,
        host: str,
        port: int,
        *,
        tls: bool = False,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        server_name: str | None = None,
        verify: bool = True,
        timeout: float = 30.0,
    ) -> None:
        super().__init__(name, formatter)
        self.host = host
        self.port = port
        self.timeout = timeout
        self.server_name = server_name or host
        self._context: ssl.SSLContext | None = None
        if tls:
            context = ssl.create_default_context(cafile=ca_file)
            if not verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            if cert_file:
                context.load_cert_chain(cert_file, key_file)  # mutual TLS
            self._context = context
        self._sock: socket.socket | None = None

    def _connection(self) -> socket.socket:
        if self._sock is not None and self._peer_closed(self._sock):
            log.info(
                "syslog receiver %s:%s closed the connection; reconnecting", self.host, self.port
            )
            self.close()
        if self._sock is None:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
            try:
                if self._context is not None:
                    sock = self._context.wrap_socket(sock, server_hostname=self.server_name)
            except (OSError, ssl.SSLError):
                sock.close()
                raise
            self._sock = sock
        return self._sock

    @staticmethod
    def _peer_closed(sock: socket.socket) -> bool:
        """Whether the receiver closed (or reset) the connection while we were idle.

        A syslog receiver sends no data, so a readable socket means EOF, a reset, or TLS
        records such as TLS 1.3 session tickets; a non-blocking read tells them apart (and
        lets the TLS layer consume those records)."""
        try:
            readable, _, _ = select.select([sock], [], [], 0)
        except (OSError, ValueError):
            return True
        if not readable:
            return False
        timeout = sock.gettimeout()
        sock.setblocking(False)
        try:
            return sock.recv(4096) == b""
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            return False  # only TLS housekeeping: the connection is fine
        except OSError:  # includes ssl.SSLError
            return True
        finally:
            sock.settimeout(timeout)

    def _send(self, records: list[ExportRecord], messages: list[str]) -> None:
        data = b"".join(octet_frame(message) for message in messages)
        try:
            self._connection().sendall(data)
        except (OSError, ssl.SSLError) as exc:
            self.close()
            raise DeliveryError(f"syslog {self.host}:{self.port}: {exc!r}") from exc

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        try:
            # Tell the receiver we are done (EOF after the last frame) before closing.
            if isinstance(sock, ssl.SSLSocket):
                sock.settimeout(2.0)  # close_notify; do not hang on a receiver that never answers
                sock = sock.unwrap()
            sock.shutdown(socket.SHUT_WR)
        except (OSError, ssl.SSLError, ValueError):
            pass
        finally:
            sock.close()


def describe(sink: Sink) -> str:
    for attr in ("url", "path"):
        if hasattr(sink, attr):
            return f"{sink.name} ({getattr(sink, attr)})"
    if isinstance(sink, SyslogTcpSink):
        kind = "syslog+tls" if sink._context else "syslog"
        return f"{sink.name} ({kind}://{sink.host}:{sink.port})"
    return sink.name
