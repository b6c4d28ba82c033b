"""Masking of MCP tool results before they leave the gateway.

The caller says, per output column name, which PII classes flow into that column (from SQL
lineage and the connection's column classification) and gives a :class:`MaskingPolicy` (class
-> action for the caller's role). :func:`mask_tool_result` rewrites a ``tools/call`` result:

* classified columns are masked whole, with the strictest action among their classes;
* every other string goes through the content detectors (:mod:`policy.detectors`) when
  ``policy.detect_content`` is on, and each finding is masked in place;
* rows are found in ``structuredContent`` and in every text block (JSON, a Python literal,
  CSV/TSV with a header row, a pipe/markdown table, or plain text), and the same value always
  masks to the same output, so structured content and its text rendering stay consistent;
* what cannot be masked safely (binary blobs, unknown block types, rows whose columns cannot
  be told apart, columns named in the result but not locatable) raises
  :class:`UnmaskableResult` when the result may hold sensitive data, so the gateway can
  withhold it instead of leaking it.

The input is never mutated. :class:`MaskingSummary` counts masked cells per (column, class,
action) and never holds a raw value.

Rows that are objects with the same keys (a SQL result) are masked a column at a time: one
plan and one loop per column, the hot partial forms over the joined column. The output and the
counts are those of masking row by row (tests/proxy/test_masking.py holds the two together).
"""

from __future__ import annotations

import ast
import base64
import csv
import datetime as dt
import decimal
import functools
import hashlib
import io
import ipaddress
import json
import operator
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import repeat
from types import MappingProxyType
from typing import Any

from policy.detectors import find_spans
from policy.json_codec import dumps_compact
from policy.json_codec import loads as json_loads

__all__ = [
    "COMPUTED_CLASS",
    "MaskAction",
    "MaskingPolicy",
    "MaskingSummary",
    "UnmaskableResult",
    "declared_columns",
    "mask_free_text",
    "mask_rows",
    "mask_tool_result",
    "mask_value",
]


class MaskAction(StrEnum):
    ALLOW = "allow"
    DETECT = "detect"  # free text: the value leaves after the content detectors masked it
    REDACT = "redact"
    PARTIAL = "partial"
    TOKENIZE = "tokenize"
    NULL = "null"


# Strictness order, for columns that carry several classes.
_RANK = {
    MaskAction.ALLOW: 0,
    MaskAction.DETECT: 1,
    MaskAction.PARTIAL: 2,
    MaskAction.TOKENIZE: 3,
    MaskAction.REDACT: 4,
    MaskAction.NULL: 5,
}
# Marks a result column computed from classified columns (not a plain projection of one):
# `partial` or `tokenize` of a computed value would keep whatever part the caller chose, so
# such a column is redacted whenever one of its other classes is masked.
COMPUTED_CLASS = "(computed)"
_ACTION_NAMES = ", ".join(a.value for a in MaskAction)
_ACTION_STR = {a: a.value for a in MaskAction}
_CONFIG_KEYS = ("actions", "default_action", "detect_content", "equality_lookups")


class UnmaskableResult(Exception):
    """The result's shape cannot be masked safely; the gateway must withhold it.

    Messages name columns, block types and positions, never values."""


def _class_name(cls: object, where: str) -> str:
    if not isinstance(cls, str) or not cls.strip():
        raise ValueError(f"{where}: class name {cls!r} must be a non-empty string")
    return cls.strip().lower()


def _parse_action(value: object, where: str) -> MaskAction:
    if isinstance(value, MaskAction):
        return value
    if isinstance(value, str):
        try:
            return MaskAction(value.strip().lower())
        except ValueError:
            pass
    raise ValueError(f"{where}: unknown action {value!r} (expected one of: {_ACTION_NAMES})")


@dataclass(frozen=True, slots=True)
class MaskingPolicy:
    """What the caller's role may see, per PII class.

    ``actions`` maps a class (case-insensitive) to an action; a class not listed gets
    ``default_action``. ``token_key`` is the HMAC key for TOKENIZE and must be set when any
    action is TOKENIZE. ``detect_content`` runs the content detectors over unclassified strings.
    ``equality_lookups`` names masked classes the role may compare with a literal
    (``col = 'x'``, ``col IN (...)``): an explicit opt-in to an oracle that confirms guesses.
    """

    actions: Mapping[str, MaskAction] = field(hash=False)
    default_action: MaskAction = MaskAction.REDACT
    token_key: bytes = field(default=b"", repr=False)
    detect_content: bool = True
    equality_lookups: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not isinstance(self.actions, Mapping):
            raise ValueError("actions: must be a mapping of class name to action")
        normalized: dict[str, MaskAction] = {}
        for cls, action in self.actions.items():
            name = _class_name(cls, "actions")
            parsed = _parse_action(action, f"actions[{cls!r}]")
            if normalized.get(name, parsed) != parsed:
                raise ValueError(f"actions[{cls!r}]: class {name!r} is given two actions")
            normalized[name] = parsed
        object.__setattr__(self, "actions", MappingProxyType(normalized))
        object.__setattr__(
            self, "default_action", _parse_action(self.default_action, "default_action")
        )
        if not isinstance(self.token_key, bytes | bytearray):
            raise ValueError("token_key: must be bytes")
        object.__setattr__(self, "token_key", bytes(self.token_key))
        if not isinstance(self.detect_content, bool):
            raise ValueError(f"detect_content: must be true or false, not {self.detect_content!r}")
        uses_tokens = self.default_action is MaskAction.TOKENIZE or any(
            a is MaskAction.TOKENIZE for a in normalized.values()
        )
        if uses_tokens and not self.token_key:
            raise ValueError("token_key: required (non-empty) when an action is 'tokenize'")
        if isinstance(self.equality_lookups, str) or not all(
                isinstance(c, str) for c in self.equality_lookups):
            raise ValueError("equality_lookups: must be a list of class names")
        object.__setattr__(self, "equality_lookups", frozenset(
            _class_name(c, "equality_lookups") for c in self.equality_lookups))

    def is_masked(self, cls: str) -> bool:
        """Whether values of ``cls`` leave only in a masked form for this role."""
        return self.action_for(cls) is not MaskAction.ALLOW

    def action_for(self, cls: str) -> MaskAction:
        action = self.actions.get(cls)
        if action is None:
            action = self.actions.get(cls.strip().lower(), self.default_action)
        return action

    @classmethod
    def from_config(cls, data: Mapping[str, Any], *, token_key: bytes) -> MaskingPolicy:
        """Build from configuration, e.g.
        ``{"actions": {"email": "partial", "ssn": "null"}, "default_action": "redact",
        "detect_content": true}``. Raises ValueError naming the bad key or value."""
        if not isinstance(data, Mapping):
            raise ValueError(f"masking policy: expected a mapping, got {type(data).__name__}")
        for key in data:
            if key not in _CONFIG_KEYS:
                raise ValueError(
                    f"masking policy: unknown key {key!r} (expected: {', '.join(_CONFIG_KEYS)})"
                )
        actions = data.get("actions", {})
        if not isinstance(actions, Mapping):
            raise ValueError("masking policy: 'actions' must be a mapping of class to action")
        detect = data.get("detect_content", True)
        if not isinstance(detect, bool):
            raise ValueError(
                f"masking policy: 'detect_content' must be true or false, not {detect!r}"
            )
        lookups = data.get("equality_lookups", [])
        if not isinstance(lookups, list | tuple):
            raise ValueError("masking policy: 'equality_lookups' must be a list of class names")
        try:
            return cls(
                actions=dict(actions),
                default_action=data.get("default_action", MaskAction.REDACT),
                token_key=token_key,
                detect_content=detect,
                equality_lookups=frozenset(lookups) if all(
                    isinstance(c, str) for c in lookups) else lookups,  # type: ignore[arg-type]
            )
        except ValueError as exc:
            raise ValueError(f"masking policy: {exc}") from None


