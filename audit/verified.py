"""The verified-through marker: how far a previous verification recomputed the chain, signed so
that the next one may start there (`verify_log(incremental=True)`).

Signed message, with the checkpoint signing key (audit/signing.py's conventions):

    wardgate-verified-through:v1|<seq>|<hash>|<keyed_since or ->|<verified_at>

An incremental verification trusts the records up to a marker's seq only when all of these hold,
and otherwise verifies in full: the marker's signature verifies against the configured keys; a
checkpoint at that seq with that hash has a valid signature and matches its exported write-once
copy; and the record at that seq still has that hash (the checkpoint link: an edit before it,
with every later hash recomputed, changes that record's hash). What it cannot see is an edit
before the marker that left every stored hash as it was (content no longer matching its own
hash): only a full recomputation finds that, so `audit_verify --full` stays, and packs say which
mode they used.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import DEFAULT_DB_ALIAS
from django.utils import timezone

from .chain import canonical_datetime
from .control_models import AuditVerifiedThrough
from .signing import key_id, sign, signature_valid

MESSAGE_PREFIX = "wardgate-verified-through:v1"


def marker_message(seq: int, chain_hash: str, keyed_since: int | None, at: datetime | str) -> bytes:
    when = at if isinstance(at, str) else canonical_datetime(at)
    for part in (chain_hash, when):
        if "|" in part or not part.isascii():
            raise ValueError("marker fields must be ASCII without '|'")
    keyed = "-" if keyed_since is None else str(int(keyed_since))
    return f"{MESSAGE_PREFIX}|{int(seq)}|{chain_hash}|{keyed}|{when}".encode("ascii")


@dataclass(frozen=True, slots=True)
class VerifiedThrough:
    seq: int
    hash: str
    keyed_since: int | None
    verified_at: str


def verified_through_load(*, using: str = DEFAULT_DB_ALIAS
                          ) -> tuple[VerifiedThrough | None, str | None, str]:
    """The furthest marker, the problem if it is forged, and otherwise why there is none.

    Only the current checkpoint signing key vouches: keys kept for verifying older checkpoints
    (WARDGATE_CHECKPOINT_VERIFY_KEYS) may be public (the demo's), so a marker under one of them
    is not trusted (verified in full; after a rotation the next verification re-signs). Only the
    furthest row is read: an attacker's older or deleted rows only make verification start
    earlier."""
    from .checkpoints import signing_key
    from .config import audit_config

    row = AuditVerifiedThrough.objects.using(using).order_by("-seq", "-id").first()
    if row is None:
        return None, None, "no verified-through marker yet"
    if not audit_config().checkpoint_signing_key:
        return None, None, "no checkpoint signing key here to check the marker's signature"
    current = signing_key().public_key()
    if row.key_id != key_id(current):
        return None, None, (f"the verified-through marker at record {row.seq} is not signed by "
                            f"the current checkpoint signing key")
    at = canonical_datetime(row.verified_at)
    try:
        message = marker_message(row.seq, row.hash, row.keyed_since, at)
    except ValueError:
        message = b""
    if not message or not signature_valid(current, message, row.signature):
        problem = (f"the verified-through marker at record {row.seq} does not carry a valid "
                   f"signature: it was forged or altered (verified in full instead)")
        return None, problem, problem
    return VerifiedThrough(row.seq, row.hash, row.keyed_since, at), None, ""


def verified_through_record(seq: int, chain_hash: str, keyed_since: int | None, *,
                            using: str = DEFAULT_DB_ALIAS) -> VerifiedThrough | None:
    """Sign and store a marker; None when no signing key is configured (verifiers that hold
    only public keys verify but cannot vouch)."""
    from .checkpoints import signing_key
    from .config import audit_config

    if not audit_config().checkpoint_signing_key:
        return None
    key = signing_key()
    at = timezone.now()
    row = AuditVerifiedThrough.objects.using(using).create(
        seq=seq, hash=chain_hash, keyed_since=keyed_since, verified_at=at,
        signature=sign(key, marker_message(seq, chain_hash, keyed_since, at)),
        key_id=key_id(key.public_key()))
    return VerifiedThrough(seq, chain_hash, keyed_since, canonical_datetime(row.verified_at))
