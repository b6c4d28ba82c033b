"""A BigQuery MCP server (official `mcp` SDK), the emulator it runs against locally, and demo data."""
