"""Fixtures shared by every test module."""

from __future__ import annotations

import uuid
from typing import AsyncIterator, Iterator

import pytest

from convoflow import PersistenceProvider
from tests.support.dialog_helpers import PERSISTENCES
from tests.support.fake_slack import FakeSlack
from tests.support.fake_telegram import FakeTelegram
from tests.support.mongo_server import MongoServer, mongo_server_from_environment


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


@pytest.fixture(params=sorted(PERSISTENCES))
def persistence(request: pytest.FixtureRequest) -> PersistenceProvider:
    """Each seed-API persistence: one keeping the state object, one keeping only JSON text."""
    return PERSISTENCES[request.param]()


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    """A loopback fake of the Telegram Bot API."""
    fake = await FakeTelegram().start()
    yield fake
    await fake.close()


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    """A loopback fake of the Slack Web API."""
    fake = await FakeSlack().start()
    yield fake
    await fake.close()
