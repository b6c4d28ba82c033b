"""Both stores implement every method of the GatewayStore protocol, with the same signature."""

from __future__ import annotations

import inspect

import pytest

from proxy.store import GatewayStore
from tests.proxy.store_memory import MemoryGatewayStore

PROTOCOL_METHODS = sorted(
    name for name, value in vars(GatewayStore).items()
    if callable(value) and not name.startswith("_"))


def _store_classes() -> list[type]:
    from portal.gateway_store import PortalGatewayStore

    return [PortalGatewayStore, MemoryGatewayStore]


def test_the_protocol_is_not_empty() -> None:
    assert len(PROTOCOL_METHODS) >= 20


@pytest.mark.parametrize("name", PROTOCOL_METHODS)
def test_each_store_implements(name: str) -> None:
    wanted = inspect.signature(getattr(GatewayStore, name))
    for cls in _store_classes():
        method = getattr(cls, name, None)
        assert method is not None, f"{cls.__name__} lacks {name}"
        got = inspect.signature(method)
        assert list(got.parameters) == list(wanted.parameters), (cls.__name__, name)
        assert [p.kind for p in got.parameters.values()] == [
            p.kind for p in wanted.parameters.values()], (cls.__name__, name)
