"""The store backends every store test runs against, in one place."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.stores import MemoryStore, Store

STORE_BACKENDS = ["memory"]


async def open_backend(name: str, tmp_path: Path, request: pytest.FixtureRequest) -> Store:
    if name == "memory":
        return MemoryStore()
    raise LookupError(f"unknown store backend {name!r}")
