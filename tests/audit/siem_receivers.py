"""Real receivers for the SIEM export tests: a syslog server over TCP or TLS that parses RFC 6587
octet-counted frames, an HTTP collector that checks the HMAC signature, and a self-signed
certificate for TLS."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import http.server
import ipaddress
import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SD_SEQ = re.compile(r' seq="(\d+)"')


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


@dataclass
class SelfSignedCert:
    cert_file: Path
    key_file: Path


def make_self_signed_cert(directory: Path, host: str = "localhost") -> SelfSignedCert:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(host), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return SelfSignedCert(cert_file, key_file)


@dataclass
class SyslogReceiver:
    """Accepts any number of connections (one thread each) and records every frame. With
    `drop_after_frames`, the first connection is closed by the receiver after that many frames
    (a receiver restart, as the exporter sees it)."""

    cert: SelfSignedCert | None = None
    drop_after_frames: int | None = None
    messages: list[str] = field(default_factory=list)
    connections: int = 0
    closed: int = 0
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.2)
        self.port = self._server.getsockname()[1]
        self._context: ssl.SSLContext | None = None
        if self.cert is not None:
            self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._context.load_cert_chain(self.cert.cert_file, self.cert.key_file)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._accept_loop, daemon=True)

    def __enter__(self) -> SyslogReceiver:
        self._accept.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._accept.join(5)
        for thread in self._threads:
            thread.join(5)
        self._server.close()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                number = self.connections
            thread = threading.Thread(target=self._serve, args=(conn, number), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        try:
            if self._context is not None:
                conn = self._context.wrap_socket(conn, server_side=True)
            conn.settimeout(0.2)
            buffer = b""
            frames = 0
            while not self._stop.is_set():
                try:
                    chunk = conn.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    break
                buffer += chunk
                while True:
                    space = buffer.find(b" ")
                    if space < 0:
                        break
                    length = int(buffer[:space])
                    if len(buffer) < space + 1 + length:
                        break
                    frame = buffer[space + 1 : space + 1 + length]
                    buffer = buffer[space + 1 + length :]
                    with self._lock:
                        self.messages.append(frame.decode("utf-8"))
                    frames += 1
                if (
                    number == 1
                    and self.drop_after_frames is not None
                    and frames >= self.drop_after_frames
                    and not buffer
                ):
                    break
            if buffer:
                self.errors.append(f"connection {number}: {len(buffer)} bytes of a partial frame")
        except (OSError, ssl.SSLError, ValueError) as exc:
            self.errors.append(f"connection {number}: {exc!r}")
        finally:
            conn.close()
            with self._lock:
                self.closed += 1

    def seqs(self) -> list[int]:
        with self._lock:
            found = [SD_SEQ.search(message) for message in self.messages]
        return [int(match.group(1)) for match in found if match]


@dataclass
class HttpCollector:
    """An HTTP endpoint that checks X-Wardgate-Signature and keeps what it accepted. `status`
    decides the answer (a callable for per-request answers); `bulk_answer` makes it answer
    like Elasticsearch's _bulk API."""

    secret: str
    status: int | Callable[[int], int] = 200
    bulk_answer: Callable[[list[dict[str, Any]]], dict[str, Any]] | None = None
    bodies: list[bytes] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    bad_signatures: int = 0

    def __post_init__(self) -> None:
        collector = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                expected = (
                    "sha256="
                    + hmac.new(collector.secret.encode(), body, hashlib.sha256).hexdigest()
                )
                given = self.headers.get("X-Wardgate-Signature", "")
                if not hmac.compare_digest(expected, given):
                    collector.bad_signatures += 1
                    self.send_response(401)
                    self.end_headers()
                    return
                number = len(collector.bodies) + 1
                status = (
                    collector.status(number) if callable(collector.status) else collector.status
                )
                answer = b'{"text":"Success","code":0}'
                if 200 <= status < 300:
                    collector.bodies.append(body)
                    collector.headers.append(dict(self.headers))
                    if collector.bulk_answer is not None:
                        lines = [json.loads(line) for line in body.splitlines() if line]
                        answer = json.dumps(collector.bulk_answer(lines)).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/collect"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> HttpCollector:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for body in self.bodies for line in body.splitlines() if line]
