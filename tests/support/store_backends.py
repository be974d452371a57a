"""The store backends every store test runs against, in one place."""

from __future__ import annotations

from pathlib import Path
from typing import AsyncIterator

import pytest
from motor.motor_asyncio import AsyncIOMotorClient

from convoflow.stores import MemoryStore, Store, open_store
from convoflow.stores.mongo import MongoStore
from convoflow.stores.sqlite import SQLiteStore

STORE_BACKENDS = ["memory", "sqlite", "mongo", "motor"]


async def open_backend(name: str, tmp_path: Path, request: pytest.FixtureRequest) -> Store:
    if name == "memory":
        return MemoryStore()
    if name == "sqlite":
        return SQLiteStore.from_url(f"sqlite:///{tmp_path / 'sessions.db'}")
    if name == "mongo":  # pymongo's async client, opened from the URL as users do
        return open_store(request.getfixturevalue("mongo_uri"))
    if name == "motor":  # a Motor client the user already has, handed to the store
        client: AsyncIOMotorClient = AsyncIOMotorClient(request.getfixturevalue("mongo_uri"))
        request.addfinalizer(client.close)
        return MongoStore(client)
    raise LookupError(f"unknown store backend {name!r}")


@pytest.fixture(params=["memory", "sqlite", "mongo"], name="store")
async def each_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A fresh store of each kind (import it as `store` into a test module to run its tests on each)."""
    opened = await open_backend(request.param, tmp_path, request)
    yield opened
    await opened.close()


@pytest.fixture(params=[10_000, 0], ids=["warm", "replayed"], name="max_live")
def warm_and_replayed(request: pytest.FixtureRequest) -> int:
    """An Engine's `max_live` that keeps plays between turns, and one that replays every turn."""
    return int(request.param)
