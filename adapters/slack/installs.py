"""Where Slack installs are kept: the workspaces that installed the app (and their bot tokens),
and the OAuth states of install links, in the database of the session store the bot runs on.

- MongoDB: collections beside the sessions. slack-sdk ships file, SQLite, SQLAlchemy and S3 stores
  but none for MongoDB; these implement its `AsyncInstallationStore` and `AsyncOAuthStateStore` on
  PyMongo's async database (a Motor database works too: the calls used are the same).
  - `slack_installations`: one document per workspace (or org, for org-wide installs) and
    installing user, replaced when that user installs again; the newest is the workspace's.
  - `slack_bots`: one document per workspace with its current bot token.
  - `slack_oauth_states`: one document per state issued on /slack/install, deleted when consumed
    (at most once, atomically) and removed by a TTL index once expired.
- SQLite: tables in the same file, kept by slack-sdk's own SQLite stores, run on a worker thread
  (their async methods would block the event loop).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import sqlite3
import time
from contextlib import closing
from datetime import datetime, timezone
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.oauth.installation_store.installation_store import InstallationStore
from slack_sdk.oauth.installation_store.models.bot import Bot
from slack_sdk.oauth.installation_store.models.installation import Installation
from slack_sdk.oauth.installation_store.sqlite3 import SQLite3InstallationStore
from slack_sdk.oauth.state_store.async_state_store import AsyncOAuthStateStore
from slack_sdk.oauth.state_store.sqlite3 import SQLite3OAuthStateStore
from slack_sdk.oauth.state_store.state_store import OAuthStateStore

from convoflow.stores.sqlite import SQLiteStore

log = logging.getLogger("convoflow.slack.installs")

STATE_SECONDS = 600
"""How long an install link (its OAuth state) stays valid."""


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


async def find_bot(store: AsyncInstallationStore, enterprise: str | None, team: str | None) -> Bot | None:
    """The bot installed for a workspace, or for its whole org (an org-wide install serves every
    team of the org)."""
    bot = await store.async_find_bot(enterprise_id=enterprise, team_id=team)
    if bot is None and enterprise is not None:
        bot = await store.async_find_bot(enterprise_id=enterprise, team_id=None, is_enterprise_install=True)
    return bot


_BOT_FIELDS = ("bot_token", "bot_id", "bot_user_id", "bot_scopes", "bot_refresh_token", "bot_token_expires_at")


class MongoInstallationStore(AsyncInstallationStore):
    def __init__(self, database: AsyncDatabase[Any], client_id: str, *, prefix: str = "slack_") -> None:
        self.client_id = client_id
        self.installations = database[f"{prefix}installations"]
        self.bots = database[f"{prefix}bots"]
        self._indexed = False
        self._indexing = asyncio.Lock()

    @property
    def logger(self) -> logging.Logger:
        return log

    async def async_save(self, installation: Installation) -> None:
        await self._ensure_indexes()
        scope = self._scope(installation.enterprise_id, installation.team_id, installation.is_enterprise_install)
        document = {**scope, "user_id": installation.user_id, "installed_at": installation.installed_at,
                    "installation": installation.to_dict_for_copying()}
        await self.installations.replace_one({"_id": _id(scope, installation.user_id)}, document, upsert=True)
        await self.async_save_bot(installation.to_bot())

    async def async_save_bot(self, bot: Bot) -> None:
        if bot.bot_token is None:
            return
        scope = self._scope(bot.enterprise_id, bot.team_id, bot.is_enterprise_install)
        document = {**scope, "installed_at": bot.installed_at, "bot": bot.to_dict_for_copying()}
        await self.bots.replace_one({"_id": _id(scope)}, document, upsert=True)

    async def async_find_bot(
        self, *, enterprise_id: str | None, team_id: str | None, is_enterprise_install: bool | None = False
    ) -> Bot | None:
        found = await self.bots.find_one({"_id": _id(self._scope(enterprise_id, team_id, is_enterprise_install))})
        return None if found is None else Bot(**found["bot"])

    async def async_find_installation(
        self, *, enterprise_id: str | None, team_id: str | None, user_id: str | None = None,
        is_enterprise_install: bool | None = False,
    ) -> Installation | None:
        query = self._scope(enterprise_id, team_id, is_enterprise_install)
        if user_id is not None:
            query["user_id"] = user_id
        found = await self.installations.find_one(query, sort=[("installed_at", DESCENDING)])
        if found is None:
            return None
        installation = Installation(**found["installation"])
        if user_id is not None or installation.bot_token is None:
            # A user's own installation may predate the workspace's current bot token.
            bot = await self.async_find_bot(enterprise_id=enterprise_id, team_id=team_id,
                                            is_enterprise_install=is_enterprise_install)
            if bot is not None:
                for name in _BOT_FIELDS:
                    setattr(installation, name, getattr(bot, name))
        return installation

    async def async_delete_bot(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        await self.bots.delete_many(self._scope(enterprise_id, team_id, False))

    async def async_delete_installation(
        self, *, enterprise_id: str | None, team_id: str | None, user_id: str | None = None
    ) -> None:
        query = self._scope(enterprise_id, team_id, False)
        if user_id is not None:
            query["user_id"] = user_id
        await self.installations.delete_many(query)

    def _scope(self, enterprise_id: str | None, team_id: str | None, is_enterprise_install: bool | None) -> dict[str, Any]:
        # An org-wide install belongs to the org, whatever workspace an update comes from.
        team = "" if is_enterprise_install or team_id is None else team_id
        return {"client_id": self.client_id, "enterprise_id": enterprise_id or "", "team_id": team}

    async def _ensure_indexes(self) -> None:
        if self._indexed:
            return
        async with self._indexing:
            if not self._indexed:
                await self.installations.create_index(
                    [("client_id", ASCENDING), ("enterprise_id", ASCENDING), ("team_id", ASCENDING),
                     ("installed_at", DESCENDING)])
                self._indexed = True


class MongoOAuthStateStore(AsyncOAuthStateStore):
    def __init__(self, database: AsyncDatabase[Any], expiration_seconds: int = 600, *,
                 collection: str = "slack_oauth_states") -> None:
        self.expiration_seconds = expiration_seconds
        self.states = database[collection]
        self._indexed = False

    @property
    def logger(self) -> logging.Logger:
        return log

    async def async_issue(self, *args: Any, **kwargs: Any) -> str:
        if not self._indexed:
            await self.states.create_index("expire_at", expireAfterSeconds=0)
            self._indexed = True
        state = secrets.token_urlsafe(24)
        expires = time.time() + self.expiration_seconds
        await self.states.insert_one({
            "_id": state, "expires": expires, "expire_at": datetime.fromtimestamp(expires, timezone.utc),
        })
        return state

    async def async_consume(self, state: str) -> bool:
        found = await self.states.find_one_and_delete({"_id": state})
        return found is not None and found["expires"] > time.time()


def _id(scope: dict[str, Any], *rest: str) -> str:
    return ":".join([scope["client_id"], scope["enterprise_id"], scope["team_id"], *rest])

