"""A loopback OAuth token endpoint that behaves like Google's for service-account keys.

`service_account()` returns a fresh key JSON whose ``token_uri`` points here. A POST of the
JWT-bearer grant is answered only when the assertion is signed by that key (checked with its
public key), is addressed to this endpoint and asks for a scope; the access token it returns
lives ``lifetime`` seconds. ``valid(token)`` is what a resource server (the stand-in BigQuery
MCP server) asks, like Google's tokeninfo. Every grant is kept in ``issued`` for the tests.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# google-auth addresses service-account assertions to Google's token endpoint whatever the
# key's token_uri says; Google's endpoint accepts that audience, and so does this one.
GOOGLE_AUDIENCE = "https://oauth2.googleapis.com/token"


@dataclass
class Grant:
    token: str
    client_email: str
    scope: str
    expires_at: float


@dataclass
class GoogleTokenEndpoint:
    lifetime: float = 3600.0
    fail: bool = False  # answer every grant with an error (minting fails)
    issued: list[Grant] = field(default_factory=list)
    keys: dict[str, Any] = field(default_factory=dict)  # client_email -> public key
    _server: ThreadingHTTPServer | None = None

    def start(self) -> GoogleTokenEndpoint:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                # /tokeninfo?access_token=…, as Google's: 200 for a live token, else 400
                query = parse_qs(self.path.partition("?")[2])
                token = (query.get("access_token") or [""])[0]
                ok = endpoint.valid(token)
                data = json.dumps({"ok": ok}).encode()
                self.send_response(200 if ok else 400)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("content-length") or 0)
                form = parse_qs(self.rfile.read(length).decode())
                status, body = endpoint._grant(form)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def token_uri(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/token"

    @property
    def tokeninfo_url(self) -> str:
        return self.token_uri.replace("/token", "/tokeninfo")

    def service_account(self, project: str = "wardgate-demo") -> dict[str, Any]:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        email = f"wardgate-{secrets.token_hex(4)}@{project}.iam.gserviceaccount.com"
        self.keys[email] = key.public_key()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
        return {"type": "service_account", "project_id": project,
                "private_key_id": secrets.token_hex(8), "private_key": pem,
                "client_email": email, "client_id": "1", "token_uri": self.token_uri}

    def _grant(self, form: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        if self.fail:
            return 400, {"error": "invalid_grant", "error_description": "endpoint told to fail"}
        if form.get("grant_type") != [GRANT] or len(form.get("assertion") or []) != 1:
            return 400, {"error": "unsupported_grant_type"}
        assertion = form["assertion"][0]
        try:
            claims = jwt.decode(assertion, options={"verify_signature": False})
            public_key = self.keys[claims["iss"]]
            claims = jwt.decode(assertion, public_key, algorithms=["RS256"],
                                audience=[self.token_uri, GOOGLE_AUDIENCE], issuer=claims["iss"])
        except (KeyError, jwt.PyJWTError):
            return 400, {"error": "invalid_grant", "error_description": "bad assertion"}
        scope = str(claims.get("scope") or "")
        if not scope:
            return 400, {"error": "invalid_scope"}
        token = f"ya29.test-{secrets.token_urlsafe(24)}"
        self.issued.append(Grant(token, claims["iss"], scope, time.time() + self.lifetime))
        return 200, {"access_token": token, "token_type": "Bearer",
                     "expires_in": max(int(self.lifetime), 1)}

    def valid(self, token: str, scope: str = "https://www.googleapis.com/auth/bigquery") -> bool:
        now = time.time()
        return any(g.token == token and g.expires_at > now and scope in g.scope.split()
                   for g in self.issued)
