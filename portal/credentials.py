"""Encryption at rest for upstream credentials (SC-28).

Credentials are sealed with Fernet (AES-128-CBC + HMAC-SHA256) under a key derived from
WARDGATE_FIELD_ENCRYPTION_KEY. They are decrypted only inside the gateway when it talks to
the upstream, and never returned by any API, page, log or error.
"""

from __future__ import annotations

import base64
import hashlib
import json
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from portal.config import portal_config


class CredentialsError(Exception):
    pass


@lru_cache(maxsize=4)
def _fernet(key_material: str) -> Fernet:
    digest = hashlib.sha256(("wardgate-credentials:" + key_material).encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def seal_credentials(data: dict[str, Any]) -> bytes:
    return _fernet(portal_config().field_encryption_key).encrypt(
        json.dumps(data, sort_keys=True).encode()
    )


def open_credentials(blob: bytes | memoryview | None) -> dict[str, Any]:
    if not blob:
        return {}
    try:
        raw = _fernet(portal_config().field_encryption_key).decrypt(bytes(blob))
    except InvalidToken:
        # Wrong key or tampered ciphertext: refuse rather than run without credentials.
        raise CredentialsError("stored credentials cannot be decrypted with the current key") from None
    return json.loads(raw)
