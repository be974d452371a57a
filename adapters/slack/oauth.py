"""Multi-workspace installs: where installs and OAuth states live, and how an update finds its
workspace's bot token.

Installs are kept in the database of the session store the bot runs on: MongoDB collections beside
the sessions (adapters.slack_mongo), or tables in the same SQLite file (slack-sdk's own SQLite
stores, run on a worker thread: their async methods would block the event loop).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from contextlib import closing
from typing import Any

from slack_bolt.authorization import AuthorizeResult
from slack_bolt.authorization.async_authorize import AsyncAuthorize
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.oauth.installation_store.installation_store import InstallationStore
from slack_sdk.oauth.installation_store.models.bot import Bot
from slack_sdk.oauth.installation_store.models.installation import Installation
from slack_sdk.oauth.installation_store.sqlite3 import SQLite3InstallationStore
from slack_sdk.oauth.state_store.async_state_store import AsyncOAuthStateStore
from slack_sdk.oauth.state_store.sqlite3 import SQLite3OAuthStateStore
from slack_sdk.oauth.state_store.state_store import OAuthStateStore
from slack_sdk.oauth.token_rotation.async_rotator import AsyncTokenRotator
from slack_sdk.web.async_client import AsyncWebClient

from convoflow.stores.sqlite import SQLiteStore

from convoflow.adapters.slack.mongo import MongoInstallationStore, MongoOAuthStateStore

STATE_SECONDS = 600
"""How long an install link (its OAuth state) stays valid."""
CHECKED_TOKENS = 10_000
"""Bot tokens whose auth.test answer is remembered."""


def oauth_stores(store: Any, client_id: str) -> tuple[AsyncInstallationStore, AsyncOAuthStateStore]:
    """Installation and state stores in the database of the session store `store`.

    Raises ValueError for a store that keeps nothing past the process (memory://): an install
    would be lost on the next restart, with the workspace none the wiser.
    """
    database = getattr(store, "database", None)
    if database is not None:
        return MongoInstallationStore(database, client_id), MongoOAuthStateStore(database, STATE_SECONDS)
    if isinstance(store, SQLiteStore):
        path = str(store.path)
        installs = SQLite3InstallationStore(database=path, client_id=client_id)
        states = AtomicSQLiteStateStore(database=path, expiration_seconds=STATE_SECONDS)
        for prepared in (installs, states):
            _create_tables(prepared)
        return ThreadedInstallationStore(installs), ThreadedOAuthStateStore(states)
    raise ValueError(
        f"Slack OAuth installs need a store that lasts (sqlite:///... or mongodb://...), "
        f"not {type(store).__name__}: installs kept in memory would vanish on restart"
    )


def _create_tables(store: SQLite3InstallationStore | SQLite3OAuthStateStore) -> None:
    # Made now, on one thread: slack-sdk would make them on first use, racing its own threads.
    try:
        store.init()
    except sqlite3.OperationalError:  # another process created the tables between check and create
        store.init()


class AtomicSQLiteStateStore(SQLite3OAuthStateStore):
    """slack-sdk's SQLite state store, with a state consumed by one conditional delete: its own
    select-then-delete lets two racing callbacks (threads or processes) both accept one state."""

    def consume(self, state: str) -> bool:
        with closing(self.connect()) as db, db:
            deleted = db.execute("DELETE FROM oauth_states WHERE state = ? AND expire_at > ?", (state, time.time()))
            return deleted.rowcount == 1


class ThreadedInstallationStore(AsyncInstallationStore):
    """A synchronous slack-sdk installation store, called on a worker thread."""

    def __init__(self, store: InstallationStore) -> None:
        self.store = store

    @property
    def logger(self) -> logging.Logger:
        return self.store.logger

    async def async_save(self, installation: Installation) -> None:
        await asyncio.to_thread(self.store.save, installation)

    async def async_save_bot(self, bot: Bot) -> None:
        await asyncio.to_thread(self.store.save_bot, bot)

    async def async_find_bot(
        self, *, enterprise_id: str | None, team_id: str | None, is_enterprise_install: bool | None = False
    ) -> Bot | None:
        return await asyncio.to_thread(self.store.find_bot, enterprise_id=enterprise_id, team_id=team_id,
                                       is_enterprise_install=is_enterprise_install)

    async def async_find_installation(
        self, *, enterprise_id: str | None, team_id: str | None, user_id: str | None = None,
        is_enterprise_install: bool | None = False,
    ) -> Installation | None:
        return await asyncio.to_thread(self.store.find_installation, enterprise_id=enterprise_id, team_id=team_id,
                                       user_id=user_id, is_enterprise_install=is_enterprise_install)

    async def async_delete_bot(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        await asyncio.to_thread(self.store.delete_bot, enterprise_id=enterprise_id, team_id=team_id)

    async def async_delete_installation(
        self, *, enterprise_id: str | None, team_id: str | None, user_id: str | None = None
    ) -> None:
        await asyncio.to_thread(self.store.delete_installation, enterprise_id=enterprise_id, team_id=team_id,
                                user_id=user_id)


class ThreadedOAuthStateStore(AsyncOAuthStateStore):
    """A synchronous slack-sdk OAuth state store, called on a worker thread."""

    def __init__(self, store: OAuthStateStore) -> None:
        self.store = store

    @property
    def logger(self) -> logging.Logger:
        return self.store.logger

    async def async_issue(self, *args: Any, **kwargs: Any) -> str:
        return await asyncio.to_thread(self.store.issue, *args, **kwargs)

    async def async_consume(self, state: str) -> bool:
        return await asyncio.to_thread(self.store.consume, state)


class BotAuthorize(AsyncAuthorize):
    """An update's bot token: its workspace's bot from the installation store, checked once per
    token with auth.test (cached), rotated when the app uses token rotation.

    Unlike Bolt's default, a store that fails raises (the channel answers 503, and Slack redelivers
    the update later) rather than reporting the workspace as not installed, which would drop it.
    """

    def __init__(self, installation_store: AsyncInstallationStore, client_id: str, client_secret: str,
                 client: AsyncWebClient) -> None:
        self.installation_store = installation_store
        self.rotator = AsyncTokenRotator(client_id=client_id, client_secret=client_secret, client=client)
        self._checked: dict[str, AuthorizeResult] = {}

    async def __call__(
        self, *, context: AsyncBoltContext, enterprise_id: str | None, team_id: str | None, user_id: str | None,
        actor_enterprise_id: str | None = None, actor_team_id: str | None = None, actor_user_id: str | None = None,
    ) -> AuthorizeResult | None:
        bot = await self.installation_store.async_find_bot(
            enterprise_id=enterprise_id, team_id=team_id, is_enterprise_install=context.is_enterprise_install)
        if bot is None:
            return None
        if bot.bot_refresh_token is not None:
            refreshed = await self.rotator.perform_bot_token_rotation(bot=bot)
            if refreshed is not None:
                await self.installation_store.async_save_bot(refreshed)
                bot = refreshed
        checked = self._checked.get(bot.bot_token)
        if checked is None:
            checked = AuthorizeResult.from_auth_test_response(
                auth_test_response=await context.client.auth_test(token=bot.bot_token),
                bot_token=bot.bot_token, bot_scopes=bot.bot_scopes,
            )
            if len(self._checked) >= CHECKED_TOKENS:
                self._checked.clear()  # tokens of rotations and reinstalls pile up; check again
            self._checked[bot.bot_token] = checked
        return checked
