"""Google access tokens on the data path: what a call pays for its upstream credentials.

A cached token costs a lookup (the token source is kept per credentials object); a refresh
signs a JWT with the service-account key and asks the token endpoint (here a loopback one, so
the figure is the gateway's own cost, not Google's latency). Refreshes happen once per token
lifetime (about an hour with Google), not per call.

    python bench/google_token.py [--iterations 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


async def main(iterations: int) -> None:
    import os

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wardgate.settings")
    django.setup()
    from proxy.directory import UpstreamSpec
    from proxy.pipeline import Pipeline
    from tests.google_token_endpoint import GoogleTokenEndpoint

    endpoint = GoogleTokenEndpoint(lifetime=3600).start()
    spec = UpstreamSpec(slug="bench", transport="http", url="http://127.0.0.1:1/mcp",
                        command=(), sql_tools={},
                        credentials={"google": {"service_account": endpoint.service_account()}})
    pipeline = Pipeline.__new__(Pipeline)  # only the token cache is exercised
    pipeline.tokens = {}
    await pipeline._google_token(spec)  # first mint
    cached = []
    for _ in range(iterations):
        started = time.perf_counter()
        await pipeline._google_token(spec)
        cached.append((time.perf_counter() - started) * 1e6)
    source = pipeline.tokens["bench"][2]
    minted = []
    for _ in range(max(iterations // 100, 10)):
        source._refresh_at = source._refresh_at.replace(year=2000)  # due now
        started = time.perf_counter()
        await pipeline._google_token(spec)
        minted.append((time.perf_counter() - started) * 1e3)
    endpoint.stop()
    print(f"cached token: median {statistics.median(cached):.1f} us, "
          f"p99 {sorted(cached)[int(len(cached) * 0.99) - 1]:.1f} us ({len(cached)} calls)")
    print(f"refresh (sign + loopback token endpoint): median {statistics.median(minted):.1f} ms "
          f"({len(minted)} refreshes)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=2000)
    asyncio.run(main(parser.parse_args().iterations))
