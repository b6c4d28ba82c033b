"""The hash chain: which fields are hashed and how, so writer and verifier agree byte for byte.

Two formats, told apart by which one a record's hash matches (no column records it):

    v2 (keyed):  hash = HMAC-SHA256(chain key, "wardgate-audit-chain:v2|" || prev_hash ||
                                    canonical_json(fields except hash))
    v1 (legacy): hash = sha256(prev_hash || canonical_json(fields except hash))

The chain key (WARDGATE_AUDIT_CHAIN_KEY) is not in the database, so someone who can write the
database but not read the key cannot recompute hashes after an edit: verification names the
edited record itself. v1 records are accepted only before the first v2 record (chains written
before keying); a v1 record after a v2 one is a rewrite without the key. The same holds for v2
records under a legacy key (WARDGATE_AUDIT_CHAIN_LEGACY_KEYS, e.g. the public key older demos
derived from their built-in secret): accepted before the first record under the current key
only.

canonical_json: sorted keys, no whitespace, ASCII only, datetimes as ISO-8601 UTC with
microseconds. The values hashed are exactly the values stored: `audit.services` normalises every
entry first (see `normalise_json`, `clean_text`) so that what SQLite or PostgreSQL hand back on
read re-serialises to the same bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

GENESIS_HASH = "0" * 64
KEYED_PREFIX = b"wardgate-audit-chain:v2|"

# Every AuditRecord column except the surrogate `id` and `hash` itself. Kept explicit (a test
# checks it against the model) so adding a column is a conscious change to the chain format.
HASHED_FIELDS: tuple[str, ...] = (
    "seq",
    "request_id",
    "event",
    "at",
    "actor",
    "auth_method",
    "source_ip",
    "user_agent",
    "connection",
    "mcp_session_id",
    "jsonrpc_method",
    "tool",
    "arguments",
    "sql_text",
    "sql_fingerprint",
    "decision",
    "reasons",
    "masking",
    "row_count",
    "result_bytes",
    "response_body",
    "response_sha256",
    "upstream_latency_ms",
    "detail",
    "prev_hash",
)


def canonical_datetime(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("audit timestamps must be timezone-aware")
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _canonical_default(value: object) -> str:
    if isinstance(value, datetime):
        return canonical_datetime(value)
    raise TypeError(f"cannot hash a {type(value).__name__} in an audit record")


def canonical_json(fields: Mapping[str, Any]) -> str:
    return json.dumps(
        {name: fields[name] for name in HASHED_FIELDS},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
        allow_nan=False,
        default=_canonical_default,
    )


def compute_hash(prev_hash: str, fields: Mapping[str, Any], key: bytes | None = None) -> str:
    """The record hash: keyed (v2) with `key`, legacy (v1) without. `fields` needs every name in
    HASHED_FIELDS; others (id, hash) are ignored."""
    body = canonical_json(fields).encode("ascii")
    if key:
        mac = hmac.new(key, KEYED_PREFIX, hashlib.sha256)
        mac.update(prev_hash.encode("ascii"))
        mac.update(body)
        return mac.hexdigest()
    digest = hashlib.sha256(prev_hash.encode("ascii"))
    digest.update(body)
    return digest.hexdigest()


def hash_format(prev_hash: str, fields: Mapping[str, Any], stored: str,
                key: bytes | None, legacy_keys: tuple[bytes, ...] = ()) -> int | None:
    """Which format `stored` is for these fields: 2 (keyed with `key`), 1 (legacy: unkeyed, or
    keyed with one of `legacy_keys`, the keys the chain was written under before `key`) or None
    (neither)."""
    if key and hmac.compare_digest(compute_hash(prev_hash, fields, key), stored):
        return 2
    if hmac.compare_digest(compute_hash(prev_hash, fields), stored):
        return 1
    for old_key in legacy_keys:
        if hmac.compare_digest(compute_hash(prev_hash, fields, old_key), stored):
            return 1
    return None


def clean_text(value: str) -> str:
    """Make a string storable unchanged by both databases.

    PostgreSQL rejects NUL in text and in jsonb, and neither driver can encode a lone surrogate;
    replacing them here (before hashing) keeps the stored value equal to the hashed one instead
    of failing the append, which would fail the audited call closed.
    """
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            value = value.encode("utf-8", "replace").decode("utf-8")
    return value


def _stable_float(value: float) -> float | int | str:
    # jsonb stores numbers as `numeric`: NaN/Infinity are refused, -0.0 comes back as 0.0 and
    # 1e+20 comes back as the integer 100000000000000000000. Store what will be read back.
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return 0.0
    if value.is_integer() and "e" in repr(value):
        return int(value)
    return value


def _stable(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, float):
        return _stable_float(value)
    if isinstance(value, dict):
        return {clean_text(k): _stable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value  # int, bool, None


class _NotPlainJSON(Exception):
    pass


# Deeper than this, or an int too long for json's str conversion, takes the dumps/loads path
# (which raises what it raises: a circular or unencodable entry fails alone).
_PLAIN_DEPTH = 64
_PLAIN_INT_BITS = 10_000


def _plain_stable(value: Any, depth: int) -> Any:
    """`_stable(json.loads(json.dumps(value)))` for values already made only of JSON types
    (exactly dict with str keys, list, str, int, float, bool, None): the round trip would give
    back an equal copy, so it is skipped. Raises _NotPlainJSON for anything else."""
    kind = type(value)
    if kind is str:
        return clean_text(value)
    if kind is dict:
        if depth > _PLAIN_DEPTH:
            raise _NotPlainJSON
        out = {}
        for key, item in value.items():
            if type(key) is not str:
                raise _NotPlainJSON
            out[clean_text(key)] = _plain_stable(item, depth + 1)
        return out
    if kind is list:
        if depth > _PLAIN_DEPTH:
            raise _NotPlainJSON
        return [_plain_stable(item, depth + 1) for item in value]
    if kind is int:
        if value.bit_length() > _PLAIN_INT_BITS:
            raise _NotPlainJSON
        return value
    if kind is float:
        return _stable_float(value)
    if value is None or kind is bool:
        return value
    raise _NotPlainJSON


def normalise_json(value: Any) -> Any:
    """A JSON value that survives a round trip through SQLite JSON text and PostgreSQL jsonb.

    The dumps/loads pass turns tuples into lists and non-string keys into strings the way the
    JSONField would; `default=str` records odd values (Decimal, UUID, datetime) as text rather
    than failing the audited call. Circular structures still raise ValueError. Values already
    made of plain JSON types (nearly every entry) skip the pass: it would change nothing.
    """
    try:
        return _plain_stable(value, 0)
    except _NotPlainJSON:
        return _stable(json.loads(json.dumps(value, default=str)))
