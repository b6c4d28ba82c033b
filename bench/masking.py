"""Masking cost per call: mask_tool_result on execute_sql results as our BigQuery MCP server
returns them (structured content + its JSON text), and mask_rows alone.

    python bench/masking.py [--repeat 200]

Prints the best CPU milliseconds per call over five batches (CPU time is steadier than wall time
on a busy host).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from policy.masking import (  # noqa: E402
    MaskAction,
    MaskingPolicy,
    MaskingSummary,
    mask_rows,
    mask_tool_result,
)


def execute_sql_result(rows: int, heavy: bool) -> tuple[dict[str, Any], dict[str, frozenset[str]]]:
    """An execute_sql result as our BigQuery MCP server returns it (structured + JSON text).

    Typical mix: id, email (partial), full_name (redact), phone (tokenize), timestamp, country,
    amount, status, order ref, free-text notes (an email in one row in ten). Heavy mix: five
    classified columns (one multi-class) and a phone number in free text in every row."""
    column_classes: dict[str, frozenset[str]] = {
        "email": frozenset({"email"}),
        "full_name": frozenset({"name"}),
        "phone": frozenset({"phone"}),
    }
    data: list[dict[str, Any]] = []
    for i in range(rows):
        row: dict[str, Any] = {
            "id": 100_000 + i,
            "email": f"user{i}@example.com",
            "full_name": f"Jane Q{i} Doe",
            "phone": f"+1 555 010 {i:04d}",
            "created_at": f"2024-01-02T10:11:{i % 60:02d}Z",
            "country": ("US", "DE", "FR")[i % 3],
            "amount": 12.5 * i,
            "status": ("active", "churned")[i % 2],
            "order_ref": f"ORD-{i:06d}",
            "notes": f"Renewal call, see ticket {i}"
            + (f"; contact jane{i}@example.com" if i % 10 == 0 else ""),
        }
        if heavy:
            row["ssn"] = f"123-45-{1000 + i:04d}"
            row["contact"] = f"Jane Doe <jane{i}@example.com>"
            row["notes"] = f"note {i}: call 555-010-{i:04d}"
            del row["country"], row["status"]
        data.append(row)
    if heavy:
        column_classes["ssn"] = frozenset({"ssn"})
        column_classes["contact"] = frozenset({"name", "email"})
    payload = {
        "columns": [{"name": n, "type": "STRING"} for n in data[0]],
        "rows": data,
        "row_count": rows,
        "total_rows": rows,
        "truncated": False,
        "total_bytes_processed": 1024,
    }
    result = {
        "content": [{"type": "text", "text": json.dumps(payload, separators=(",", ":"))}],
        "structuredContent": payload,
    }
    return result, column_classes


def bench_masking(repeat: int = 200) -> dict[str, float]:
    """Time mask_tool_result on execute_sql results (structured content + its JSON text, the
    shape our BigQuery MCP server returns) and mask_rows. Prints and returns the best CPU
    milliseconds per call over five batches."""
    policy = MaskingPolicy(
        actions={"email": MaskAction.PARTIAL, "phone": MaskAction.TOKENIZE, "name": "redact"},
        token_key=b"bench-key",
    )
    figures: dict[str, float] = {}

    def timed(label: str, fn: Callable[[], Any]) -> None:
        fn()
        best = float("inf")
        for _ in range(5):
            start = time.process_time()  # CPU time: steadier than wall time on a busy host
            for _ in range(repeat):
                fn()
            best = min(best, (time.process_time() - start) / repeat)
        figures[label] = best * 1000
        print(f"{label:<52} {best * 1000:8.3f} ms")

    for heavy in (False, True):
        for rows in (50, 100):
            result, classes = execute_sql_result(rows, heavy)
            mix = "heavy" if heavy else "typical"
            timed(
                f"mask_tool_result {rows}x10 {mix}, structured+text",
                lambda r=result, c=classes: mask_tool_result(r, c, policy, may_hold_sensitive=True),
            )
        text_only = {"content": result["content"]}
        timed(
            f"mask_tool_result 100x10 {mix}, text only",
            lambda r=text_only, c=classes: mask_tool_result(r, c, policy, may_hold_sensitive=True),
        )
        data = result["structuredContent"]["rows"]
        timed(
            f"mask_rows 100x10 {mix}",
            lambda d=data, c=classes: mask_rows(d, c, policy, MaskingSummary()),
        )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200)
    bench_masking(parser.parse_args().repeat)


if __name__ == "__main__":
    main()
