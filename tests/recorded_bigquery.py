"""A local HTTP endpoint that answers BigQuery job inserts with a recorded response.

The emulator reports 0 bytes for dry runs, so cost figures are tested with the real
google-cloud-bigquery client reading a response recorded from BigQuery itself.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"


class RecordedBigQuery:
    def __init__(self, fixture: str = "bigquery_dry_run_response.json") -> None:
        body = (FIXTURES / fixture).read_bytes()
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("content-length", 0))
                outer.requests.append({"path": self.path,
                                       "body": json.loads(self.rfile.read(length) or b"{}")})
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> RecordedBigQuery:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
