"""`manage.py pack_public_key`: print the public key that verifies this system's evidence packs."""

from __future__ import annotations

import base64
from typing import Any

from cryptography.hazmat.primitives import serialization
from django.core.management.base import BaseCommand, CommandError

from reports.config import reports_config
from reports.keys import PackKeyError, key_id, load_private_key, public_pem


class Command(BaseCommand):
    help = "Print the Ed25519 public key (PEM) that verifies evidence packs, and its key id."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            public = load_private_key(reports_config().signing_key).public_key()
        except PackKeyError as exc:
            raise CommandError(str(exc)) from None
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.stdout.write(public_pem(public).rstrip())
        self.stderr.write(f"key id {key_id(public)}; raw (base64) "
                          f"{base64.b64encode(raw).decode()}")
