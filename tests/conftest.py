"""Fixtures shared by every test module."""

from __future__ import annotations

import uuid
from typing import Iterator

import pytest

from tests.mongo_server import MongoServer, mongo_server_from_environment


@pytest.fixture(scope="session")
def mongo_server() -> Iterator[MongoServer]:
    """One MongoDB-compatible server for the whole run (fails, never skips, when it can't start)."""
    server = mongo_server_from_environment()
    yield server
    server.stop()


@pytest.fixture
def mongo_uri(mongo_server: MongoServer) -> str:
    """A URI naming a database of this test's own, so tests never see each other's sessions."""
    return mongo_server.uri_for(f"convoflow_test_{uuid.uuid4().hex[:12]}")
