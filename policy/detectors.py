"""Content detectors: find PII in free-form strings.

Each detector is a precompiled candidate regex plus a validator (Luhn for cards, mod-97 for
IBANs, area rules for SSNs, :mod:`ipaddress` for IPs), so that ids, amounts, dates and
timestamps are not flagged. :func:`find_pii` is on the gateway's hot path: most strings it sees
are short non-PII cells, so it starts with cheap prechecks and only runs the regexes that could
possibly match.

Only classes that can be recognised from content alone are detected here: email, phone, ssn,
card, iban and ip. Names, addresses and dates of birth cannot be told apart from ordinary text
and are left to column classification.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

__all__ = [
    "CARD",
    "DETECTABLE_CLASSES",
    "EMAIL",
    "IBAN",
    "IP",
    "PHONE",
    "SSN",
    "Finding",
    "find_pii",
    "find_spans",
    "iban_is_valid",
    "luhn_is_valid",
]

EMAIL = "email"
PHONE = "phone"
SSN = "ssn"
CARD = "card"
IBAN = "iban"
IP = "ip"

DETECTABLE_CLASSES = frozenset({EMAIL, PHONE, SSN, CARD, IBAN, IP})

# When two candidates overlap, the longer wins; on equal length, the earlier class here wins.
_PRIORITY = {EMAIL: 0, IBAN: 1, CARD: 2, SSN: 3, PHONE: 4, IP: 5}


@dataclass(frozen=True, slots=True)
class Finding:
    """One detected value: its class and its span ``text[start:end]``."""

    cls: str
    start: int
    end: int


# --------------------------------------------------------------------------- regexes

# Whole strings that cannot hold PII: ISO dates/times/timestamps, decimals with a fraction
# (no card or phone has a decimal point), UUIDs.
_SAFE_SHAPE = re.compile(
    r"\d{4}-\d\d-\d\d(?:[T ]\d\d:\d\d(?::\d\d(?:\.\d{1,9})?)?(?:Z|[+-]\d\d:?\d\d| UTC)?)?"
    r"|\d\d:\d\d(?::\d\d(?:\.\d{1,9})?)?"
    r"|[+-]?\d{1,3}(?:,\d{3})*\.\d+|[+-]?\d+\.\d+(?:[eE][+-]?\d+)?"
    r"|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
    re.ASCII,
)

_Span = tuple[int, int, str]  # (start, end, class)

# Bounded quantifiers everywhere: no quadratic blow-up on long runs of word characters.
_EMAIL_RE = re.compile(
    r"[\w.%+'-]{1,64}@"
    r"(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.){1,8}"
    r"[^\W\d_]{2,24}(?![\w-])"
)
_EMAIL_LOCAL_TRIM = ".'%+-"

# 13-19 digits, optionally grouped by single spaces or dashes; not part of a longer number,
# a decimal or a word.
_CARD_RE = re.compile(r"(?<![\w.,])(?:\d[ -]?){12,18}\d(?!\w|[.,]\d)", re.ASCII)

# Dashed or spaced only (same separator twice); bare 9-digit runs are too noisy.
_SSN_RE = re.compile(r"(?<![\w.+-])(\d{3})([- ])(\d{2})\2(\d{4})(?![\w-]|\.\d)", re.ASCII)

# International: "+" country code then groups of digits, optionally separated or in parentheses.
_PHONE_INTL_RE = re.compile(
    r"(?<![\w+])\+\d{1,3}(?:[ .-]?(?:\(\d{1,4}\)|\d{1,4})){2,7}(?![\d]|[.-]\d)",
    re.ASCII,
)
# North American: (555) 123-4567, 555-123-4567, 555.123.4567, 555 123 4567, 1-555-123-4567.
_PHONE_US_RE = re.compile(
    r"(?<![\w.+(-])"
    r"(?:1[ .-]?)?"
    r"(?:\(\d{3}\)[ ]?\d{3}[ .-]|\d{3}([ .-])\d{3}\1)"
    r"\d{4}(?!\w|[.-]\d)",
    re.ASCII,
)

_IBAN_RE = re.compile(r"(?<![A-Za-z0-9])([A-Z]{2})\d{2}(?: ?[A-Z0-9]){11,30}", re.ASCII)

_IPV4_RE = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\d)", re.ASCII)
_IPV6_RE = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}"
    r"(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{1,4})?"
    r"(?![\w:]|\.\d)",
    re.ASCII,
)

# Registered IBAN lengths (SWIFT registry), by country code.
_IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22,
    "BH": 22, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28,
    "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27,
    "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15,
    "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24,
    "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip

_LUHN_DOUBLE = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


# --------------------------------------------------------------------------- validators


def luhn_is_valid(digits: str) -> bool:
    """Luhn checksum over a string of ASCII digits."""
    total = 0
    double = False
    for ch in reversed(digits):
        d = ord(ch) - 48
        total += _LUHN_DOUBLE[d] if double else d
        double = not double
    return total % 10 == 0


def _card_prefix_ok(d: str) -> bool:
    """Issuer prefix and length plausible for a payment card (keeps ids and epochs out)."""
    n = len(d)
    first = d[0]
    if first == "4":  # Visa
        return n in (13, 16, 19)
    if first == "5":
        p2 = d[:2]
        if "51" <= p2 <= "55":  # Mastercard
            return n == 16
        return p2 in ("50", "56", "57", "58") and n >= 13  # Maestro
    if first == "2":  # Mastercard 2-series
        return "2221" <= d[:4] <= "2720" and n == 16
    if first == "3":
        p2 = d[:2]
        if p2 in ("34", "37"):  # American Express
            return n == 15
        if p2 == "35":  # JCB
            return n >= 16
        return p2 in ("30", "36", "38", "39") and n >= 14  # Diners Club
    if first == "6":  # Discover, UnionPay, Maestro
        return n >= 16
    return False


def _card_ok(candidate: str) -> bool:
    digits = candidate.replace(" ", "").replace("-", "")
    if not 13 <= len(digits) <= 19 or digits.count(digits[0]) == len(digits):
        return False
    if " " in candidate and "-" in candidate:  # mixed separators: not how cards are written
        return False
    return _card_prefix_ok(digits) and luhn_is_valid(digits)


_CARD_GROUP = re.compile(r"[0-9]+")


def _card_span(candidate: str) -> tuple[int, int] | None:
    """Span of a card inside a digit-group candidate. The candidate regex is greedy, so a card
    written next to other numbers ("ref 12 4111 1111 1111 1111") comes with extra groups: try
    the whole candidate, then runs of whole groups, longest first."""
    if _card_ok(candidate):
        return 0, len(candidate)
    groups = [(m.start(), m.end()) for m in _CARD_GROUP.finditer(candidate)]
    ng = len(groups)
    if ng < 2:
        return None
    for size in range(ng - 1, 0, -1):
        for i in range(ng - size + 1):
            start, end = groups[i][0], groups[i + size - 1][1]
            if end - start >= 13 and _card_ok(candidate[start:end]):
                return start, end
    return None


def _ssn_ok(area: str, group: str, serial: str) -> bool:
    return (
        area != "000" and area != "666" and area[0] != "9" and group != "00" and (serial != "0000")
    )


def iban_is_valid(iban: str) -> bool:
    """Country length and mod-97 check of an IBAN (spaces allowed)."""
    compact = iban.replace(" ", "").upper()
    if len(compact) < 15 or not compact.isalnum() or not compact.isascii():
        return False
    if _IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact[2:4].isdigit():
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def _iban_span(text: str, start: int) -> int | None:
    """End of a valid IBAN starting at ``start``, or None. The candidate regex may run past
    the IBAN into the following words, so the registered length decides where it ends."""
    length = _IBAN_LENGTHS.get(text[start : start + 2])
    if length is None:
        return None
    count = 0
    i = start
    n = len(text)
    prev_space = False
    while i < n and count < length:
        ch = text[i]
        if ch == " ":
            if count < 4 or prev_space:  # no space inside country + check digits, no doubles
                return None
            prev_space = True
        elif ch.isascii() and ch.isalnum():
            count += 1
            prev_space = False
        else:
            return None
        i += 1
    if count < length or (i < n and text[i].isascii() and text[i].isalnum()):
        return None
    return i if iban_is_valid(text[start:i]) else None


def _ipv6_ok(candidate: str) -> bool:
    if candidate.count(":") < 2 or not any(c not in ":" for c in candidate):
        return False
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    return True


def _ipv4_ok(candidate: str) -> bool:
    try:
        ipaddress.IPv4Address(candidate)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------- scanning


def _scan(text: str, ndigits: int, out: list[_Span]) -> None:
    if "@" in text:
        for m in _EMAIL_RE.finditer(text):
            start = m.start()
            while text[start] in _EMAIL_LOCAL_TRIM:
                start += 1
            if text[start] != "@":
                out.append((start, m.end(), EMAIL))

    if ndigits >= 9:
        if ndigits >= 13:
            for m in _CARD_RE.finditer(text):
                span = _card_span(m.group())
                if span is not None:
                    out.append((m.start() + span[0], m.start() + span[1], CARD))
        if "-" in text or " " in text:
            for m in _SSN_RE.finditer(text):
                if _ssn_ok(m.group(1), m.group(3), m.group(4)):
                    out.append((m.start(), m.end(), SSN))
        if ndigits >= 10:
            if "+" in text:
                for m in _PHONE_INTL_RE.finditer(text):
                    cand = m.group()
                    # A single dot is a decimal point ("+1234567890.50"), not a separator.
                    if 10 <= sum(c.isdigit() for c in cand) <= 15 and cand.count(".") != 1:
                        out.append((m.start(), m.end(), PHONE))
            for m in _PHONE_US_RE.finditer(text):
                out.append((m.start(), m.end(), PHONE))

    if ndigits >= 4:
        if len(text) >= 15:
            for m in _IBAN_RE.finditer(text):
                end = _iban_span(text, m.start())
                if end is not None:
                    out.append((m.start(), end, IBAN))
        if "." in text:
            for m in _IPV4_RE.finditer(text):
                if _ipv4_ok(m.group()):
                    out.append((m.start(), m.end(), IP))

    if text.count(":") >= 2:
        for m in _IPV6_RE.finditer(text):
            if _ipv6_ok(m.group()):
                out.append((m.start(), m.end(), IP))


def _resolve(found: list[_Span]) -> list[_Span]:
    """Drop overlaps: longest span first, then class priority; return in text order."""
    found.sort(key=lambda f: (f[0] - f[1], _PRIORITY[f[2]], f[0]))
    kept: list[_Span] = []
    for f in found:
        if all(f[1] <= k[0] or f[0] >= k[1] for k in kept):
            kept.append(f)
    kept.sort()
    return kept


def find_spans(text: str) -> list[tuple[int, int, str]]:
    """Like :func:`find_pii`, as ``(start, end, class)`` tuples (no object per finding)."""
    n = len(text)
    if n < 3:
        return []
    # Fast path: most cells are short strings with no "@", no ":" and few digits, or dates,
    # timestamps, decimals and UUIDs, which cannot hold PII. (Digits are single bytes in
    # UTF-8, so counting them on the encoded text is exact, and much faster than str.translate.)
    encoded = text.encode("utf-8", "surrogatepass")
    ndigits = len(encoded) - len(encoded.translate(None, b"0123456789"))
    if "@" not in text:
        if ndigits < 4:
            if ":" not in text:
                return []
        elif ndigits < 9 and n < 15 and ":" not in text and "." not in text:
            return []  # too few digits for cards/phones/SSNs, too short for an IBAN, no IP
        elif _SAFE_SHAPE.fullmatch(text) is not None:
            return []
    found: list[_Span] = []
    _scan(text, ndigits, found)
    if len(found) > 1:
        return _resolve(found)
    return found


def find_pii(text: str) -> list[Finding]:
    """All PII found in ``text``: non-overlapping findings, ordered by position."""
    return [Finding(cls, start, end) for start, end, cls in find_spans(text)]
