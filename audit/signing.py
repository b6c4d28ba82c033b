"""Ed25519 keys and the signed checkpoint message (no Django imports).

A checkpoint signs one canonical ASCII message,

    wardgate-checkpoint:v1|<seq>|<hash>|<time>

with <time> as `audit.chain.canonical_datetime` writes it (ISO-8601 UTC, microseconds). The
version prefix keeps a signature over this message from being valid for any other purpose.

Key text handling (PEM or base64 of 32 raw bytes, key ids) is wardgate/keys.py's, re-exported
here; exported checkpoints name their key by its id.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from wardgate.keys import (
    SigningKeyError,
    demo_signing_key,
    key_id,
    load_private_key,
    load_public_key,
    public_pem,
    public_raw,
    signing_key_problem,
)

from .chain import canonical_datetime  # Django-free, like this module

__all__ = ["MESSAGE_PREFIX", "SigningKeyError", "checkpoint_message", "demo_signing_key", "key_id",
           "load_private_key", "load_public_key", "public_pem", "public_raw", "sign",
           "signature_valid", "signing_key_problem"]

MESSAGE_PREFIX = "wardgate-checkpoint:v1"


def checkpoint_message(seq: int, chain_hash: str, at: datetime | str) -> bytes:
    when = at if isinstance(at, str) else canonical_datetime(at)
    for part in (chain_hash, when):
        if "|" in part or not part.isascii():
            raise ValueError("checkpoint fields must be ASCII without '|'")
    return f"{MESSAGE_PREFIX}|{int(seq)}|{chain_hash}|{when}".encode("ascii")


def sign(key: Ed25519PrivateKey, message: bytes) -> str:
    return base64.b64encode(key.sign(message)).decode("ascii")


def signature_valid(key: Ed25519PublicKey, message: bytes, signature: str) -> bool:
    try:
        key.verify(base64.b64decode(signature, validate=True), message)
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True
