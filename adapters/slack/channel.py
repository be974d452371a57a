"""The Slack channel: any convoflow bot as a Slack app, built on slack-bolt's AsyncApp.

Ways in: the Events API over HTTP (`POST /slack/events`, events and interactivity on one route,
every request's signature checked by Bolt) and Socket Mode when an app-level token is given.
One workspace with a bot token, or any number of workspaces installed through OAuth
(`/slack/install`, `/slack/oauth_redirect`) with their tokens in an installation store.

Slack wants an answer within 3 seconds and redelivers an update that got none (or an error).
Each update's turn runs as a task this channel tracks, and the update is acknowledged as soon as
the turn has committed (its replies go out after). A turn not committed within `ack_seconds` is
answered 503 and goes on: Slack delivers the update again, and the retry is acknowledged once the
turn has committed. So an update is never acknowledged before it is safe in the store, and a
process that dies mid-turn leaves it to Slack's redelivery.
`stop()` lets turns in flight finish. Slack's retries and the same message arriving as both
`app_mention` and `message.*` carry one incoming id (see adapters.slack_events), so the Engine
processes them once.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Coroutine

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.oauth.state_store.async_state_store import AsyncOAuthStateStore
from slack_sdk.web.async_client import AsyncWebClient

from convoflow.messages import Incoming, Reply, SessionKey
from convoflow.runtime import Deliver, DeliveryFailed, Engine, TooManyConflicts, Undeliverable
from convoflow.stores.base import StoreError

from convoflow.adapters.slack.events import (
    MalformedPayload, UnreadableBody, Workspace, bolt_request_for, from_action, from_message, readable, signed,
    update_id,
)
from convoflow.adapters.slack.oauth import BotAuthorize
from convoflow.adapters.sent_parts import Deliveries
from convoflow.adapters.slack.posting import post_reply
from convoflow.adapters.slack.render import ACTION_PATTERN, answered_blocks
from convoflow.adapters.webhooks import Unhandled, acknowledge_unhandled, unreadable

log = logging.getLogger("convoflow.slack")

SLACK_API_URL = "https://slack.com/api/"
EVENTS_PATH = "/slack/events"
INSTALL_PATH = "/slack/install"
REDIRECT_PATH = "/slack/oauth_redirect"
DEFAULT_SCOPES = (
    "app_mentions:read", "chat:write", "im:history", "channels:history", "groups:history", "mpim:history",
    "files:read",
)
"""Bot scopes asked for on install: read mentions, DMs and thread replies, post, see shared files."""

TURN_RETRY_DELAYS = (0.5, 2.0, 5.0)
"""A turn whose store or delivery failed is retried here (once acknowledged, nobody else will; its
incoming id makes a retry safe: a committed turn only re-delivers its outbox)."""
ACK_SECONDS = 2.0
"""The longest an update waits for its turn's commit; then it is answered 503 (Slack retries)."""


@dataclass(frozen=True)
class SlackOAuth:
    """Multi-workspace installs: the app's OAuth credentials and where installs and OAuth states
    are kept (`adapters.slack_oauth.oauth_stores` makes them in the session store's database)."""

    client_id: str
    client_secret: str
    installation_store: AsyncInstallationStore
    state_store: AsyncOAuthStateStore
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    redirect_uri: str | None = None
    """The public URL of /slack/oauth_redirect; None uses the one set in the app's config."""


