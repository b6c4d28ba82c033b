"""The one cache type: expiry, explicit deadlines, the size bound and clearing."""

from __future__ import annotations

from proxy.ttl_cache import TtlCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_entry_expires_after_ttl() -> None:
    clock = Clock()
    cache: TtlCache[str, int] = TtlCache(30, clock=clock)
    cache.put("a", 1)
    clock.now += 29.9
    assert cache.get("a") == 1
    clock.now += 0.1
    assert cache.get("a") is None


def test_until_shortens_but_never_lengthens() -> None:
    clock = Clock()
    cache: TtlCache[str, int] = TtlCache(30, clock=clock)
    cache.put("short", 1, until=clock.now + 5)
    cache.put("long", 2, until=clock.now + 500)
    clock.now += 10
    assert cache.get("short") is None
    assert cache.get("long") == 2
    clock.now += 25
    assert cache.get("long") is None


def test_a_cached_none_is_told_from_a_miss() -> None:
    cache: TtlCache[str, int | None] = TtlCache(30)
    missing = object()
    assert cache.get("x", missing) is missing
    cache.put("x", None)
    assert cache.get("x", missing) is None


def test_size_bound_empties_the_cache() -> None:
    cache: TtlCache[int, int] = TtlCache(None, max_entries=3)
    for i in range(4):
        cache.put(i, i)
    assert len(cache) == 4
    cache.put(99, 99)  # past the bound: emptied first
    assert len(cache) == 1 and cache.get(99) == 99 and cache.get(0) is None


def test_clear_and_pop() -> None:
    cache: TtlCache[str, int] = TtlCache(None)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.pop("a")
    cache.pop("absent")
    assert cache.get("a") is None and cache.get("b") == 2
    cache.clear()
    assert len(cache) == 0
