"""The Ed25519 key that signs evidence-pack manifests (no Django imports).

WARDGATE_PACK_SIGNING_KEY is PEM (PKCS#8 private key) or base64 of the 32 raw private bytes. The
key id is the first 16 hex digits of SHA-256 over the raw public key; the manifest names it so
a verifier can tell which published key to use, without trusting anything inside the pack.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from wardgate import keys as key_text
from wardgate.keys import SigningKeyError, key_id, public_pem

__all__ = ["PackKeyError", "key_id", "key_problem", "load_private_key",
           "load_public_key", "public_pem", "signature_valid"]

SETTING = "WARDGATE_PACK_SIGNING_KEY"


# One implementation of Ed25519 key handling for the project: wardgate/keys.py.
PackKeyError = SigningKeyError


def load_private_key(text: str) -> Ed25519PrivateKey:
    return key_text.load_private_key(text, SETTING)


def load_public_key(text: str) -> Ed25519PublicKey:
    return key_text.load_public_key(text, "the public key")


def signature_valid(key: Ed25519PublicKey, message: bytes, signature: bytes) -> bool:
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


def key_problem(text: str) -> str | None:
    """Why `text` is not a usable signing key, or None (for the settings check at start-up)."""
    return key_text.signing_key_problem(text, SETTING)

