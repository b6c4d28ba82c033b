"""The data path's JSON (policy.json_codec) reads and writes what the standard library does:
orjson is only a faster way to the same result, never a different one."""

from __future__ import annotations

import json
from typing import Any

import pytest

from policy.json_codec import dumps_compact, loads

TEXTS = [
    '{"a": 1, "b": [true, false, null], "c": {"d": "e"}}',
    '{"id": 18446744073709551616, "n": -9223372036854775809, "m": 9223372036854775807}',
    '[123456789012345678901234567890, 1.5, -0, 1e308]',
    '{"v": "1234567890123456789012"}',  # a long digit run inside a string: still exact
    '[NaN, Infinity, -Infinity, 1e400]',  # orjson refuses these; json.loads reads them
    '"\\ud800 lone surrogate"',
    '{"a": 1, "a": 2}',  # the last of a repeated key, as json.loads keeps it
    '"Zo\\u00eb \\u2028 \\ud83d\\ude00"',
    '  {"spaced" :  [ 1 , 2 ] }  ',
]


@pytest.mark.parametrize("text", TEXTS)
def test_loads_reads_what_json_loads_reads(text: str) -> None:
    expected = json.loads(text)
    for raw in (text, text.encode()):
        got = loads(raw)
        assert repr(got) == repr(expected)  # repr: 1 and 1.0, and NaN, compared exactly


@pytest.mark.parametrize("text", ['{"a": ', "{not json", '{"a": 1} trailing', "\ufeff{}", ""])
def test_loads_refuses_what_json_loads_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        json.loads(text)
    with pytest.raises(ValueError):
        loads(text)


def test_loads_deep_nesting_raises_like_json_loads() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(RecursionError):
        loads(deep)


VALUES: list[Any] = [
    {"a": "é\x1f\u2028😀\n\"\\", "b": [1, 2.5, None, True], "c": {"d": "x"}},
    ["\x7f\x00", "Zoë"],
    {"big": 2**70, "neg": -(2**64)},  # beyond 64 bits: orjson refuses, json.dumps writes
    {1: "int key"},  # json.dumps writes "1"
    "\ud800 lone surrogate",
    [[[[["nested"]]]]],
    {"deep": json.loads("[" * 300 + "]" * 300)},  # deeper than orjson writes
]


@pytest.mark.parametrize("value", VALUES)
@pytest.mark.parametrize("ensure_ascii", [True, False])
def test_dumps_writes_what_json_dumps_writes(value: Any, ensure_ascii: bool) -> None:
    got = dumps_compact(value, ensure_ascii=ensure_ascii)
    expected = json.dumps(value, separators=(",", ":"), ensure_ascii=ensure_ascii)
    try:
        assert got == expected.encode()
    except UnicodeEncodeError:  # a lone surrogate cannot be UTF-8: it leaves escaped
        assert got == json.dumps(value, separators=(",", ":")).encode()
    if ensure_ascii:
        assert got.isascii() and b"\x7f" not in got


def test_dumps_default_applies_as_in_json_dumps() -> None:
    value = {"when": b"bytes", "set": {3}}
    assert dumps_compact(value, default=str) == json.dumps(
        value, separators=(",", ":"), default=str).encode()
    with pytest.raises(TypeError):
        dumps_compact(value)
