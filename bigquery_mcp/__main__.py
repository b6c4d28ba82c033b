"""Run the BigQuery MCP server: `python -m bigquery_mcp --transport http --port 8765`."""

from __future__ import annotations

import argparse
import os

from .client import make_bigquery_client
from .server import build_server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="wardgate-bigquery-mcp", description=__doc__)
    parser.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--project", default=os.environ.get("BIGQUERY_PROJECT") or os.environ.get("GOOGLE_CLOUD_PROJECT")
    )
    parser.add_argument(
        "--endpoint",
        default=os.environ.get("BIGQUERY_ENDPOINT") or None,
        help="BigQuery API endpoint (e.g. the emulator); default: Google",
    )
    args = parser.parse_args(argv)
    if not args.project:
        parser.error("--project (or BIGQUERY_PROJECT) is required")
    server = build_server(make_bigquery_client(args.project, args.endpoint))
    if args.transport == "stdio":
        server.run("stdio")
    else:
        server.run("streamable-http", host=args.host, port=args.port)


if __name__ == "__main__":
    main()
