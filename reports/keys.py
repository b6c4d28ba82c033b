"""The Ed25519 key that signs evidence-pack manifests (no Django imports: settings use it).

WARDGATE_PACK_SIGNING_KEY is PEM (PKCS#8 private key) or base64 of the 32 raw private bytes. The
key id is the first 16 hex digits of SHA-256 over the raw public key; the manifest names it so
a verifier can tell which published key to use, without trusting anything inside the pack.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

SETTING = "WARDGATE_PACK_SIGNING_KEY"


class PackKeyError(ValueError):
    """A configured or given key cannot be used."""


def _raw_32(text: str, what: str) -> bytes:
    compact = "".join(text.split())
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            raw = decode(compact + "=" * (-len(compact) % 4))
        except (binascii.Error, ValueError):
            continue
        if len(raw) == 32:
            return raw
    raise PackKeyError(f"{what} must be PEM or base64 of 32 raw bytes")


def load_private_key(text: str) -> Ed25519PrivateKey:
    text = text.strip()
    if not text:
        raise PackKeyError(f"{SETTING} is not set")
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(text.encode("ascii"), password=None)
        except (ValueError, TypeError) as exc:
            raise PackKeyError(f"{SETTING} is not a readable PEM private key: {exc}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise PackKeyError(f"{SETTING} must be an Ed25519 key")
        return key
    return Ed25519PrivateKey.from_private_bytes(_raw_32(text, SETTING))


def load_public_key(text: str) -> Ed25519PublicKey:
    text = text.strip()
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(text.encode("ascii"))
        except ValueError as exc:
            raise PackKeyError(f"not a readable PEM public key: {exc}") from None
        if not isinstance(key, Ed25519PublicKey):
            raise PackKeyError("the public key must be an Ed25519 key")
        return key
    return Ed25519PublicKey.from_public_bytes(_raw_32(text, "the public key"))


def public_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def key_id(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def signature_valid(key: Ed25519PublicKey, message: bytes, signature: bytes) -> bool:
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


def key_problem(text: str) -> str | None:
    """Why `text` is not a usable signing key, or None (for the settings check at start-up)."""
    try:
        load_private_key(text)
    except PackKeyError as exc:
        return str(exc)
    return None


def demo_key(secret_key: str) -> str:
    """Demo only: a key derived from the Django secret, so the demo needs no setup. Refused in
    production mode (the settings require WARDGATE_PACK_SIGNING_KEY there)."""
    seed = hashlib.sha256(f"wardgate-evidence-pack-signing:{secret_key}".encode()).digest()
    return base64.b64encode(seed).decode("ascii")
