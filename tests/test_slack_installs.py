"""Installation and OAuth state stores, on SQLite and on MongoDB (the test server), each picked by
`oauth_stores` for a session store of that kind, as the CLI does."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import AsyncIterator

import pytest
from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.oauth.installation_store.models.installation import Installation
from slack_sdk.oauth.state_store.async_state_store import AsyncOAuthStateStore

from convoflow.adapters.slack.installs import MongoInstallationStore, MongoOAuthStateStore, oauth_stores
from convoflow.stores import MemoryStore
from convoflow.stores.mongo import MongoStore
from convoflow.stores.sqlite import SQLiteStore

CLIENT = "111.222"
Stores = tuple[AsyncInstallationStore, AsyncOAuthStateStore]


@pytest.fixture(params=["sqlite", "mongo"])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stores]:
    if request.param == "sqlite":
        store = SQLiteStore(tmp_path / "sessions.db")
        yield oauth_stores(store, CLIENT)
        await store.close()
    else:
        mongo = MongoStore.from_url(request.getfixturevalue("mongo_uri"))
        picked = oauth_stores(mongo, CLIENT)
        assert isinstance(picked[0], MongoInstallationStore) and isinstance(picked[1], MongoOAuthStateStore)
        assert picked[0].installations.database is mongo.database  # beside the sessions
        yield picked
        await mongo.close()


def installation(team: str | None, user: str, token: str, *, enterprise: str | None = None,
                 org_wide: bool = False, at: float | None = None) -> Installation:
    return Installation(
        app_id="A1", enterprise_id=enterprise, team_id=team, team_name=f"team {team}", bot_token=token,
        bot_id="B1", bot_user_id="UBOT", bot_scopes="chat:write,im:history", user_id=user,
        user_token=f"xoxp-{user}", user_scopes="search:read", is_enterprise_install=org_wide,
        installed_at=at if at is not None else time.time(),
    )


async def test_installs_are_found_per_workspace(stores: Stores) -> None:
    installs, _ = stores
    await installs.async_save(installation("T1", "U1", "xoxb-1"))
    await installs.async_save(installation("T2", "U2", "xoxb-2"))
    bot = await installs.async_find_bot(enterprise_id=None, team_id="T1")
    assert bot is not None and (bot.bot_token, bot.bot_user_id, bot.team_id) == ("xoxb-1", "UBOT", "T1")
    assert bot.bot_scopes == ["chat:write", "im:history"]
    found = await installs.async_find_installation(enterprise_id=None, team_id="T2")
    assert found is not None and (found.bot_token, found.user_id, found.user_token) == ("xoxb-2", "U2", "xoxp-U2")
    assert await installs.async_find_bot(enterprise_id=None, team_id="T3") is None
    assert await installs.async_find_bot(enterprise_id="E1", team_id="T1") is None
    assert await installs.async_find_installation(enterprise_id=None, team_id="T3") is None


async def test_a_reinstall_replaces_the_bot_token_at_once(stores: Stores) -> None:
    installs, _ = stores
    for n in range(3):  # within one second: the path authorization takes must still see the newest
        await installs.async_save(installation("T1", "U1", f"xoxb-{n}"))
        bot = await installs.async_find_bot(enterprise_id=None, team_id="T1")
        assert bot is not None and bot.bot_token == f"xoxb-{n}"


async def test_the_newest_install_wins_and_a_users_own_install_gets_the_current_bot_token(stores: Stores) -> None:
    installs, _ = stores
    await installs.async_save(installation("T1", "U1", "xoxb-old"))
    # slack-sdk's SQLite store stamps installs with the database clock, to the second.
    await asyncio.sleep(1.05)
    await installs.async_save(installation("T1", "U2", "xoxb-new"))
    bot = await installs.async_find_bot(enterprise_id=None, team_id="T1")
    assert bot is not None and bot.bot_token == "xoxb-new"
    latest = await installs.async_find_installation(enterprise_id=None, team_id="T1")
    assert latest is not None and latest.user_id == "U2"
    first_user = await installs.async_find_installation(enterprise_id=None, team_id="T1", user_id="U1")
    assert first_user is not None
    assert (first_user.user_id, first_user.user_token, first_user.bot_token) == ("U1", "xoxp-U1", "xoxb-new")


async def test_an_org_wide_install_serves_every_workspace_of_the_org(stores: Stores) -> None:
    installs, _ = stores
    await installs.async_save(installation(None, "U1", "xoxb-org", enterprise="E1", org_wide=True))
    bot = await installs.async_find_bot(enterprise_id="E1", team_id="T7", is_enterprise_install=True)
    assert bot is not None and bot.bot_token == "xoxb-org" and bot.is_enterprise_install
    assert await installs.async_find_bot(enterprise_id="E2", team_id=None, is_enterprise_install=True) is None


async def test_deleting_installs(stores: Stores) -> None:
    installs, _ = stores
    await installs.async_save(installation("T1", "U1", "xoxb-1"))
    await installs.async_save(installation("T1", "U2", "xoxb-1"))
    await installs.async_save(installation("T2", "U3", "xoxb-2"))
    await installs.async_delete_installation(enterprise_id=None, team_id="T1", user_id="U2")
    assert await installs.async_find_installation(enterprise_id=None, team_id="T1", user_id="U2") is None
    assert await installs.async_find_installation(enterprise_id=None, team_id="T1", user_id="U1") is not None
    await installs.async_delete_all(enterprise_id=None, team_id="T1")
    assert await installs.async_find_installation(enterprise_id=None, team_id="T1") is None
    assert await installs.async_find_bot(enterprise_id=None, team_id="T1") is None
    assert await installs.async_find_bot(enterprise_id=None, team_id="T2") is not None


async def test_a_state_is_good_once(stores: Stores) -> None:
    _, states = stores
    state = await states.async_issue()
    other = await states.async_issue()
    assert state != other and len(state) >= 16
    assert await states.async_consume(state) is True
    assert await states.async_consume(state) is False
    assert await states.async_consume("never-issued") is False
    assert await states.async_consume(other) is True


async def test_a_state_is_consumed_once_even_by_racing_callbacks(stores: Stores) -> None:
    _, states = stores
    for _ in range(5):
        state = await states.async_issue()
        results = await asyncio.gather(*[states.async_consume(state) for _ in range(8)])
        assert results.count(True) == 1


async def test_an_expired_state_is_refused(stores: Stores, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    _, states = stores
    expiring = getattr(states, "store", states)  # the SQLite one is wrapped for its worker thread
    expiring.expiration_seconds = 0
    state = await states.async_issue()
    await asyncio.sleep(0.01)
    assert await states.async_consume(state) is False


def test_installs_need_a_store_that_outlives_the_process() -> None:
    with pytest.raises(ValueError, match="need a store that lasts"):
        oauth_stores(MemoryStore(), CLIENT)
