"""The store backends every store test runs against, in one place."""

from __future__ import annotations

from pathlib import Path

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