class SlackChannel:
    """`bot_token` for one workspace, or `oauth` for installs; `signing_secret` to take the Events
    API over HTTP, `app_token` (xapp-...) to take updates over Socket Mode instead (or as well).
    `api_url` points the Web API elsewhere (a proxy, a test server)."""

    name = "slack"

    def __init__(
        self,
        engine: Engine,
        *,
        signing_secret: str | None = None,
        bot_token: str | None = None,
        app_token: str | None = None,
        api_url: str | None = None,
        oauth: SlackOAuth | None = None,
        rate_limit_retries: int = 2,
        drain_seconds: float = 20.0,
        ack_seconds: float = ACK_SECONDS,
    ) -> None:
        if (bot_token is None) == (oauth is None):
            raise ValueError("SlackChannel needs either a bot token (one workspace) or OAuth settings (installs)")
        if not signing_secret and not app_token:
            raise ValueError("SlackChannel needs a signing secret (Events API over HTTP) or an app token (Socket Mode)")
        self.engine = engine
        self.signing_secret = signing_secret or None
        self.app_token = app_token or None
        self.oauth = oauth
        self.drain_seconds = drain_seconds
        self.deliveries = Deliveries()
        self.ack_seconds = ack_seconds
        self.client = AsyncWebClient(
            token=bot_token,
            base_url=_api_base(api_url or SLACK_API_URL),
            retry_handlers=[
                AsyncConnectionErrorRetryHandler(),
                AsyncRateLimitErrorRetryHandler(max_retry_count=rate_limit_retries),
            ],
        )
        self.app = self._bolt_app()
        self._turns: set[asyncio.Task[None]] = set()
        self._socket: AsyncSocketModeHandler | None = None
        self._session: aiohttp.ClientSession | None = None

    # --- the Channel protocol ------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        routes = []
        if self.signing_secret:  # without one, requests could not be told from forgeries
            routes.append(web.post(EVENTS_PATH, self._events))
        if self.oauth is not None:
            routes += [web.get(INSTALL_PATH, self._install), web.get(REDIRECT_PATH, self._oauth_redirect)]
        return routes

    async def start(self) -> None:
        # One connection pool for every Web API call (Bolt hands it to its per-request clients).
        self._session = aiohttp.ClientSession()
        self.client.session = self._session
        if self.app_token:
            self._socket = AsyncSocketModeHandler(self.app, self.app_token, logger=log)
            await self._socket.connect_async()
            log.info("Slack Socket Mode connected")

    async def stop(self) -> None:
        if self._socket is not None:
            await self._socket.close_async()
            self._socket = None
        await self.drain()
        if self._session is not None:
            self.client.session = None
            await self._session.close()
            self._session = None

    async def drain(self) -> None:
        """Wait for acknowledged turns to finish (at most `drain_seconds`, then cancel the rest)."""
        deadline = asyncio.get_running_loop().time() + self.drain_seconds
        while self._turns:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                log.warning("cancelling %d Slack turns still running at shutdown", len(self._turns))
                for task in list(self._turns):
                    task.cancel()
                await asyncio.gather(*self._turns, return_exceptions=True)
                return
            await asyncio.wait(list(self._turns), timeout=left)

    def deliverer(self, key: SessionKey) -> Deliver | None:
        """Delivery of a session's replies outside a turn (the sweep of replies left waiting),
        through the bot of the session's workspace."""
        parts = key.partition.split(":")
        if len(parts) < 4 or parts[0] != "slack":
            return None
        enterprise, team = (None if part == "-" else part for part in parts[1:3])

        async def deliver(reply: Reply) -> None:
            token = None
            if self.oauth is not None:
                store = self.oauth.installation_store
                bot = await store.async_find_bot(enterprise_id=enterprise, team_id=team)
                if bot is None and enterprise is not None:  # an org-wide install serves the team
                    bot = await store.async_find_bot(enterprise_id=enterprise, team_id=None, is_enterprise_install=True)
                if bot is None:
                    raise Undeliverable(f"workspace {enterprise or '-'}:{team} has no install any more")
                token = bot.bot_token
            await self._post(self.client, reply, token)

        return deliver

    # --- HTTP routes ---------------------------------------------------------------------------

    async def _events(self, request: web.Request) -> web.Response:
        # Bolt parses before it verifies, and trusts the types it finds: the signature is checked
        # first and the payload read here, by the status table of adapters.webhooks.
        body = await request.read()
        assert self.signing_secret is not None
        if not signed(self.signing_secret, body, request.headers, time.time()):
            return web.Response(status=401, text="invalid signature")
        try:
            bolt_request = bolt_request_for(readable(body, request.content_type), request.query_string, request.headers)
        except UnreadableBody as error:
            return unreadable(self.name, str(error))
        except MalformedPayload as error:
            return acknowledge_unhandled(Unhandled(self.name, error.reason, error.update), str(error))
        response = await self.app.async_dispatch(bolt_request)
        if response.status == 404:  # no listener: a kind of payload this app takes no part in
            return acknowledge_unhandled(Unhandled(self.name, "unsupported", update_id(bolt_request.body)),
                                         f"no listener for a {str(bolt_request.body.get('type'))[:40]!r} payload")
        if response.status >= 500:  # Bolt failed before any turn committed (the store, authorizing): again
            return web.Response(status=503, text="not processed; deliver again", headers={"Retry-After": "1"})
        return await to_aiohttp_response(response)

    async def _install(self, request: web.Request) -> web.Response:
        assert self.app.oauth_flow is not None
        return await to_aiohttp_response(await self.app.oauth_flow.handle_installation(await to_bolt_request(request)))

    async def _oauth_redirect(self, request: web.Request) -> web.Response:
        assert self.app.oauth_flow is not None
        return await to_aiohttp_response(await self.app.oauth_flow.handle_callback(await to_bolt_request(request)))

    # --- Bolt ----------------------------------------------------------------------------------

    def _bolt_app(self) -> AsyncApp:
        bolt_log = log.getChild("bolt")
        bolt_log.addFilter(_bolt_noise)
        if self.oauth is None:
            app = AsyncApp(name="convoflow", logger=bolt_log, client=self.client,
                           signing_secret=self.signing_secret or "", process_before_response=True)
        else:
            settings = AsyncOAuthSettings(
                client_id=self.oauth.client_id,
                client_secret=self.oauth.client_secret,
                scopes=list(self.oauth.scopes),
                user_scopes=[],
                redirect_uri=self.oauth.redirect_uri,
                install_path=INSTALL_PATH,
                redirect_uri_path=REDIRECT_PATH,
                installation_store=self.oauth.installation_store,
                installation_store_bot_only=True,
                state_store=self.oauth.state_store,
                logger=bolt_log,
            )
            authorize = BotAuthorize(self.oauth.installation_store, self.oauth.client_id,
                                     self.oauth.client_secret, self.client)
            app = AsyncApp(name="convoflow", logger=bolt_log, client=self.client,
                           signing_secret=self.signing_secret or "", oauth_settings=settings,
                           authorize=authorize, process_before_response=True)  # type: ignore[arg-type]  # an AsyncAuthorize is accepted
            app.enable_token_revocation_listeners()
        app.event("message")(self._on_message)
        app.event("app_mention")(self._on_message)
        app.action(ACTION_PATTERN)(self._on_click)
        # Events the app is subscribed to but convoflow has no use for are acknowledged and dropped
        # (an unanswered event is retried by Slack, and too many failures disable the subscription).
        app.event(re.compile(".*"))(_ignore)
        return app

    async def _on_message(self, event: dict[str, Any], context: AsyncBoltContext) -> BoltResponse | None:
        # Bolt acknowledges the event when this returns None.
        translated = from_message(event, _workspace(context), self.engine.app)
        if translated is None:
            return None
        incoming, client, committed = translated.incoming, context.client, asyncio.Event()
        if translated.in_thread:
            return await self._until(committed, self._spawn(self._thread_turn(incoming, client, committed)))
        return await self._until(committed, self._spawn(self._turn(incoming, client, committed=committed)))

    async def _on_click(self, ack: Any, body: dict[str, Any], context: AsyncBoltContext) -> BoltResponse | None:
        await ack()  # the answer Bolt sends when this returns None
        incoming = from_action(body, _workspace(context), self.engine.app)
        if incoming is None:
            log.warning("ignoring a click on a button convoflow did not make: %.200s", body.get("actions"))
            return None
        client, committed = context.client, asyncio.Event()
        # The buttons go at once, so nobody answers twice; the next question waits for that.
        answered = asyncio.ensure_future(self._replace_buttons(client, body))
        return await self._until(committed, self._spawn(self._turn(incoming, client, answered, committed)))

    # --- turns ---------------------------------------------------------------------------------

    def _spawn(self, turn: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(turn)
        self._turns.add(task)
        task.add_done_callback(self._turns.discard)
        return task

    async def _until(self, committed: asyncio.Event, turn: asyncio.Task[None]) -> BoltResponse | None:
        """Acknowledge (None) once the turn has committed or ended; after `ack_seconds` without a
        commit, answer 503 so that Slack delivers the update again (the turn goes on meanwhile)."""
        waiting = asyncio.ensure_future(committed.wait())
        await asyncio.wait([waiting, turn], timeout=self.ack_seconds, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if committed.is_set() or turn.done():
            return None
        return BoltResponse(status=503, body="still processing; deliver again")

    async def _thread_turn(self, incoming: Incoming, client: AsyncWebClient, committed: asyncio.Event) -> None:
        """A thread reply without a mention is for the bot only while a conversation runs in that
        thread: its session exists and has neither finished nor been cancelled. The store says so,
        which holds across processes; once it has ended, a mention starts it again."""
        try:
            session = await self.engine.store.load(incoming.key)
        except StoreError as error:
            log.error("cannot tell whether %s is ours (store: %s); message %s not handled", incoming.key, error, incoming.id)
            return
        if session is not None and session.state is not None and "result" not in session.state:
            await self._turn(incoming, client, committed=committed)

    async def _turn(
        self, incoming: Incoming, client: AsyncWebClient, before: Awaitable[None] | None = None,
        committed: asyncio.Event | None = None,
    ) -> None:
        async def deliver(reply: Reply) -> None:
            if before is not None:
                await before
            await self._post(client, reply)

        try:
            for delay in (*TURN_RETRY_DELAYS, None):
                try:
                    await self.engine.handle(incoming, deliver, committed.set if committed is not None else None)
                    return
                except (StoreError, DeliveryFailed) as error:
                    if delay is None:
                        log.error("giving up on Slack update %s of %s: %s", incoming.id, incoming.key, error)
                        return
                    log.warning("Slack update %s of %s failed (%s); retrying in %.1fs", incoming.id, incoming.key,
                                error, delay)
                    await asyncio.sleep(delay)
                except TooManyConflicts as error:
                    log.error("giving up on Slack update %s: %s", incoming.id, error)
                    return
        except Exception:
            log.exception("Slack update %s of %s failed", incoming.id, incoming.key)
        finally:
            if before is not None:
                await asyncio.gather(before, return_exceptions=True)

    async def _post(self, client: AsyncWebClient, reply: Reply, token: str | None = None) -> None:
        """The reply's messages, each once; a refused one re-sent smaller or dropped (see posting)."""
        async def post(arguments: dict[str, Any]) -> None:
            if token is not None:  # the session's workspace, outside any update's context
                arguments = {**arguments, "token": token}
            await client.chat_postMessage(**arguments)

        await post_reply(self.deliveries, reply, post)

    async def _replace_buttons(self, client: AsyncWebClient, body: dict[str, Any]) -> None:
        message = body.get("message") or {}
        container = body.get("container") or {}
        channel = (body.get("channel") or {}).get("id") or container.get("channel_id")
        if not message.get("ts") or not channel or container.get("is_ephemeral"):
            return
        action = body["actions"][0]
        label = (action.get("text") or {}).get("text", "")
        try:
            await client.chat_update(
                channel=channel, ts=message["ts"], text=message.get("text", ""),
                blocks=answered_blocks(message.get("blocks") or [], (body.get("user") or {}).get("id", ""), label),
            )
        except Exception as error:  # noqa: BLE001 - the turn goes on without it
            reason = error.response.get("error") if isinstance(error, SlackApiError) else repr(error)
            log.warning("could not replace the buttons of message %s in %s: %s", message["ts"], channel, reason)


def _bolt_noise(record: logging.LogRecord) -> bool:
    """Drop Bolt's notice that SLACK_BOT_TOKEN in the environment is unused (it always is, as the
    token comes in with our client), and its "Unhandled request" advice (`_events` logs those)."""
    message = record.getMessage()
    return not message.startswith(("As you gave `client` as well, `token` will be unused", "Unhandled request"))


async def _ignore(event: dict[str, Any]) -> None:
    log.debug("ignoring Slack event %s", event.get("type"))


def _workspace(context: AsyncBoltContext) -> Workspace:
    return Workspace(context.team_id, context.enterprise_id, context.bot_user_id)


def _api_base(url: str) -> str:
    return url if url.endswith("/") else url + "/"
