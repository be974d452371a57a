"""Installs into several workspaces through OAuth, with installs kept in the store's database."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any, AsyncIterator

import pymongo
import pytest
from slack_sdk.oauth.installation_store.models.installation import Installation

from convoflow.adapters.channel import router
from convoflow.adapters.slack.oauth import SlackOAuth
from convoflow.adapters.slack.installs import MongoInstallationStore, MongoOAuthStateStore, oauth_stores
from convoflow.messages import Incoming, Reply, SessionKey, Text
from convoflow.delivery import DeliveryFailed
from convoflow.stores import MemoryStore
from convoflow.stores.sqlite import SQLiteStore
from tests.support.fake_slack import CLIENT_ID, CLIENT_SECRET, FakeSlack, Team
from tests.support.mongo_server import start_mongo_server
from tests.support.slack_harness import SlackApp, bot_engine, running_slack
from tests.support.slack_payloads import dm

ACME = Team("TACME", "xoxb-acme", bot_user_id="UBOTACME", bot_id="BACME", name="Acme")
GLOBEX = Team("TGLOBEX", "xoxb-globex", bot_user_id="UBOTGLOBEX", bot_id="BGLOBEX", name="Globex")


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    slack = await FakeSlack(teams=[ACME, GLOBEX]).start()
    yield slack
    await slack.close()


@pytest.fixture(params=["sqlite", "mongo"])
async def oauth(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SlackOAuth]:
    """OAuth settings with installs in SQLite (the session store's file) or MongoDB."""
    if request.param == "sqlite":
        store = SQLiteStore(tmp_path / "sessions.db")
        installs, states = oauth_stores(store, CLIENT_ID)
        yield SlackOAuth(CLIENT_ID, CLIENT_SECRET, installs, states)
        await store.close()
    else:
        client: pymongo.AsyncMongoClient[Any] = pymongo.AsyncMongoClient(request.getfixturevalue("mongo_uri"))
        database = client.get_default_database()
        yield SlackOAuth(CLIENT_ID, CLIENT_SECRET, MongoInstallationStore(database, CLIENT_ID),
                         MongoOAuthStateStore(database))
        await client.close()


async def install(app: SlackApp, team: Team, code: str) -> str:
    """A person clicks "Add to Slack" on /slack/install, approves, and Slack redirects back."""
    async with app.http.get(app.base_url + "/slack/install") as page:
        assert page.status == 200
        html = await page.text()
        cookie = page.headers["Set-Cookie"].split(";")[0]
    state = re.search(r"state=([^&\"']+)", html)
    assert state is not None, html
    assert f"client_id={CLIENT_ID}&amp;scope=app_mentions:read,chat:write," in html, html
    app.fake.oauth_codes[code] = team
    async with app.http.get(app.base_url + f"/slack/oauth_redirect?code={code}&state={state[1]}",
                            headers={"Cookie": cookie}) as done:
        assert done.status == 200, await done.text()
        return state[1]


async def test_two_workspaces_install_and_never_share_sessions(fake: FakeSlack, oauth: SlackOAuth) -> None:
    store = MemoryStore()
    async with running_slack(bot_engine("bots/signup.py", store), fake, oauth=oauth) as app:
        await install(app, ACME, "code-acme")
        await install(app, GLOBEX, "code-globex")
        assert [c.params["code"] for c in fake.called("oauth.v2.access")] == ["code-acme", "code-globex"]

        # The same channel and user ids in both workspaces: two conversations all the same.
        await app.send(dm("hi", team="TACME"), team="TACME")
        await fake.next_posts("D111", 2)
        await app.send(dm("Ann", team="TACME"), team="TACME")
        await fake.next_posts("D111", 1)
        await app.send(dm("hi", team="TGLOBEX"), team="TGLOBEX")
        await fake.next_posts("D111", 2)
        await app.send(dm("Gus", team="TGLOBEX"), team="TGLOBEX")
        [globex_reply] = await fake.next_posts("D111", 1)
        assert globex_reply.params["text"] == "Nice to meet you, Gus. How old are you?"
        assert globex_reply.token == "xoxb-globex"
        acme_replies = [c for c in fake.posts() if c.token == "xoxb-acme"]
        assert [c.params["text"] for c in acme_replies][-1] == "Nice to meet you, Ann. How old are you?"

        # A workspace that never installed the app gets nothing.
        outsider = await app.send(dm("hi", team="TOTHER"), team="TOTHER")
        assert outsider.status == 200
    keys = {s.key for s in await store.list_sessions()}
    assert keys == {SessionKey("slack:-:TACME:D111", "signup"), SessionKey("slack:-:TGLOBEX:D111", "signup")}
    bot = await oauth.installation_store.async_find_bot(enterprise_id=None, team_id="TGLOBEX")
    assert bot is not None and (bot.bot_token, bot.bot_user_id) == ("xoxb-globex", "UBOTGLOBEX")


async def test_an_install_needs_a_fresh_state_from_the_same_browser(fake: FakeSlack, oauth: SlackOAuth) -> None:
    async with running_slack(bot_engine("bots/signup.py", MemoryStore()), fake, oauth=oauth) as app:
        state = await install(app, ACME, "code-1")
        fake.oauth_codes["code-2"] = GLOBEX
        cookie = {"Cookie": f"slack-app-oauth-state={state}"}
        async with app.http.get(app.base_url + f"/slack/oauth_redirect?code=code-2&state={state}", headers=cookie) as replayed:
            assert replayed.status == 401  # a state is good for one install
        async with app.http.get(app.base_url + "/slack/install") as page:
            fresh = re.search(r"state=([^&\"']+)", await page.text())
        assert fresh is not None
        async with app.http.get(app.base_url + f"/slack/oauth_redirect?code=code-2&state={fresh[1]}") as no_cookie:
            assert no_cookie.status == 400  # started in another browser
        async with app.http.get(app.base_url + "/slack/oauth_redirect?error=access_denied") as denied:
            assert denied.status == 200 and "access_denied" in await denied.text()
    assert len(fake.called("oauth.v2.access")) == 1
    assert await oauth.installation_store.async_find_bot(enterprise_id=None, team_id="TGLOBEX") is None


async def test_uninstalling_forgets_the_workspace(fake: FakeSlack, oauth: SlackOAuth) -> None:
    async with running_slack(bot_engine("bots/signup.py", MemoryStore()), fake, oauth=oauth) as app:
        await install(app, ACME, "code-acme")
        assert await oauth.installation_store.async_find_bot(enterprise_id=None, team_id="TACME") is not None
        assert (await app.send({"type": "app_uninstalled"}, team="TACME")).status == 200
        for _ in range(100):
            if await oauth.installation_store.async_find_bot(enterprise_id=None, team_id="TACME") is None:
                break
            await asyncio.sleep(0.02)
    assert await oauth.installation_store.async_find_bot(enterprise_id=None, team_id="TACME") is None
    assert await oauth.installation_store.async_find_installation(enterprise_id=None, team_id="TACME") is None


async def test_expiring_bot_tokens_are_rotated_before_use(fake: FakeSlack, oauth: SlackOAuth) -> None:
    rotated = Team("TACME", "xoxb-acme-rotated", bot_user_id="UBOTACME", bot_id="BACME", name="Acme")
    fake.teams.append(rotated)
    fake.refresh_tokens["xoxe-1-acme"] = rotated
    await oauth.installation_store.async_save(Installation(
        app_id="A1", team_id="TACME", bot_token="xoxb-acme", bot_id="BACME", bot_user_id="UBOTACME",
        bot_scopes="chat:write", bot_refresh_token="xoxe-1-acme", bot_token_expires_in=60, user_id="U1"))
    async with running_slack(bot_engine("bots/signup.py", MemoryStore()), fake, oauth=oauth) as app:
        await app.send(dm("hi", team="TACME"), team="TACME")
        posts = await fake.next_posts("D111", 2)
    assert {p.token for p in posts} == {"xoxb-acme-rotated"}
    [refresh] = fake.called("oauth.v2.access")
    assert (refresh.params["grant_type"], refresh.params["refresh_token"]) == ("refresh_token", "xoxe-1-acme")
    bot = await oauth.installation_store.async_find_bot(enterprise_id=None, team_id="TACME")
    assert bot is not None and (bot.bot_token, bot.bot_refresh_token) == ("xoxb-acme-rotated", "xoxe-1-next-TACME")
    assert bot.bot_token_expires_at is not None and bot.bot_token_expires_at > time.time() + 40000


async def test_a_store_outage_during_authorization_asks_slack_to_redeliver(fake: FakeSlack) -> None:
    server = start_mongo_server()
    client: pymongo.AsyncMongoClient[Any] = pymongo.AsyncMongoClient(
        server.uri_for("installs", serverSelectionTimeoutMS="300"))
    try:
        database = client.get_default_database()
        oauth = SlackOAuth(CLIENT_ID, CLIENT_SECRET, MongoInstallationStore(database, CLIENT_ID),
                           MongoOAuthStateStore(database))
        store = MemoryStore()
        async with running_slack(bot_engine("bots/signup.py", store), fake, oauth=oauth) as app:
            await install(app, ACME, "code-acme")
            server.stop()
            reply = await app.send(dm("hi", team="TACME"), team="TACME")
            assert reply.status == 503  # not acknowledged: Slack delivers it again later
        assert fake.called("chat.postMessage") == []
        assert await store.list_sessions() == []
    finally:
        server.stop()
        await client.close()



async def test_replies_left_waiting_go_out_with_their_own_workspaces_token(fake: FakeSlack, oauth: SlackOAuth) -> None:
    store = MemoryStore()
    engine = bot_engine("bots/signup.py", store)

    async def unreachable(reply: Reply) -> None:
        raise ConnectionError("Slack unreachable")

    async with running_slack(engine, fake, oauth=oauth) as app:
        await install(app, ACME, "code-acme")
        await install(app, GLOBEX, "code-globex")
        addresses = {
            # as stored before addresses named their channel and workspace: the partition says
            SessionKey("slack:-:TACME:D111", "signup"): {"channel": "D111"},
            # as the channel addresses replies now
            SessionKey("slack:-:TGLOBEX:D111", "signup"): {"via": "slack", "channel": "D111", "team": "TGLOBEX"},
        }
        for key, address in addresses.items():  # the welcome is committed, then its delivery fails (as a crash would leave it)
            with pytest.raises(DeliveryFailed):
                await engine.handle(Incoming(key, f"start {key}", "command", "/start", address=address), unreachable)
        route = router([app.channel])
        assert route(Reply(1, Text("hi"), {"chat_id": 42}, SessionKey("telegram:7:42", "signup"))) is None
        engine.delivery.handoff_seconds = 0.0  # the sweep may take them over at once
        assert await engine.redeliver_waiting(route) == 4
    welcomes = [(c.token, c.params["text"]) for c in fake.posts()]
    assert welcomes == [("xoxb-acme", "Welcome! Let's get you signed up."), ("xoxb-acme", "What's your name?"),
                        ("xoxb-globex", "Welcome! Let's get you signed up."), ("xoxb-globex", "What's your name?")]
