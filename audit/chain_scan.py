"""The verifier's fast path: recompute record hashes straight from database rows (no ORM).

`verify_chain` spent most of its time in the ORM (a model-field converter per column, `json.loads`
per JSON column) and in building a `json.dumps` encoder per record. Here a row is read as a plain
tuple through a raw cursor and its canonical JSON is assembled from per-column pieces, each
exactly what `audit.chain.canonical_json` emits for that value, so the bytes, and therefore the
hashes, are identical (tests/audit/test_chain_scan.py compares both on awkward values). The
hash format is unchanged.

Why the pieces are byte-identical: `json.dumps(d, sort_keys=True, separators=(",", ":"))` of a
dict is "{" + ",".join(encoded_key + ":" + encoded_value for sorted keys) + "}", and with
`ensure_ascii=True` a str is encoded by `encode_basestring_ascii`, an int by `int.__repr__`, a
finite float by `float.__repr__`. JSON columns arrive as text on both backends (Django makes
psycopg load jsonb as text); their canonical piece depends only on that text, so it is cached.

No Django imports: range workers forked by `audit.verify` use it over their own connections.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

from .chain import HASHED_FIELDS, KEYED_PREFIX, canonical_datetime

# Columns in canonical (sorted) order, then the stored hash.
CANONICAL_ORDER: tuple[str, ...] = tuple(sorted(HASHED_FIELDS))
SELECT_COLUMNS: tuple[str, ...] = (*CANONICAL_ORDER, "hash")
SEQ_INDEX = CANONICAL_ORDER.index("seq")
PREV_INDEX = CANONICAL_ORDER.index("prev_hash")
HASH_INDEX = len(CANONICAL_ORDER)

JSON_COLUMNS = frozenset({"arguments", "reasons", "masking", "detail"})
_KINDS = tuple(
    "json" if name in JSON_COLUMNS else "at" if name == "at" else "value"
    for name in CANONICAL_ORDER
)
_KEYS = tuple(encode_basestring_ascii(name) + ":" for name in CANONICAL_ORDER)

_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
)
_JSON_CACHE_LIMIT = 100_000


class CanonicalError(ValueError):
    """A stored value that the canonical JSON cannot represent (the old path raised too)."""


def _value_piece(value: Any) -> str:
    # The common types first, exactly as the C encoder writes them.
    if type(value) is str:
        return encode_basestring_ascii(value)  # type: ignore[no-any-return]
    if value is None:
        return "null"
    if type(value) is int:
        return int.__repr__(value)
    if type(value) is float:
        if value != value or value in (float("inf"), float("-inf")):
            raise CanonicalError(f"out of range float {value!r}")
        return float.__repr__(value)
    if isinstance(value, datetime):
        return '"' + canonical_datetime(value) + '"'
    try:
        return _CANONICAL.encode(value)
    except (TypeError, ValueError) as exc:
        raise CanonicalError(str(exc)) from None


def _at_piece(value: Any) -> str:
    """Django stores an aware datetime on SQLite as naive UTC text, 'YYYY-MM-DD HH:MM:SS[.ffffff]',
    and reads it back as that time in UTC; PostgreSQL hands back an aware datetime."""
    if type(value) is str:
        if len(value) == 26 and value[10] == " " and value[19] == ".":
            return f'"{value[:10]}T{value[11:]}+00:00"'
        if len(value) == 19 and value[10] == " ":
            return f'"{value[:10]}T{value[11:]}.000000+00:00"'
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise CanonicalError(f"unreadable timestamp {value!r}") from None
        value = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return '"' + canonical_datetime(value) + '"'
    raise CanonicalError(f"unreadable timestamp {value!r}")


class CanonicalRows:
    """Turns rows (SELECT_COLUMNS order) into canonical JSON bytes; holds the JSON-text cache."""

    def __init__(self) -> None:
        self._json: dict[Any, str] = {}

    def _json_piece(self, value: Any) -> str:
        piece = self._json.get(value)
        if piece is not None:
            return piece
        if value is None:
            return "null"
        if isinstance(value, str):
            try:
                parsed = json.loads(value)
            except json.JSONDecodeError:
                parsed = value  # what Django's JSONField.from_db_value hands back
        else:  # a driver that decoded it already (not hashable, so not cached)
            return _value_piece(value)
        try:
            piece = _CANONICAL.encode(parsed)
        except (TypeError, ValueError) as exc:
            raise CanonicalError(str(exc)) from None
        if len(self._json) >= _JSON_CACHE_LIMIT:
            self._json.clear()
        self._json[value] = piece
        return piece

    def body(self, row: Sequence[Any]) -> bytes:
        return _unrolled_body(row, self._json_piece)


def _make_unrolled_body() -> Any:
    """One expression concatenating every column's piece: the per-column loop (zip, kind tests,
    list appends) cost more than the encoding itself. Text columns take the C string encoder
    directly; anything else goes through `_value_piece`."""
    terms = []
    for index, (name, kind) in enumerate(zip(CANONICAL_ORDER, _KINDS, strict=True)):
        key = ("{" if index == 0 else ",") + _KEYS[index]
        value = f"row[{index}]"
        if kind == "json":
            piece = f"json_piece({value})"
        elif kind == "at":
            piece = f"_at_piece({value})"
        elif name in _TEXT_COLUMNS:
            piece = f"(enc(v) if type(v := {value}) is str else _value_piece(v))"
        else:
            piece = f"_value_piece({value})"
        terms.append(f"{key!r}, {piece}")
    source = ("def body(row, json_piece):\n    return ''.join((" + ",\n        ".join(terms)
              + ", '}')).encode('ascii')\n")
    namespace: dict[str, Any] = {"enc": encode_basestring_ascii, "_value_piece": _value_piece,
                                 "_at_piece": _at_piece}
    exec(compile(source, "<audit.chain_scan body>", "exec"), namespace)  # noqa: S102
    return namespace["body"]


_TEXT_COLUMNS = frozenset(CANONICAL_ORDER) - JSON_COLUMNS - {
    "at", "seq", "row_count", "result_bytes", "upstream_latency_ms"}
_unrolled_body = _make_unrolled_body()


@dataclass(slots=True)
class RangeScan:
    """What one pass over a contiguous range of records found. `broken_seq`/`problem` name the
    first bad record; the keyed-format facts let ranges scanned apart be combined exactly as one
    pass would have judged them."""

    first_seq: int
    next_seq: int  # one past the last record checked
    last_hash: str  # hash of the last record checked (the start prev_hash if none)
    checked: int = 0
    broken_seq: int | None = None
    problem: str | None = None
    first_keyed: int | None = None  # first v2 record
    first_legacy: int | None = None  # first v1 record
    first_legacy_after_keyed: int | None = None  # first v1 record after this range's first v2


def _keyed_prototype(key: bytes) -> Any:
    """HMAC(key) already fed the v2 prefix; each record hashes a copy(), which skips the key
    schedule. OpenSSL's object directly where available: the `hmac.HMAC` wrapper adds a Python
    call per copy/update."""
    try:
        from _hashlib import hmac_new  # type: ignore[import-not-found]

        return hmac_new(key, KEYED_PREFIX, "sha256")
    except (ImportError, ValueError):  # pragma: no cover - Python built without OpenSSL
        return hmac.new(key, KEYED_PREFIX, hashlib.sha256)


class RangeScanner:
    """Checks seq continuity, links and hashes over rows in seq order, from (`expected_seq`,
    `prev_hash`). Feed it batches; it stops at the first problem."""

    def __init__(self, expected_seq: int, prev_hash: str, key: bytes | None,
                 legacy_keys: tuple[bytes, ...] = ()) -> None:
        self.result = RangeScan(first_seq=expected_seq, next_seq=expected_seq,
                                last_hash=prev_hash)
        self._key = key
        self._keyed = _keyed_prototype(key) if key else None
        self._legacy = tuple(_keyed_prototype(k) for k in legacy_keys)
        self._canonical = CanonicalRows()

    @property
    def done(self) -> bool:
        return self.result.broken_seq is not None

    def _broken(self, seq: int, problem: str) -> None:
        self.result.broken_seq = seq
        self.result.problem = problem

    def _format(self, prev: bytes, body: bytes, stored: str) -> int | None:
        if self._keyed is not None:
            mac = self._keyed.copy()
            mac.update(prev)
            mac.update(body)
            if hmac.compare_digest(mac.hexdigest(), stored):
                return 2
        digest = hashlib.sha256(prev)
        digest.update(body)
        if hmac.compare_digest(digest.hexdigest(), stored):
            return 1
        for legacy in self._legacy:
            mac = legacy.copy()
            mac.update(prev)
            mac.update(body)
            if hmac.compare_digest(mac.hexdigest(), stored):
                return 1
        return None

    def feed(self, rows: Iterable[Sequence[Any]]) -> None:
        r = self.result
        if r.broken_seq is not None:
            return
        expected, prev_hash = r.next_seq, r.last_hash
        body_of = self._canonical.body
        try:
            for row in rows:
                seq = row[SEQ_INDEX]
                if seq != expected:
                    self._broken(
                        expected,
                        f"record {expected} is missing (the next record is {seq})"
                        if seq > expected
                        else f"record {seq} is out of order (expected {expected})")
                    break
                if row[PREV_INDEX] != prev_hash:
                    self._broken(
                        seq,
                        f"record {seq} does not link to record {seq - 1}: its prev_hash is not "
                        f"that record's hash (one of the two was rewritten)")
                    break
                stored = row[HASH_INDEX]
                try:
                    form = self._format(prev_hash.encode("ascii"), body_of(row), stored)
                except (CanonicalError, UnicodeEncodeError, AttributeError):
                    form = None
                if form is None:
                    self._broken(seq, f"record {seq} was altered: its content does not match "
                                      f"its hash" + (" under the chain key" if self._key else ""))
                    break
                if form == 2:
                    if r.first_keyed is None:
                        r.first_keyed = seq
                else:
                    if r.first_legacy is None:
                        r.first_legacy = seq
                    if r.first_keyed is not None:
                        r.first_legacy_after_keyed = seq
                        self._broken(seq, legacy_after_keyed(seq, r.first_keyed))
                        break
                prev_hash = stored
                expected += 1
                r.checked += 1
        finally:
            r.next_seq, r.last_hash = expected, prev_hash


def legacy_after_keyed(seq: int, keyed_since: int) -> str:
    return (f"record {seq} was altered: its hash is not keyed with the chain key although the "
            f"chain is keyed since record {keyed_since} (it and the records after it were "
            f"recomputed without the chain key)")


def select_sql(table: str, param: str, *, at_as_text: bool = False) -> str:
    """Keyset pagination over (seq > a AND seq <= b), `param` the driver's placeholder.
    `at_as_text` (SQLite) reads the timestamp as its stored text, skipping the driver's
    datetime converter: `_at_piece` turns Django's text into the canonical form directly."""
    columns = [f"CAST({c} AS TEXT)" if c == "at" and at_as_text else c for c in SELECT_COLUMNS]
    return (f"SELECT {', '.join(columns)} FROM {table} "
            f"WHERE seq > {param} AND seq <= {param} ORDER BY seq LIMIT {param}")


def scan_cursor(cursor: Any, sql: str, scanner: RangeScanner, last_seq: int,
                batch_size: int) -> RangeScan:
    """Read (scanner's next seq - 1, last_seq] in batches through `cursor`, feeding `scanner`."""
    after = scanner.result.next_seq - 1
    while not scanner.done and after < last_seq:
        cursor.execute(sql, (after, last_seq, batch_size))
        batch = cursor.fetchall()
        if not batch:
            break
        scanner.feed(batch)
        if len(batch) < batch_size:
            break
        after = batch[-1][SEQ_INDEX]
    return scanner.result
