"""Slack OAuth installs and OAuth states kept in MongoDB, beside convoflow's sessions.

slack-sdk ships file, SQLite, SQLAlchemy and S3 stores but none for MongoDB; these implement its
`AsyncInstallationStore` and `AsyncOAuthStateStore` on PyMongo's async database (a Motor database
works too: the calls used are the same).

- `slack_installations`: one document per workspace (or org, for org-wide installs) and installing
  user, replaced when that user installs again; the newest is the workspace's installation.
- `slack_bots`: one document per workspace with its current bot token.
- `slack_oauth_states`: one document per state issued on /slack/install, deleted when consumed
  (at most once, atomically) and removed by a TTL index once expired.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from datetime import datetime, timezone
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.oauth.installation_store.models.bot import Bot
from slack_sdk.oauth.installation_store.models.installation import Installation
from slack_sdk.oauth.state_store.async_state_store import AsyncOAuthStateStore

log = logging.getLogger("convoflow.slack.installs")

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

