"""`python -m reports.chain_probe`: run the audit chain verification and print its result as JSON.

The pack builder runs this in a child process, on the same database, so that verifying the
whole chain (CPU-bound hashing) overlaps with writing the pack's files instead of adding to it.
"""

from __future__ import annotations

import json
import os
import sys


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wardgate.settings")
    import django

    django.setup()
    from reports.evidence.chain import chain_verify

    json.dump(chain_verify(), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