@dataclass(slots=True)
class MaskingSummary:
    """Cells changed, per (column, class, action). Holds names only, never values."""

    counts: Counter[tuple[str, str, str]] = field(default_factory=Counter)

    def as_list(self) -> list[dict[str, Any]]:
        return [
            {"column": col, "class": cls, "action": action, "count": n}
            for (col, cls, action), n in sorted(self.counts.items())
            if n
        ]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


# --------------------------------------------------------------------------- single values


def _canonical(value: Any) -> str:
    """A stable text form, so a value tokenizes the same whether it arrives as a JSON number,
    a string in CSV text or a Python object."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 2**53:
            return str(int(value))
        return repr(value)
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, dt.date | dt.time):  # datetime is a date
        return value.isoformat()
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dict | list | tuple):
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
        )
    return str(value)


_EMAIL_SHAPE = re.compile(r"([^@\s]+)@([^@\s]+\.[^@\s]+)")
_NUMERIC_SHAPE = re.compile(r"\+?[0-9 ().-]+")
_STAR_DIGITS = str.maketrans("0123456789", "**********")
# Four digits and what follows them, on a reversed number (no backtracking: each run of
# separators is scanned once).
_LAST4_DIGITS_REVERSED = re.compile(r"(?:[^0-9]*[0-9]){4}")
_ALNUM = re.compile(r"[A-Za-z0-9]")
_ALNUMS = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_IPV4 = re.compile(r"(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})", re.ASCII)
_IBAN_SHAPE = re.compile(r"[A-Za-z0-9 ]+")
_NAME_SHAPE = re.compile(r"[^\W\d_]+\.?(?:[ ,'’-]+[^\W\d_]+\.?)*")
_NAME_SPLIT = re.compile(r"[ ,]+")
_DATE_SHAPE = re.compile(r"[\w\s/.,:+-]{4,40}")
_YEAR = re.compile(r"(?<!\d)(1[89]\d\d|2[01]\d\d)(?!\d)")
_COMPACT_DATE = re.compile(r"(1[89]\d\d|2[01]\d\d)(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])")


def _keep_last4(s: str, maskable: re.Pattern[str], keep: frozenset[str]) -> str:
    """Mask every ``maskable`` character but the last four, keeping separators."""
    i = len(s)
    seen = 0
    while seen < 4:
        i -= 1
        if s[i] in keep:
            seen += 1
    return maskable.sub("*", s[:i]) + s[i:]


def _partial_email(s: str) -> str | None:
    m = _EMAIL_SHAPE.fullmatch(s.strip())
    return f"{m[1][0]}***@{m[2]}" if m else None


def _partial_digits(s: str) -> str | None:
    """Phone, card, SSN: keep the last 4 digits and the separators."""
    if not _NUMERIC_SHAPE.fullmatch(s):
        return None
    encoded = s.encode()  # ASCII, checked by the shape
    if len(encoded) - len(encoded.translate(None, b"0123456789")) < 7:
        return None
    # The hot partial (phone, card, SSN columns): the last four digits found on the reversed
    # text in one linear match, the rest starred by translate (what _keep_last4 does, cheaper).
    kept = len(s) - _LAST4_DIGITS_REVERSED.match(s[::-1]).end()  # type: ignore[union-attr]
    return s[:kept].translate(_STAR_DIGITS) + s[kept:]


def _joined_if_shaped(values: list[str], lines: re.Pattern[str]) -> str | None:
    """The column joined by line breaks when every value has the shape ``lines`` checks line by
    line; None otherwise, and when a value holds a line break (it would pass as two values)."""
    joined = "\n".join(values)
    if joined.count("\n") != len(values) - 1 or not lines.fullmatch(joined):
        return None
    return joined


_EMAIL_LINES = re.compile(r"(?:[^@\s]+@[^@\s]+\.[^@\s]+\n)*[^@\s]+@[^@\s]+\.[^@\s]+")


def _partial_email_column(values: list[str]) -> list[str | None]:
    """[_partial_email(v) for v in values], a column at a time: when every value is one clean
    address (the shape checked once over the joined column), each keeps its first letter and
    its domain."""
    if _joined_if_shaped(values, _EMAIL_LINES) is None:
        return [_partial_email(v) for v in values]
    return [v[0] + "***" + v[v.index("@"):] for v in values]


_NUMERIC_LINES = re.compile(r"(?:\+?[0-9 ().-]+\n)*\+?[0-9 ().-]+")


def _partial_digits_column(values: list[str]) -> list[str | None]:
    """[_partial_digits(v) for v in values], a column at a time: the shape check, the starring
    and the digit count run once over the joined column. A value ending in four digits (most
    phone and card numbers) keeps those; any other goes through _partial_digits."""
    joined = _joined_if_shaped(values, _NUMERIC_LINES)
    if joined is None:
        return [_partial_digits(v) for v in values]
    starred = joined.translate(_STAR_DIGITS).split("\n")
    separators = joined.encode().translate(None, b"0123456789").split(b"\n")  # ASCII: shape
    last4 = [v[-4:] for v in values]
    if min(map(operator.sub, map(len, values), map(len, separators))) >= 7 \
            and "".join(last4).isdigit():
        # every value has seven digits or more and ends in four: those kept, the rest starred
        return list(map(operator.add, [star[:-4] for star in starred], last4))
    return [star[:-4] + end if end.isdigit() and len(v) - len(sep) >= 7 else _partial_digits(v)
            for star, v, sep, end in zip(starred, values, separators, last4, strict=True)]


def _partial_iban(s: str) -> str | None:
    if not _IBAN_SHAPE.fullmatch(s) or len(s) - s.count(" ") < 12:
        return None
    return _keep_last4(s, _ALNUM, _ALNUMS)


def _partial_name(s: str) -> str | None:
    s = s.strip()
    if not _NAME_SHAPE.fullmatch(s):
        return None
    words = [w for w in _NAME_SPLIT.split(s) if w]
    if not 1 <= len(words) <= 6:
        return None
    initials = []
    for w in words:
        first = next((ch for ch in w if ch.isalpha()), "")
        if first:
            initials.append(first.upper() + ".")
    return " ".join(initials) or None


def _partial_address(s: str) -> str | None:
    """Drop the street line and anything with digits (house numbers, postcodes); keep the
    locality: "1 Main St, Springfield, IL 62704" -> "*** Springfield, IL"."""
    parts = [p.strip() for p in s.replace("\n", ",").split(",")]
    parts = [p for p in parts if p]
    if len(parts) < 2:
        return None
    tail = []
    for part in parts[1:]:
        words = [w for w in part.split() if not any(ch.isdigit() for ch in w)]
        if words:
            tail.append(" ".join(words))
    return "*** " + ", ".join(tail) if tail else None


def _partial_dob(s: str) -> str | None:
    s = s.strip()
    m = _COMPACT_DATE.fullmatch(s)
    if m:
        return f"{m[1]}-**-**"
    if not _DATE_SHAPE.fullmatch(s):
        return None
    years = _YEAR.findall(s)
    return f"{years[0]}-**-**" if len(years) == 1 else None


def _partial_ip(s: str) -> str | None:
    s = s.strip()
    m = _IPV4.fullmatch(s)
    if m and all(len(o) == 1 or (o[0] != "0" and int(o) < 256) for o in m.groups()):
        return f"{m[1]}.{m[2]}.*.*"
    addr: ipaddress.IPv4Address | ipaddress.IPv6Address
    try:
        addr = ipaddress.ip_address(s)
    except ValueError:
        try:
            addr = ipaddress.ip_interface(s).ip
        except ValueError:
            return None
    if addr.version == 4:
        a, b = str(addr).split(".")[:2]
        return f"{a}.{b}.*.*"
    packed = addr.packed  # not .exploded: it breaks on scoped addresses ("fe80::1%eth0")
    first, second = int.from_bytes(packed[:2], "big"), int.from_bytes(packed[2:4], "big")
    return f"{first:x}:{second:x}:*:*:*:*:*:*"


# The same, a column at a time (for the hot classes).
_PARTIAL_COLUMNS: dict[Callable[[str], str | None], Callable[[list[str]], list[str | None]]] = {
    _partial_email: _partial_email_column,
    _partial_digits: _partial_digits_column,
}

_PARTIALS: dict[str, Callable[[str], str | None]] = {
    "email": _partial_email,
    "phone": _partial_digits,
    "card": _partial_digits,
    "ssn": _partial_digits,
    "iban": _partial_iban,
    "name": _partial_name,
    "address": _partial_address,
    "dob": _partial_dob,
    "ip": _partial_ip,
}


def _partial(cls: str, value: Any) -> str | None:
    """Partial form of a single clean value, or None when it does not apply (unknown class,
    computed or nested value, too short to hide anything)."""
    fn = _PARTIALS.get(cls)
    if fn is None:
        return None
    if type(value) is str:
        return fn(value)
    if isinstance(value, dict | list | tuple | bool):
        return None
    return fn(_canonical(value))


@functools.lru_cache(maxsize=64)
def _hmac_pads(key: bytes) -> tuple[Any, Any]:
    """SHA-256 states after the HMAC inner and outer pads. Shared between calls: only ever
    copied, never updated."""
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key.ljust(64, b"\0")
    return (
        hashlib.sha256(bytes(b ^ 0x36 for b in key)),
        hashlib.sha256(bytes(b ^ 0x5C for b in key)),
    )


class _Tokenizer:
    """HMAC-SHA256 tokens, memoized per call (structured content and text repeat values).

    HMAC is computed from precomputed inner/outer pad states (RFC 2104), about twice as fast
    as copying an ``hmac`` object per value."""

    __slots__ = ("_inner", "_outer", "_cache")

    def __init__(self, key: bytes) -> None:
        self._inner, self._outer = _hmac_pads(key) if key else (None, None)
        self._cache: dict[str, dict[str, str]] = {}  # class -> canonical value -> token

    def __call__(self, cls: str, value: Any) -> str:
        return self.column(cls, [value])[0]  # type: ignore[return-value]

    def column(self, cls: str, values: list[Any]) -> list[str | None]:
        """The token of each value of class ``cls`` (None stays None)."""
        inner_pad, outer_pad = self._inner, self._outer
        if inner_pad is None or outer_pad is None:
            raise ValueError("token_key: required (non-empty) when an action is 'tokenize'")
        cache = self._cache.setdefault(cls, {})
        prefix = cls + ":"
        out: list[str | None] = []
        for value in values:
            if value is None:
                out.append(None)
                continue
            canon = value if type(value) is str else _canonical(value)
            token = cache.get(canon)
            if token is None:
                inner = inner_pad.copy()
                inner.update((prefix + canon).encode("utf-8", "surrogatepass"))
                outer = outer_pad.copy()
                outer.update(inner.digest())
                token = cache[canon] = "tok_" + outer.hexdigest()[:16]
            out.append(token)
        return out


def _apply(
    value: Any, cls: str, action: MaskAction, tokenize: _Tokenizer
) -> tuple[Any, MaskAction]:
    """Mask one non-None value; returns the output and the action actually applied."""
    if action is MaskAction.ALLOW:
        return value, action
    if action is MaskAction.NULL:
        return None, action
    if action is MaskAction.TOKENIZE:
        return tokenize(cls, value), action
    if action is MaskAction.PARTIAL:
        out = _partial(cls, value)
        if out is not None:
            return out, action
    return f"[REDACTED:{cls}]", MaskAction.REDACT


def mask_value(value: Any, cls: str, action: MaskAction, policy: MaskingPolicy) -> Any:
    """Mask one cell of class ``cls`` with ``action`` (None stays None)."""
    if value is None:
        return None
    out, _ = _apply(
        value,
        _class_name(cls, "cls"),
        _parse_action(action, "action"),
        _Tokenizer(policy.token_key),
    )
    return out


# --------------------------------------------------------------------------- result walking


class _Plan:
    """What to do with one column, computed once per call."""

    __slots__ = (
        "classified", "mask", "action", "cls", "key", "renamed", "label", "fold",
        "count_key", "redact_key", "redacted", "partial",
    )  # fmt: skip

    def __init__(
        self, key: Any, label: str, fold: str, classified: bool, action: MaskAction, cls: str
    ) -> None:
        self.key = key  # the key to emit (detector-masked if the name itself held PII)
        self.fold = fold
        self.classified = classified
        self.action = action
        self.cls = cls
        self.mask = action is not MaskAction.ALLOW  # also: the column is sensitive
        self.renamed = False
        self.redacted = f"[REDACTED:{cls}]"
        # The class's partial form for a string cell (None: the class has none, redacted).
        self.partial = _PARTIALS.get(cls) if action is MaskAction.PARTIAL else None
        self.relabel(label)

    def relabel(self, label: str) -> None:
        self.label = label  # column name used in the summary
        self.count_key = (label, self.cls, _ACTION_STR[self.action])
        self.redact_key = (label, self.cls, "redact")


_KEY_SPANS: dict[str, bool] = {}


def _key_may_hold_pii(key: str) -> bool:
    """Whether a column/field name holds PII itself, cached across calls: names repeat."""
    found = _KEY_SPANS.get(key)
    if found is None:
        found = bool(find_spans(key))
        if len(_KEY_SPANS) >= 4096:
            _KEY_SPANS.clear()
        _KEY_SPANS[key] = found
    return found


class _NoParse:
    pass


_NO_PARSE = _NoParse()
_DIGITS_12 = 10**12  # ints shorter than this cannot hold a card number
_PLAIN_TYPES = frozenset({type(None), float, bool, int})  # ints checked against _DIGITS_12
_JUST_DICT = {dict}
_JUST_STR = {str}
_MEMO_MAX_LEN = 256
_Masked = tuple[str, tuple[tuple[str, str], ...]]  # masked text, (class, action) hits
_MEMO_MAX_ENTRIES = 50_000
_REDACT = MaskAction.REDACT
_TOKENIZE = MaskAction.TOKENIZE
_NULL = MaskAction.NULL
_DETECT = MaskAction.DETECT
_LITERAL_MAX_LEN = 4_000_000  # Python-literal parsing is slow; bigger texts fall through
_TEXT_LABEL = "(text)"
_KEY_LABEL = "(column name)"


def _declared_columns(d: Mapping[str, Any]) -> list[str] | None:
    """Column names a table-shaped dict declares: "columns"/"fields"/"schema" as names or
    {"name": ...} entries (also BigQuery's {"schema": {"fields": [...]}})."""
    for key in ("columns", "fields", "schema"):
        spec = d.get(key)
        if isinstance(spec, Mapping):
            spec = spec.get("fields")
        if isinstance(spec, list) and spec:
            names = [s.get("name") if type(s) is dict else s for s in spec]
            if all(isinstance(n, str) for n in names):
                return names
    return None


declared_columns = _declared_columns  # public name, for aligning column plans (proxy.mask)


def _is_fv(row: Mapping[Any, Any]) -> bool:
    return len(row) == 1 and type(row.get("f")) is list


def _json_like(obj: Any, original: str) -> str:
    """Serialize masked JSON in the layout of the original text."""
    ensure_ascii = "\\u" in original
    body = original.strip()
    newline = body.find("\n")
    if newline != -1:
        rest = body[newline + 1 :]
        indent = (len(rest) - len(rest.lstrip(" "))) or 2
        return json.dumps(obj, indent=indent, ensure_ascii=ensure_ascii, default=str)
    if '": ' in original or '", "' in original:
        return json.dumps(obj, separators=(", ", ": "), ensure_ascii=ensure_ascii, default=str)
    return dumps_compact(obj, ensure_ascii=ensure_ascii, default=str).decode()


_PIPE_SPLIT = re.compile(r"(?<!\\)\|")
_TABLE_RULE_CHARS = frozenset("-=:+| \t")


def _is_rule(line: str) -> bool:
    s = line.strip()
    return bool(s) and ("-" in s or "=" in s) and set(s) <= _TABLE_RULE_CHARS


def _split_pipe_row(line: str) -> tuple[str, list[str], str]:
    """ "| a | b |" -> ("|", [" a ", " b "], "|"), keeping outer whitespace in prefix/suffix."""
    stripped = line.strip()
    lead = line[: len(line) - len(line.lstrip())]
    trail = line[len(line.rstrip()) :]
    prefix, suffix = lead, trail
    if stripped.startswith("|"):
        prefix += "|"
        stripped = stripped[1:]
    if stripped.endswith("|") and not stripped.endswith("\\|"):
        suffix = "|" + suffix
        stripped = stripped[:-1]
    return prefix, _PIPE_SPLIT.split(stripped), suffix


def _refill(raw: str, new: str) -> str:
    """Put ``new`` into a table cell, keeping the cell's padding and width where possible."""
    content = raw.strip()
    if content == new:
        return raw
    lead = raw[: len(raw) - len(raw.lstrip())]
    width = len(raw) - len(lead)
    return (
        lead
        + new.ljust(width - (1 if raw.endswith(" ") else 0))
        + (" " if raw.endswith(" ") else "")
    )


class _Masker:
    """One masking pass over one result (or one list of rows). Not thread-safe; cheap."""

    def __init__(
        self,
        column_classes: Mapping[str, Any],
        policy: MaskingPolicy,
        *,
        strict: bool,
        counts: Counter[tuple[str, str, str]] | None = None,
    ) -> None:
        self.policy = policy
        self.detect = policy.detect_content
        self.tokenize = _Tokenizer(policy.token_key)
        self.plans: dict[Any, _Plan] = {}
        self.span_actions: dict[str, MaskAction] = {}
        self.memo: dict[str, _Masked | str] = {}
        self.counts: Counter[tuple[str, str, str]] = counts if counts is not None else Counter()
        self.total: Counter[tuple[str, str, str]] = self.counts
        self.located: set[str] = set()
        self.mentioned: set[str] = set()
        # Column names folded to lower case; several spellings of one name are merged.
        self.classes: dict[str, frozenset[str]] = {}
        for name, classes in column_classes.items():
            if not isinstance(name, str):
                raise TypeError(f"column_classes: column name {name!r} is not a string")
            if classes is None:
                classes = ()
            elif isinstance(classes, str):
                classes = (classes,)
            norm = frozenset(c.strip().lower() for c in classes if isinstance(c, str) and c.strip())
            fold = name.strip().casefold()
            self.classes[fold] = self.classes.get(fold, frozenset()) | norm
        self.sensitive = frozenset(
            fold
            for fold, classes in self.classes.items()
            if classes and self._resolve(classes)[0] is not MaskAction.ALLOW
        )
        self.strict = strict and bool(self.sensitive)
        self.watch: frozenset[str] = frozenset()  # sensitive names to notice as values
        self.watch_maxlen = max((len(n) for n in self.sensitive), default=0)
        self._watch_re: re.Pattern[str] | None = None

    # ----------------------------------------------------------------- plans

    def _resolve(self, classes: frozenset[str]) -> tuple[MaskAction, str]:
        best = MaskAction.ALLOW
        best_cls = ""
        if COMPUTED_CLASS in classes:
            classes = classes - {COMPUTED_CLASS}
            masked = sorted(c for c in classes if self.policy.action_for(c) is not MaskAction.ALLOW)
            if masked:
                return MaskAction.REDACT, masked[0]
        for cls in sorted(classes):
            action = self.policy.action_for(cls)
            if _RANK[action] > _RANK[best] or not best_cls:
                best, best_cls = action, cls
        if best is MaskAction.PARTIAL and len(classes) > 1:
            best = MaskAction.REDACT  # partial only makes sense for one clean value
        return best, best_cls

    def _plan(self, key: Any) -> _Plan:
        label = key if isinstance(key, str) else str(key)
        fold = label.strip().casefold()
        classes = self.classes.get(fold)
        action = MaskAction.ALLOW
        cls = ""
        if classes:
            action, cls = self._resolve(classes)
        plan = _Plan(key, label, fold, bool(classes), action, cls)
        if self.detect and isinstance(key, str) and _key_may_hold_pii(key):
            masked = self.mask_spans(key, _KEY_LABEL)
            if masked != key:
                plan.key = masked
                plan.relabel(masked)
                plan.renamed = True
        self.plans[key] = plan
        return plan

    def plan(self, key: Any) -> _Plan:
        plan = self.plans.get(key)
        return plan if plan is not None else self._plan(key)

    # ----------------------------------------------------------------- cells and strings

    def mask_cell(self, value: Any, p: _Plan) -> Any:
        if value is None:
            return None
        action = p.action
        if action is _REDACT:
            self.counts[p.count_key] += 1
            return p.redacted
        if action is _TOKENIZE:
            self.counts[p.count_key] += 1
            return self.tokenize(p.cls, value)
        if action is _NULL:
            self.counts[p.count_key] += 1
            return None
        if action is _DETECT:
            if isinstance(value, str):
                return self.mask_spans(value, p.label)
            return self.node(value, p.label)
        partial = p.partial
        if partial is None:
            out = None
        elif type(value) is str:
            out = partial(value)
        else:
            out = _partial(p.cls, value)
        if out is None:
            self.counts[p.redact_key] += 1
            return p.redacted
        self.counts[p.count_key] += 1
        return out

    def span_action(self, cls: str) -> MaskAction:
        action = self.span_actions.get(cls)
        if action is None:
            action = self.span_actions[cls] = self.policy.action_for(cls)
        return action

    def mask_spans(self, s: str, label: str) -> str:
        """Run the detectors over ``s`` and mask each finding (memoized per call)."""
        memo = self.memo.get(s)
        if memo is None:
            spans = find_spans(s)
            memo = self._replace(s, spans) if spans else s
            if len(s) <= _MEMO_MAX_LEN and len(self.memo) < _MEMO_MAX_ENTRIES:
                self.memo[s] = memo
        if type(memo) is str:  # nothing found (or only allowed classes)
            return memo
        masked, hits = memo
        counts = self.counts
        for cls, action_name in hits:
            counts[(label, cls, action_name)] += 1
        return masked

    def _replace(self, s: str, spans: list[tuple[int, int, str]]) -> _Masked | str:
        pieces: list[str] = []
        pos = 0
        hits: set[tuple[str, str]] = set()
        for start, end, cls in spans:
            action = self.span_action(cls)
            if action is MaskAction.ALLOW:
                continue
            if action is MaskAction.NULL or action is MaskAction.TOKENIZE:
                # A span cannot be null: hide it instead. Nor tokenized: the text may be the
                # caller's own (a literal, a computation over unclassified columns), and a
                # keyed token equal to a column's would confirm a guessed value.
                action = MaskAction.REDACT
            out, applied = _apply(s[start:end], cls, action, self.tokenize)
            pieces.append(s[pos:start])
            pieces.append(out)
            pos = end
            hits.add((cls, _ACTION_STR[applied]))
        if not hits:
            return s
        pieces.append(s[pos:])
        return "".join(pieces), tuple(sorted(hits))

    def notice(self, s: str) -> None:
        """Remember a string naming a sensitive column (see part())."""
        fold = s.strip().casefold()
        if fold in self.watch:
            self.mentioned.add(fold)

    def text_value(self, s: str, label: str) -> str:
        if self.watch and len(s) <= self.watch_maxlen:
            self.notice(s)
        if self.detect and len(s) >= 3:
            return self.mask_spans(s, label)
        return s

    def scalar(self, v: Any, label: str) -> Any:
        if v is None or v is True or v is False or type(v) is float:
            return v
        if type(v) is int:
            if self.detect and (v >= _DIGITS_12 or v <= -_DIGITS_12):
                s = str(v)
                masked = self.mask_spans(s, label)
                return v if masked == s else masked
            return v
        if isinstance(v, bytes | bytearray):
            if self.strict:
                raise UnmaskableResult(f"binary value under {label!r} cannot be checked")
            return v
        if isinstance(v, str):
            return self.text_value(v, label)
        if isinstance(v, int | float | decimal.Decimal | dt.date | dt.time):
            return v
        if self.detect:
            s = str(v)
            masked = self.mask_spans(s, label)
            return v if masked == s else masked
        return v

    def cell(self, v: Any, p: _Plan) -> Any:
        if p.mask:
            return self.mask_cell(v, p)
        t = type(v)
        if t is str:
            return self.text_value(v, p.label)
        if t is dict:
            return self.mapping(v)
        if t is list or t is tuple:
            return self.sequence(v, p.label)
        return self.scalar(v, p.label)

    # ----------------------------------------------------------------- containers

    def node(self, v: Any, label: str, *, top: bool = False) -> Any:
        t = type(v)
        if t is str:
            return self.text_value(v, label)
        if t is dict:
            return self.mapping(v)
        if t is list or t is tuple:
            return self.sequence(v, label, top=top)
        if isinstance(v, Mapping):
            return self.mapping(dict(v))
        return self.scalar(v, label)

    def mapping(self, d: dict[Any, Any]) -> dict[Any, Any]:
        rows = d.get("rows")
        if type(rows) is list and (
            _declared_columns(d) is not None
            or not any(k != "rows" and self.plan(k).classified for k in d)
        ):
            return self.table(d, rows)
        return self.row(d)

    def row(self, d: Mapping[Any, Any]) -> dict[Any, Any]:
        # The hot loop: plain cells are handled inline, everything else via cell().
        out: dict[Any, Any] = {}
        plans = self.plans
        memo = self.memo
        detect = self.detect
        watch = self.watch
        watch_maxlen = self.watch_maxlen
        counts = self.counts
        for k, v in d.items():
            p = plans.get(k)
            if p is None:
                p = self._plan(k)
            key = p.key
            if p.renamed:
                key = self._free_key(out, key)
            if p.mask:
                if watch:
                    self.located.add(p.fold)
                if v is None:
                    out[key] = None
                elif p.action is _REDACT:  # mask_cell's first case, inline: the common one
                    counts[p.count_key] += 1
                    out[key] = p.redacted
                else:
                    out[key] = self.mask_cell(v, p)
            elif type(v) is str:
                if watch and len(v) <= watch_maxlen:
                    self.notice(v)
                if detect and len(v) > 2:
                    hit = memo.get(v)
                    out[key] = hit if type(hit) is str else self.mask_spans(v, p.label)
                else:
                    out[key] = v
            elif (
                v is None
                or type(v) is float
                or v is True
                or v is False
                or (type(v) is int and -_DIGITS_12 < v < _DIGITS_12)
            ):
                out[key] = v
            else:
                out[key] = self.cell(v, p)
        return out

    @staticmethod
    def _free_key(out: Mapping[Any, Any], key: Any) -> Any:
        if key not in out:
            return key
        n = 2
        while f"{key}#{n}" in out:
            n += 1
        return f"{key}#{n}"

    def sequence(self, seq: list[Any] | tuple[Any, ...], label: str, *, top: bool = False) -> Any:
        if top and seq and all(type(r) is list or type(r) is tuple for r in seq):
            names = self._header(seq[0])
            if names is not None:
                plans = self._positional_plans(names)
                return [self._header_out(seq[0], plans)] + [
                    self.positional(r, plans) for r in seq[1:]
                ]
            if self.strict:
                raise UnmaskableResult("rows are lists without column names")
        return [self.node(x, label) for x in seq]

    def _header(self, first: Any) -> list[str] | None:
        if (
            (type(first) is list or type(first) is tuple)
            and first
            and all(isinstance(h, str) for h in first)
            and any(h.strip().casefold() in self.classes for h in first)
        ):
            return list(first)
        return None

    def _positional_plans(self, names: list[str]) -> list[_Plan]:
        plans = [self.plan(n.strip() if isinstance(n, str) else n) for n in names]
        for p in plans:
            if p.mask:
                self.located.add(p.fold)
        return plans

    def _header_out(self, header: Any, plans: list[_Plan]) -> list[Any]:
        return [p.key if p.renamed else h for h, p in zip(header, plans, strict=False)]

    def positional(self, row: Any, plans: list[_Plan]) -> Any:
        if type(row) is not list and type(row) is not tuple:
            if self.strict:
                raise UnmaskableResult("a row does not match the declared columns")
            return self.node(row, "rows")
        if len(row) > len(plans) and self.strict:
            raise UnmaskableResult("a row has more values than declared columns")
        n = len(plans)
        return [
            self.cell(v, plans[i]) if i < n else self.node(v, "rows") for i, v in enumerate(row)
        ]

    def table(self, d: Mapping[Any, Any], rows: list[Any]) -> dict[Any, Any]:
        """A dict carrying "rows": the rows are data; the other keys are metadata."""
        out: dict[Any, Any] = {}
        for k, v in d.items():
            if k == "rows":
                out[k] = self._rows(rows, _declared_columns(d))
            else:
                out[self.plan(k).key] = self.metadata(v, str(k))
        return out

    def _rows(self, rows: list[Any], names: list[str] | None) -> list[Any]:
        out: list[Any] = []
        plans: list[_Plan] | None = None
        if not rows:
            if names is not None:
                self._positional_plans(names)  # no data: the declared columns are accounted for
            return out
        first = rows[0]
        if type(first) is dict and not _is_fv(first):
            by_column = self._rows_by_column(rows, first)
            if by_column is not None:
                return by_column
        if type(first) is not dict or _is_fv(first):  # positional rows: map the columns
            if names is not None:
                plans = self._positional_plans(names)
            else:
                header = self._header(first)
                if header is not None:
                    plans = self._positional_plans(header)
                    out.append(self._header_out(first, plans))
                    rows = rows[1:]
        for r in rows:
            t = type(r)
            if t is dict:
                if _is_fv(r):  # BigQuery REST: {"f": [{"v": ...}, ...]}
                    out.append({"f": self._fv(r["f"], plans)})
                else:
                    out.append(self.row(r))
            elif t is list or t is tuple:
                if plans is None:
                    if self.strict:
                        raise UnmaskableResult("rows are lists without column names")
                    out.append(self.node(r, "rows"))
                else:
                    out.append(self.positional(r, plans))
            else:
                out.append(self.node(r, "rows"))
        return out

    def _rows_by_column(self, rows: list[Any], first: dict[Any, Any]) -> list[Any] | None:
        """Rows that are objects with the same keys, masked a column at a time: one plan and
        one loop per column instead of per cell (the cost of a large result). None: the rows
        differ in shape (or a key itself is masked); row() takes them one by one."""
        keys = first.keys()
        if set(map(type, rows)) != _JUST_DICT or not all(map(keys.__eq__, map(dict.keys, rows))):
            return None
        plans = [self.plan(k) for k in keys]
        if any(p.renamed for p in plans):
            return None
        if not plans:
            return [{} for _ in rows]
        if len(plans) == 1:
            values = [[r[k] for r in rows] for k in keys]
        else:  # rows to columns in C: a tuple per row, transposed
            values = list(zip(*map(operator.itemgetter(*keys), rows), strict=True))
        columns = [self._column(list(v), p) for v, p in zip(values, plans, strict=True)]
        out_keys = [p.key for p in plans]
        return list(map(dict, map(zip, repeat(out_keys), zip(*columns, strict=True))))

    def _column(self, values: list[Any], p: _Plan) -> list[Any]:
        """One column's values masked as row() masks each cell, with the same counts."""
        if not p.mask:
            types = set(map(type, values))
            if types <= _PLAIN_TYPES and (int not in types or all(
                    type(v) is not int or -_DIGITS_12 < v < _DIGITS_12 for v in values)):
                return values  # nothing the detectors could find (row() passes each as it is)
            cell = self.cell
            return [cell(v, p) for v in values]
        if self.watch:
            self.located.add(p.fold)
        action = p.action
        present = len(values) - values.count(None)
        if action is _REDACT or (action is MaskAction.PARTIAL and p.partial is None):
            self.counts[p.redact_key if action is not _REDACT else p.count_key] += present
            redacted = p.redacted
            return [None if v is None else redacted for v in values]
        if action is _NULL:
            self.counts[p.count_key] += present
            return [None] * len(values)
        if action is _TOKENIZE:
            self.counts[p.count_key] += present
            return self.tokenize.column(p.cls, values)
        if action is MaskAction.PARTIAL:
            partial, cls = p.partial, p.cls
            out: list[Any]
            column_partial = _PARTIAL_COLUMNS.get(partial)  # type: ignore[arg-type]
            if column_partial is not None and set(map(type, values)) == _JUST_STR:
                out = column_partial(values)
            else:
                out = [None if v is None else partial(v) if type(v) is str else _partial(cls, v)
                       for v in values]
            kept = len(out) - out.count(None)
            self.counts[p.count_key] += kept
            if kept < present:  # no partial form for these: redacted, counted as such
                self.counts[p.redact_key] += present - kept
                redacted = p.redacted
                out = [redacted if o is None and v is not None else o
                       for o, v in zip(out, values, strict=True)]
            return out
        mask_cell = self.mask_cell
        return [mask_cell(v, p) for v in values]

    def _fv(self, cells: list[Any], plans: list[_Plan] | None) -> list[Any]:
        if plans is None or len(cells) > len(plans):
            if self.strict:
                raise UnmaskableResult("rows do not match the declared columns")
            return [self.node(c, "rows") for c in cells]
        out = []
        for c, p in zip(cells, plans, strict=False):
            if type(c) is dict and "v" in c:
                c = dict(c)
                c["v"] = self.cell(c["v"], p)
                out.append(c)
            elif self.strict:
                raise UnmaskableResult("rows do not match the declared columns")
            else:
                out.append(self.node(c, "rows"))
        return out

    def metadata(self, v: Any, label: str) -> Any:
        """Detectors only: no column plans (block fields, _meta, siblings of "rows")."""
        t = type(v)
        if t is str:
            return self.text_value(v, label)
        if t is dict:
            return {self.plan(k).key: self.metadata(x, label) for k, x in v.items()}
        if t is list or t is tuple:
            return [self.metadata(x, label) for x in v]
        if isinstance(v, Mapping):
            return self.metadata(dict(v), label)
        return self.scalar(v, label)

    # ----------------------------------------------------------------- text

    def plain(self, text: str, label: str) -> str:
        if self.watch:
            if self._watch_re is None:
                names = sorted(self.watch, key=len, reverse=True)
                self._watch_re = re.compile(
                    r"(?<!\w)(?:" + "|".join(map(re.escape, names)) + r")(?!\w)", re.IGNORECASE
                )
            for m in self._watch_re.finditer(text):
                self.mentioned.add(m.group().casefold())
        return self.mask_spans(text, label) if self.detect else text

    def text(self, text: str, label: str) -> str:
        """Mask a text block: JSON, Python literal, CSV/TSV, pipe table, or plain text."""
        body = text.strip()
        if not body:
            return text
        if body[0] in "{[":
            parsed = _parse_json(body)
            if parsed is not _NO_PARSE:
                masked = self.node(parsed, label, top=True)
                return text if masked == parsed else _json_like(masked, text)
            literal = _parse_literal(body) if len(body) <= _LITERAL_MAX_LEN else _NO_PARSE
            if literal is not _NO_PARSE:
                masked = self.node(literal, label, top=True)
                return text if masked == literal else repr(masked)
        table = self._csv(text, label)
        if table is not None:
            return table
        table = self._pipe_table(text, label)
        if table is not None:
            return table
        return self.plain(text, label)

    def _csv(self, text: str, label: str) -> str | None:
        body = text.strip("\r\n")
        if "\n" not in body:
            return None
        head = body.split("\n", 1)[0]
        delimiter = "\t" if "\t" in head else "," if "," in head else None
        try:
            rows = list(csv.reader(io.StringIO(body), delimiter=delimiter or ",", strict=True))
        except csv.Error:
            return None
        if len(rows) < 2:
            return None
        header = rows[0]
        width = len(header)
        if any(len(r) != width for r in rows):
            return None
        known = any(h.strip().casefold() in self.classes for h in header)
        if not known and (width < 2 or any(not h.strip() for h in header)):
            return None
        plans = self._positional_plans(header)
        out_rows: list[list[str]] = [self._header_out(header, plans)]
        for r in rows[1:]:
            masked = []
            for v, p in zip(r, plans, strict=True):
                m = self.cell(v, p)
                masked.append("" if m is None else m if isinstance(m, str) else str(m))
            out_rows.append(masked)
        if out_rows == rows:
            return text
        terminator = "\r\n" if "\r\n" in text else "\n"
        buf = io.StringIO()
        csv.writer(buf, delimiter=delimiter or ",", lineterminator=terminator).writerows(out_rows)
        out = buf.getvalue()
        if not text.endswith(("\n", "\r")):
            out = out[: -len(terminator)]
        lead = text[: len(text) - len(text.lstrip("\r\n"))]
        return lead + out

    def _pipe_table(self, text: str, label: str) -> str | None:
        """Markdown / psql / grid tables: header line then data lines, split on "|"."""
        if "|" not in text or "\n" not in text.strip():
            return None
        lines = text.split("\n")
        out = list(lines)
        in_table: set[int] = set()
        i = 0
        n = len(lines)
        while i < n:
            if "|" not in lines[i] or _is_rule(lines[i]):
                i += 1
                continue
            j = i
            while j < n and ("|" in lines[j] or _is_rule(lines[j])) and lines[j].strip():
                j += 1
            block = [k for k in range(i, j) if not _is_rule(lines[k])]
            if len(block) >= 2 and self._mask_table_block(lines, out, block):
                in_table.update(block)
            i = j
        if not in_table:
            return None
        for k, line in enumerate(lines):
            if k not in in_table and not _is_rule(line):
                out[k] = self.plain(line, label)
        return "\n".join(out)

    def _mask_table_block(self, lines: list[str], out: list[str], block: list[int]) -> bool:
        split = [_split_pipe_row(lines[k].rstrip("\r")) for k in block]
        width = len(split[0][1])
        if any(len(cells) != width for _, cells, _ in split):
            return False
        header = [c.strip() for c in split[0][1]]
        if width < 2 and not any(h.casefold() in self.classes for h in header):
            return False
        plans = self._positional_plans(header)
        for k, (prefix, cells, suffix), first in zip(
            block, split, [True] + [False] * (len(block) - 1), strict=True
        ):
            cr = "\r" if lines[k].endswith("\r") else ""
            if first:
                new = [
                    _refill(c, p.key) if p.renamed else c for c, p in zip(cells, plans, strict=True)
                ]
            else:
                new = []
                for c, p in zip(cells, plans, strict=True):
                    m = self.cell(c.strip(), p)
                    m = "" if m is None else m if isinstance(m, str) else str(m)
                    new.append(_refill(c, m))
            out[k] = "".join((prefix, "|".join(new), suffix, cr))
        return True

    # ----------------------------------------------------------------- parts

    def part(self, fn: Callable[[], Any], where: str, *, check: bool) -> Any:
        """Run one part (structured content, one text block) with its own counts; a result
        counts a cell once even when several parts render it (max across parts)."""
        counts: Counter[tuple[str, str, str]] = Counter()
        self.counts = counts
        self.located = set()
        self.mentioned = set()
        self.watch = self.sensitive if check and self.strict else frozenset()
        try:
            out = fn()
        finally:
            self.counts = self.total
        missing = self.mentioned - self.located
        if missing:
            raise UnmaskableResult(
                f"{where}: column(s) {', '.join(sorted(missing))} appear in the result but "
                "their values could not be located for masking"
            )
        for key, n in counts.items():
            if n > self.total[key]:
                self.total[key] = n
        return out


def _written_compactly(value: Any, body: str) -> bool:
    """Whether ``body`` is ``value`` as compact JSON (how our BigQuery MCP server writes the
    text beside its structured content): then it reads back as ``value`` without parsing it."""
    try:
        return dumps_compact(value, ensure_ascii=body.isascii()) == body.encode()
    except (TypeError, ValueError):
        return False


def _parse_json(body: str) -> Any:
    try:
        return json_loads(body)
    except (ValueError, RecursionError):
        return _NO_PARSE


def _parse_literal(body: str) -> Any:
    """A Python repr of rows (some servers return str(list_of_dicts)). literal_eval never runs
    code; it only builds literals."""
    try:
        value = ast.literal_eval(body)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return _NO_PARSE
    return value if isinstance(value, dict | list | tuple) else _NO_PARSE


# --------------------------------------------------------------------------- public entry points


def mask_rows(
    rows: list[dict[str, Any]],
    column_classes: Mapping[str, frozenset[str]],
    policy: MaskingPolicy,
    summary: MaskingSummary,
) -> list[dict[str, Any]]:
    """Mask a list of row objects; counts go into ``summary``."""
    masker = _Masker(column_classes, policy, strict=False, counts=summary.counts)
    return [masker.row(r) if isinstance(r, Mapping) else masker.node(r, "rows") for r in rows]


_STRICT_TEXT_POLICY = MaskingPolicy(actions={}, default_action=MaskAction.REDACT)


def mask_free_text(text: str, policy: MaskingPolicy | None) -> str:
    """``text`` after the content detectors, masked per ``policy`` (None: every finding is
    redacted). Detection runs even where the policy turns it off for results: this is for
    texts, such as error messages, that no column classification covers."""
    return _Masker({}, policy or _STRICT_TEXT_POLICY, strict=False).mask_spans(text, _TEXT_LABEL)


_BINARY_BLOCKS = frozenset({"image", "audio"})


def mask_tool_result(
    result: dict[str, Any],
    column_classes: Mapping[str, frozenset[str]],
    policy: MaskingPolicy,
    *,
    may_hold_sensitive: bool,
) -> tuple[dict[str, Any], MaskingSummary]:
    """Mask an MCP CallToolResult. Returns a new dict and the summary; the input is untouched.

    Raises UnmaskableResult when ``may_hold_sensitive`` and part of the result cannot be
    masked safely; without it, such parts are passed on after running the detectors where
    possible."""
    if not isinstance(result, Mapping):
        raise UnmaskableResult("tool result is not a JSON object")
    strict = may_hold_sensitive
    m = _Masker(column_classes, policy, strict=strict)
    is_error = result.get("isError") is True
    check = not is_error

    structured_in: Any = _NO_PARSE
    structured_out: Any = None
    if result.get("structuredContent") is not None:
        structured_in = result["structuredContent"]
        structured_out = m.part(
            lambda: m.node(structured_in, "structuredContent", top=True),
            "structuredContent",
            check=check,
        )

    def text_part(text: str, where: str) -> str:
        body = text.strip()
        if structured_in is not _NO_PARSE and body[:1] in ("{", "["):
            parsed = structured_in if _written_compactly(structured_in, body) else _parse_json(body)
            if parsed is not _NO_PARSE and parsed == structured_in:
                # the text renders the structured content: same masked output, counted once
                return text if structured_out == structured_in else _json_like(structured_out, text)
        return m.part(lambda: m.text(text, _TEXT_LABEL), where, check=check)

    out: dict[str, Any] = {}
    for key, value in result.items():
        if key == "structuredContent":
            out[key] = structured_out if structured_in is not _NO_PARSE else value
        elif key == "content":
            out[key] = _mask_content(m, value, text_part, strict=strict)
        elif key == "isError":
            out[key] = value
        elif key == "_meta" or not strict:
            out[key] = m.part(lambda v=value: m.metadata(v, "_meta"), str(key), check=False)
        else:
            out[key] = m.part(lambda v=value, k=key: m.node(v, str(k), top=True), str(key),
                              check=check)  # fmt: skip
    summary = MaskingSummary()
    summary.counts.update(m.total)
    return out, summary


def _mask_content(
    m: _Masker, content: Any, text_part: Callable[[str, str], str], *, strict: bool
) -> Any:
    if not isinstance(content, list):
        if strict:
            raise UnmaskableResult("content is not a list of blocks")
        return m.part(lambda: m.metadata(content, "content"), "content", check=False)
    blocks: list[Any] = []
    for i, block in enumerate(content):
        where = f"content[{i}]"
        kind = block.get("type") if isinstance(block, Mapping) else None
        if kind == "text" and isinstance(block.get("text"), str):
            new = _block_fields(m, block, ("type", "text"))
            new["text"] = text_part(block["text"], where)
        elif kind in _BINARY_BLOCKS:
            if strict:
                raise UnmaskableResult(f"{where}: {kind} content cannot be checked for PII")
            new = dict(block)
        elif kind == "resource" and isinstance(block.get("resource"), Mapping):
            resource = block["resource"]
            if "blob" in resource and strict:
                raise UnmaskableResult(f"{where}: binary resource cannot be checked for PII")
            new = _block_fields(m, block, ("type", "resource"))
            res = _block_fields(m, resource, ("text", "blob", "mimeType"))
            if isinstance(resource.get("text"), str):
                res["text"] = text_part(resource["text"], where)
            elif "text" in resource:
                if strict:
                    raise UnmaskableResult(f"{where}: resource text is not a string")
                res["text"] = resource["text"]
            new["resource"] = res
        elif kind == "resource_link":
            new = _block_fields(m, block, ("type",))
        else:
            if strict:
                shown = kind if isinstance(kind, str) else type(block).__name__
                raise UnmaskableResult(f"{where}: unsupported content block {shown!r}")
            new = m.part(lambda b=block: m.metadata(b, "content"), where, check=False)
        blocks.append(new)
    return blocks


def _block_fields(m: _Masker, block: Mapping[str, Any], keep: tuple[str, ...]) -> dict[str, Any]:
    """Copy a block: ``keep`` fields as they are (the caller handles them), the rest (names,
    descriptions, annotations, _meta) through the detectors."""
    out: dict[str, Any] = {}
    for k, v in block.items():
        if k in keep:
            out[k] = v
        else:
            out[k] = m.part(lambda v=v: m.metadata(v, "content"), "content", check=False)
    return out
