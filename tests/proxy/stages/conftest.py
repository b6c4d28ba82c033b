"""Gateway stages against the in-memory store: no database, emulator, upstream or uvicorn."""

from __future__ import annotations

import pytest

from tests.proxy.store_memory import MemoryGatewayStore


@pytest.fixture
def store() -> MemoryGatewayStore:
    return MemoryGatewayStore()
