"""`manage.py verify_pack PATH [--public-key PEM_FILE]`: check a pack's signature and every file's
SHA-256; exit 1 naming each problem."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from reports.config import reports_config
from reports.keys import PackKeyError, load_private_key, load_public_key
from reports.pack.manifest import verify_pack_file


class Command(BaseCommand):
    help = ("Verify an evidence pack: the Ed25519 signature over manifest.json, and that every "
            "file in the zip is listed there with the right SHA-256 and size (nothing missing, "
            "nothing extra).")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help="the pack (.zip)")
        parser.add_argument("--public-key", default="",
                            help="PEM file of the signing public key (default: this system's "
                                 "key, from WARDGATE_PACK_SIGNING_KEY)")

    def handle(self, *args: Any, path: str, public_key: str, **options: Any) -> None:
        try:
            if public_key:
                key = load_public_key(Path(public_key).read_text())
            else:
                key = load_private_key(reports_config().signing_key).public_key()
        except (OSError, PackKeyError) as exc:
            raise CommandError(f"cannot read the public key: {exc}", returncode=1) from None
        check = verify_pack_file(Path(path), key)
        if not check.ok:
            raise CommandError(f"pack {path} FAILED verification:\n- "
                               + "\n- ".join(check.problems), returncode=1)
        pack = check.manifest.get("pack", {})
        period = pack.get("period", {})
        self.stdout.write(
            f"pack OK: {check.files_checked} files match manifest.json, signed by Ed25519 key "
            f"{check.key_id}\n  pack {pack.get('uuid')}, period {period.get('start')} to "
            f"{period.get('end_exclusive')} (exclusive)")
