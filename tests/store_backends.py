"""The store backends every store test runs against, in one place."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.stores import MemoryStore, Store
from engine.stores.sqlite import SQLiteStore

STORE_BACKENDS = ["memory", "sqlite"]


async def open_backend(name: str, tmp_path: Path, request: pytest.FixtureRequest) -> Store:
    if name == "memory":
        return MemoryStore()
    if name == "sqlite":
        return SQLiteStore.from_url(f"sqlite:///{tmp_path / 'sessions.db'}")
    raise LookupError(f"unknown store backend {name!r}")
