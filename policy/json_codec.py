"""JSON on the data path: orjson where it reads and writes exactly what the standard library
would, the standard library everywhere else.

Every tool result is parsed once, its text blocks again, and both written back out; with the
standard library that is most of a large result's cost in the gateway. orjson is several
times faster but differs at the edges, so each edge goes to the standard library:

* integers of 19 digits or more: orjson reads those beyond 64 bits as floats (a silent change
  of the caller's data), so any such digit run sends the text to ``json.loads``;
* what orjson refuses and ``json.loads`` accepts (``NaN``, lone surrogates, 1e400): parsed by
  ``json.loads`` as before, so the same texts parse as before;
* writing: integers beyond 64 bits, non-string keys and nesting deeper than 255, which orjson
  refuses, are written by ``json.dumps``; ASCII-only output escapes what orjson leaves as UTF-8.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Callable
from typing import Any

import orjson

__all__ = ["dumps_compact", "loads"]

# Every digit as "0": a run of 19 digits is then a plain substring search (a regex for it
# costs ten times more on a digit-heavy result).
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_DIGIT_RUN = b"0" * 19


def loads(raw: str | bytes) -> Any:
    """``json.loads(raw)``, faster. Raises what it raises (ValueError, RecursionError)."""
    try:
        data = raw.encode() if isinstance(raw, str) else raw
    except UnicodeEncodeError:  # a lone surrogate: orjson refuses it anyway
        return json.loads(raw)
    if _LONG_DIGIT_RUN not in data.translate(_DIGITS_AS_ZERO):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass  # the standard library decides, and says why
    return json.loads(raw)


def dumps_compact(obj: Any, *, ensure_ascii: bool = False,
                  default: Callable[[Any], Any] | None = None) -> bytes:
    """``json.dumps(obj, separators=(",", ":"), ensure_ascii=..., default=...)`` as UTF-8, faster
    (a float NaN or infinity is written as null, which JSON can read, not as NaN)."""
    try:
        out = orjson.dumps(obj, default=default)
    except TypeError:  # orjson.JSONEncodeError: a big integer, a non-string key, deep nesting,
        # a lone surrogate (which UTF-8 cannot carry: escaped, the one form it can leave in)
        text = json.dumps(obj, separators=(",", ":"), ensure_ascii=ensure_ascii, default=default)
        try:
            return text.encode()
        except UnicodeEncodeError:
            return json.dumps(obj, separators=(",", ":"), default=default).encode()
    if ensure_ascii and (not out.isascii() or b"\x7f" in out):
        # Outside strings JSON is ASCII, so every other character is inside one: escaped there
        # as json.dumps escapes it (the encoder copies the ASCII runs; only the rest is ours).
        return out.decode().replace("\x7f", "\\u007f").encode("ascii", _ESCAPE_ERRORS)
    return out


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000  # a surrogate pair, as json.dumps writes it
    return f"\\u{0xD800 | (code >> 10):04x}\\u{0xDC00 | (code & 0x3FF):04x}"


def _escape_unencodable(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeEncodeError):
        raise error
    return "".join(map(_escape, error.object[error.start:error.end])), error.end


_ESCAPE_ERRORS = "wardgate.json_escape"
codecs.register_error(_ESCAPE_ERRORS, _escape_unencodable)
