"""Multi-workspace installs through OAuth: the app's credentials, Bolt's OAuth flow on
`/slack/install` and `/slack/oauth_redirect`, and how an update finds its workspace's bot token.
The installs themselves are kept by convoflow.adapters.slack.installs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.authorization.async_authorize import AsyncAuthorize
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.oauth.state_store.async_state_store import AsyncOAuthStateStore
from slack_sdk.oauth.token_rotation.async_rotator import AsyncTokenRotator
from slack_sdk.web.async_client import AsyncWebClient

INSTALL_PATH = "/slack/install"
REDIRECT_PATH = "/slack/oauth_redirect"
DEFAULT_SCOPES = (
    "app_mentions:read", "chat:write", "im:history", "channels:history", "groups:history", "mpim:history",
    "files:read", "im:write", "commands",
)
"""Bot scopes asked for on install: read mentions, DMs and thread replies, post, see shared files,
open a DM with a user (a conversation the bot starts), take slash commands."""
CHECKED_TOKENS = 10_000
"""Bot tokens whose auth.test answer is remembered."""


@dataclass(frozen=True)
class SlackOAuth:
    """Multi-workspace installs: the app's OAuth credentials and where installs and OAuth states
    are kept (`installs.oauth_stores` makes them in the session store's database)."""

    client_id: str
    client_secret: str
    installation_store: AsyncInstallationStore
    state_store: AsyncOAuthStateStore
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    redirect_uri: str | None = None
    """The public URL of /slack/oauth_redirect; None uses the one set in the app's config."""


def oauth_app(oauth: SlackOAuth, client: AsyncWebClient, signing_secret: str, logger: logging.Logger) -> AsyncApp:
    """A Bolt app that serves installs and authorizes each update with its workspace's bot."""
    settings = AsyncOAuthSettings(
        client_id=oauth.client_id,
        client_secret=oauth.client_secret,
        scopes=list(oauth.scopes),
        user_scopes=[],
        redirect_uri=oauth.redirect_uri,
        install_path=INSTALL_PATH,
        redirect_uri_path=REDIRECT_PATH,
        installation_store=oauth.installation_store,
        installation_store_bot_only=True,
        state_store=oauth.state_store,
        logger=logger,
    )
    authorize = BotAuthorize(oauth.installation_store, oauth.client_id, oauth.client_secret, client)
    app = AsyncApp(name="convoflow", logger=logger, client=client, signing_secret=signing_secret,
                   oauth_settings=settings, authorize=authorize,  # type: ignore[arg-type]  # an AsyncAuthorize is accepted
                   process_before_response=True,
                   request_verification_enabled=False)  # the channel checks signatures before Bolt
    app.enable_token_revocation_listeners()
    return app


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
