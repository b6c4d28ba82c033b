"""Ed25519 keys given as text in the environment (no Django, no app imports: settings use it).

Keys are given as PEM (PKCS#8 private / SubjectPublicKeyInfo public) or as base64 of the 32 raw
bytes. A key's id is the first 16 hex digits of SHA-256 over its raw public bytes, so what a key
signs can name it without embedding anything a verifier should trust. Used for the checkpoint
signing key (audit/signing.py) and the evidence-pack signing key (reports/keys.py); the settings
check both at start-up with `signing_key_problem`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


class SigningKeyError(ValueError):
    """A configured key cannot be read."""


def _raw_32(text: str, what: str) -> bytes:
    compact = "".join(text.split())
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            raw = decode(compact + "=" * (-len(compact) % 4))
        except (binascii.Error, ValueError):
            continue
        if len(raw) == 32:
            return raw
    raise SigningKeyError(f"{what} must be PEM or base64 of 32 raw bytes")


def load_private_key(text: str, name: str = "the checkpoint signing key") -> Ed25519PrivateKey:
    """An Ed25519 private key from PEM (PKCS#8) or base64 of the 32 raw bytes; `name` says in
    errors which setting it came from (checkpoints, evidence packs)."""
    text = text.strip()
    if not text:
        raise SigningKeyError(f"{name} is not set")
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(text.encode("ascii"), password=None)
        except (ValueError, TypeError) as exc:
            raise SigningKeyError(f"{name} is not a readable PEM private key: {exc}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise SigningKeyError(f"{name} must be an Ed25519 key")
        return key
    return Ed25519PrivateKey.from_private_bytes(_raw_32(text, name))


def load_public_key(text: str, name: str = "a checkpoint verify key") -> Ed25519PublicKey:
    text = text.strip()
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(text.encode("ascii"))
        except ValueError as exc:
            raise SigningKeyError(f"{name} is not a readable PEM public key: {exc}") from None
        if not isinstance(key, Ed25519PublicKey):
            raise SigningKeyError(f"{name} must be an Ed25519 key")
        return key
    return Ed25519PublicKey.from_public_bytes(_raw_32(text, name))


def public_raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key: Ed25519PublicKey) -> str:
    return hashlib.sha256(public_raw(key)).hexdigest()[:16]


def public_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def signing_key_problem(text: str, name: str = "the checkpoint signing key") -> str | None:
    """Why `text` is not a usable signing key, or None. For the settings check at start-up."""
    try:
        load_private_key(text, name)
    except SigningKeyError as exc:
        return str(exc)
    return None


def demo_signing_key(secret_key: str, purpose: str = "wardgate-checkpoint-signing") -> str:
    """Demo-only: a deterministic key from the Django secret, so the demo needs no extra setup
    (one per purpose). Production mode requires real keys."""
    seed = hashlib.sha256(f"{purpose}:{secret_key}".encode()).digest()
    return base64.b64encode(seed).decode("ascii")


def demo_public_key(secret_key: str, purpose: str = "wardgate-checkpoint-signing") -> str:
    """The public half (base64 of the raw bytes) of `demo_signing_key(secret_key, purpose)`:
    the key earlier demos signed with, kept only to verify what they signed."""
    public = load_private_key(demo_signing_key(secret_key, purpose)).public_key()
    return base64.b64encode(public_raw(public)).decode("ascii")
