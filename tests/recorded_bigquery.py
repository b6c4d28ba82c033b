"""A local BigQuery endpoint that answers dry runs with a response recorded from BigQuery.

The emulator reports 0 bytes for dry runs, so cost figures are tested with the real
google-cloud-bigquery client reading a recorded response. With `upstream` set, every other
request is passed to that endpoint (the emulator), so schemas and queries stay real.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

FIXTURES = Path(__file__).parent / "fixtures"


class RecordedBigQuery:
    def __init__(self, fixture: str = "bigquery_dry_run_response.json",
                 upstream: str | None = None) -> None:
        recorded = (FIXTURES / fixture).read_bytes()
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _pass_on(self, body: bytes | None) -> None:
                if upstream is None:
                    self._reply(404, b"{}", "application/json")
                    return
                resp = httpx.request(self.command, upstream + self.path, content=body,
                                     headers={"content-type": "application/json"}, timeout=30)
                self._reply(resp.status_code, resp.content,
                            resp.headers.get("content-type", "application/json"))

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                self._pass_on(None)

            def do_DELETE(self) -> None:  # noqa: N802
                self._pass_on(None)

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("content-length", 0))
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw or b"{}")
                is_dry_run = "/jobs" in self.path and body.get("configuration", {}).get("dryRun")
                outer.requests.append({"path": self.path, "body": body, "dry_run": bool(is_dry_run)})
                if is_dry_run or upstream is None:
                    self._reply(200, recorded, "application/json")
                else:
                    self._pass_on(raw)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def dry_runs(self) -> int:
        return sum(1 for r in self.requests if r["dry_run"])

    def __enter__(self) -> RecordedBigQuery:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
