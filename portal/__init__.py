"""The compliance portal: accounts, grants, requests, approvals, connections, incidents, API."""
