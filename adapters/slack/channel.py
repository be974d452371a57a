"""The Slack channel: any convoflow bot as a Slack app, built on slack-bolt's AsyncApp.

Ways in: the Events API over HTTP (`POST /slack/events`, events and interactivity on one route,
every request's signature checked by Bolt) and Socket Mode when an app-level token is given.
One workspace with a bot token, or any number of workspaces installed through OAuth
(`/slack/install`, `/slack/oauth_redirect`) with their tokens in an installation store.

Slack wants an answer within 3 seconds and redelivers an update that got none (or an error).
The shared TurnRunner (convoflow.turn_runner) acknowledges an update as soon as its turn has
committed (its replies go out after), and answers 503 when it has not committed in time, or did
not commit at all: Slack delivers it again. So an update is never acknowledged before it is safe
in the store, and a process that dies mid-turn leaves it to Slack's redelivery. Slack's retries and
the same message arriving as both `app_mention` and `message.*` carry one incoming id (see
convoflow.adapters.slack.events), so the Engine processes them once.

A slash command (`/guessbot help`; any command of the app, or only `command` when given) reaches
the same commands and interrupt handlers as typed ones, in the user's DM with the app; it is
acknowledged once its turn has committed, within Slack's 3 seconds.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import replace
from typing import Any, Awaitable, Callable

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_bolt.middleware.authorization.async_single_team_authorization import AsyncSingleTeamAuthorization
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from convoflow.delivery import Deliver, Undeliverable
from convoflow.messages import VIA, Incoming, Reply, SessionKey
from convoflow.turn_runner import TurnRunner, Work
from convoflow.types import JSON

from convoflow.adapters.channel import BadAddress

from convoflow.adapters.sent_parts import Deliveries
from convoflow.adapters.slack.answers_first import AnswersFirst
from convoflow.adapters.slack.events import (
    MalformedPayload, UnreadableBody, Workspace, bolt_request_for, from_action, from_command, from_message,
    partition, readable, signed, update_id,
)
from convoflow.adapters.slack.installs import find_bot
from convoflow.adapters.slack.oauth import INSTALL_PATH, REDIRECT_PATH, SlackOAuth, oauth_app
from convoflow.adapters.slack.posting import post_reply
from convoflow.adapters.slack.render import ACTION_PATTERN, answered_blocks
from convoflow.adapters.webhooks import Unhandled, acknowledge_unhandled, unreadable

log = logging.getLogger("convoflow.slack")

SLACK_API_URL = "https://slack.com/api/"
EVENTS_PATH = "/slack/events"
_SLACK_ID = re.compile(r"[A-Z0-9]{2,40}")
COMMAND_PATTERN = re.compile(r"/[a-z0-9_-]{1,31}")
"""What Slack takes as a slash command's name (lowercase, no spaces)."""
COMMAND_ELSEWHERE = "Use this command in a direct message with the app, or mention the app in a channel."
COMMAND_FAILED = "Sorry, that did not go through. Please try again."
AUTH_TEST_SECONDS = 5.0
"""How long the start waits for auth.test about the bot token."""


class SlackChannel:
    """`bot_token` for one workspace, or `oauth` for installs; `signing_secret` to take the Events
    API over HTTP, `app_token` (xapp-...) to take updates over Socket Mode instead (or as well).
    `api_url` points the Web API elsewhere (a proxy, a test server)."""

    name = "slack"

    def __init__(
        self,
        runner: TurnRunner,
        *,
        signing_secret: str | None = None,
        bot_token: str | None = None,
        app_token: str | None = None,
        api_url: str | None = None,
        oauth: SlackOAuth | None = None,
        rate_limit_retries: int = 2,
        command: str | None = None,
    ) -> None:
        if (bot_token is None) == (oauth is None):
            raise ValueError("SlackChannel needs either a bot token (one workspace) or OAuth settings (installs)")
        if not signing_secret and not app_token:
            raise ValueError("SlackChannel needs a signing secret (Events API over HTTP) or an app token (Socket Mode)")
        if command is not None and not COMMAND_PATTERN.fullmatch(command):
            raise ValueError(f"the slash command {command!r} must be / and up to 31 lowercase letters, digits, - or _")
        self.command = command
        self.runner = runner
        self.signing_secret = signing_secret or None
        self.app_token = app_token or None
        self.oauth = oauth
        self.deliveries = Deliveries()
        self.answers_first = AnswersFirst()
        self.client = AsyncWebClient(
            token=bot_token,
            base_url=_api_base(api_url or SLACK_API_URL),
            retry_handlers=[
                AsyncConnectionErrorRetryHandler(),
                AsyncRateLimitErrorRetryHandler(max_retry_count=rate_limit_retries),
            ],
        )
        self.app = self._bolt_app()
        self._socket: AsyncSocketModeHandler | None = None
        self._session: aiohttp.ClientSession | None = None
        self._identity: tuple[str, str | None] | None = None
        """The team and enterprise of the bot token (auth.test), once asked."""

    # --- the Channel protocol ------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        routes = []
        if self.signing_secret:  # without one, requests could not be told from forgeries
            routes.append(web.post(EVENTS_PATH, self._events))
        if self.oauth is not None:
            routes += [web.get(INSTALL_PATH, self._install), web.get(REDIRECT_PATH, self._oauth_redirect)]
        return routes

    async def connect(self) -> None:
        # One connection pool for every Web API call (Bolt hands it to its per-request clients).
        if self._session is None:
            self._session = aiohttp.ClientSession()
            self.client.session = self._session

    async def start(self) -> None:
        await self.connect()
        if self.oauth is None:
            await self._authorize_once()
        if self.app_token:
            self._socket = AsyncSocketModeHandler(self.app, self.app_token, logger=log)
            await self._socket.connect_async()
            log.info("Slack Socket Mode connected")

    async def stop(self) -> None:
        if self._socket is not None:
            await self._socket.close_async()
            self._socket = None
        await self.runner.drain()
        if self._session is not None:
            self.client.session = None
            await self._session.close()
            self._session = None

    async def send(self, reply: Reply) -> None:
        """A reply with no update in hand (one left waiting, swept up), through the bot of the
        workspace its address names."""
        token = None
        if self.oauth is not None:
            enterprise, team = _workspace_of(reply)
            bot = await find_bot(self.oauth.installation_store, enterprise, team)
            if bot is None:
                raise Undeliverable(f"workspace {enterprise or '-'}:{team} has no install any more")
            token = bot.bot_token
        await self._post(self.client, reply, token)

    async def open(self, to: str) -> tuple[SessionKey, dict[str, JSON]]:
        """`slack:<team>:<user id>`: the user's direct messages with the bot (conversations.open
        gives their channel), keyed as the user's own DMs are, so the user's answer continues the
        conversation; `slack:<team>:<channel id>`: that channel (the bot must be a member)."""
        name, _, rest = to.partition(":")
        team, _, target = rest.partition(":")
        if name != self.name or not _SLACK_ID.fullmatch(team) or not _SLACK_ID.fullmatch(target):
            raise BadAddress(f"{to!r} is not a Slack address (slack:<team id>:<user or channel id>, "
                             "e.g. slack:T0123:U0456)")
        enterprise, token = await self._workspace_token(team, to)
        channel = target
        if target[0] in "UW":  # a user: the bot's DM channel with them
            try:
                opened = await self.client.conversations_open(users=target, token=token)
            except SlackApiError as error:
                reason = error.response.get("error")
                if reason in ("user_not_found", "user_not_visible", "user_disabled", "cannot_dm_bot"):
                    raise BadAddress(f"{to!r}: Slack cannot open a DM with {target} ({reason})") from None
                raise
            channel = str((opened.get("channel") or {}).get("id") or "")
            if not channel:
                raise BadAddress(f"{to!r}: Slack opened no DM channel")
        key = SessionKey(partition(Workspace(team, enterprise, None), channel), self.runner.engine.app)
        address: dict[str, JSON] = {VIA: self.name, "channel": channel, "team": team}
        if enterprise:
            address["enterprise"] = enterprise
        return key, address

    async def _authorize_once(self) -> None:
        """Ask auth.test about the bot token once, before any update arrives. Bolt's single-workspace
        authorization asks it on each request until it has an answer, so the updates of a busy
        start would each make the call, in the path to their acknowledgement. A failure is logged
        and left to Bolt, which asks again with each update."""
        try:  # a slow Slack does not hold the start up for long: Bolt asks again
            answer = await asyncio.wait_for(self.client.auth_test(), AUTH_TEST_SECONDS)
        except SlackApiError as error:
            log.error("auth.test refused the bot token (%s): updates will be refused until it is fixed",
                      error.response.get("error"))
            return
        except (aiohttp.ClientError, asyncio.TimeoutError) as error:
            log.warning("auth.test could not reach Slack (%r): asked again with the first update", error)
            return
        self._identity = (str(answer.get("team_id") or ""), answer.get("enterprise_id") or None)
        # Bolt keeps the answer on its authorization middleware; it has no public way to give it one.
        for middleware in getattr(self.app, "_async_middleware_list", ()):
            if isinstance(middleware, AsyncSingleTeamAuthorization) and middleware.auth_test_result is None:
                middleware.auth_test_result = answer

    async def _workspace_token(self, team: str, to: str) -> tuple[str | None, str | None]:
        """The enterprise of workspace `team` and the bot token to call it with (None: the
        channel's own token, when it serves that one workspace)."""
        if self.oauth is not None:
            bot = await find_bot(self.oauth.installation_store, None, team)
            if bot is None:
                raise BadAddress(f"{to!r}: the bot is not installed in workspace {team}")
            return bot.enterprise_id, bot.bot_token
        if self._identity is None:
            answer = await self.client.auth_test()
            self._identity = (str(answer.get("team_id") or ""), answer.get("enterprise_id") or None)
        if self._identity[0] != team:
            raise BadAddress(f"{to!r}: this bot serves workspace {self._identity[0]}, not {team}")
        return self._identity[1], None

    # --- HTTP routes ---------------------------------------------------------------------------

    async def _events(self, request: web.Request) -> web.Response:
        with self.answers_first.answering():
            return await self._answer(request)

    async def _answer(self, request: web.Request) -> web.Response:
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
            # `_events` checks every signature before Bolt sees the request: Bolt's own check would
            # be a second HMAC of each body (Socket Mode needs none).
            app = AsyncApp(name="convoflow", logger=bolt_log, client=self.client,
                           signing_secret=self.signing_secret or "", process_before_response=True,
                           request_verification_enabled=False)
        else:
            app = oauth_app(self.oauth, self.client, self.signing_secret or "", bolt_log)
        app.event("message")(self._on_message)
        app.event("app_mention")(self._on_message)
        app.action(ACTION_PATTERN)(self._on_click)
        app.command(self.command or re.compile(r"/.*"))(self._on_command)
        # Events the app is subscribed to but convoflow has no use for are acknowledged and dropped
        # (an unanswered event is retried by Slack, and too many failures disable the subscription).
        app.event(re.compile(".*"))(_ignore)
        return app

    async def _on_message(self, event: dict[str, Any], context: AsyncBoltContext) -> BoltResponse | None:
        # Bolt acknowledges the event when this returns None.
        workspace = _workspace(context)
        translated = from_message(event, workspace, self.runner.engine.app)
        if translated is None:
            return None
        # A thread reply without a mention is for the bot only while a conversation runs in that
        # thread (the store says so, which holds across processes; once it has ended, a mention
        # starts it again).
        deliver = self._deliverer(context.client)
        work = self._turns([_addressed(i, workspace) for i in (translated.incoming, *translated.more)], deliver,
                           only_if_running=translated.in_thread)
        if await self.runner.answer(work):
            return None
        return BoltResponse(status=503, body="not processed; deliver again")

    def _turns(self, updates: list[Incoming], deliver: Deliver, only_if_running: bool) -> Work:
        """The turns of one event, in order (a share of several files is one update per file):
        committed once the last one has."""
        works = [self.runner.turn(update, deliver, only_if_running=only_if_running) for update in updates]
        if len(works) == 1:
            return works[0]

        async def attempt(committed: Callable[[], None]) -> None:
            for work in works[:-1]:
                await work.attempt(lambda: None)
            await works[-1].attempt(committed)

        return Work(works[0].label, attempt)

    async def _on_command(self, ack: Any, command: dict[str, Any], context: AsyncBoltContext) -> None:
        """A slash command: acknowledged once its turn has committed (Bolt answers Slack when this
        returns), with a short note when it could not be taken."""
        workspace = _workspace(context)
        try:
            incoming = from_command(command, workspace, self.runner.engine.app, self.runner.engine.interrupts.commands)
        except MalformedPayload as error:
            log.warning("slash command refused: %s", error)
            incoming = None
        if incoming is None:
            await ack(text=COMMAND_ELSEWHERE)
            return
        work = self.runner.turn(_addressed(incoming, workspace), self._deliverer(context.client))
        await (ack() if await self.runner.answer(work) else ack(text=COMMAND_FAILED))

    async def _on_click(self, ack: Any, body: dict[str, Any], context: AsyncBoltContext) -> BoltResponse | None:
        await ack()  # the answer Bolt sends when this returns None
        workspace = _workspace(context)
        incoming = from_action(body, workspace, self.runner.engine.app)
        if incoming is None:
            log.warning("ignoring a click on a button convoflow did not make: %.200s", body.get("actions"))
            return None
        # The buttons go at once, so nobody answers twice; the next question waits for that.
        answered = self.runner.spawn(self._replace_buttons(context.client, body))
        return await self._turn(_addressed(incoming, workspace), self._deliverer(context.client, answered))

    async def _turn(self, incoming: Incoming, deliver: Deliver, only_if_running: bool = False) -> BoltResponse | None:
        if await self.runner.answer(self.runner.turn(incoming, deliver, only_if_running=only_if_running)):
            return None
        return BoltResponse(status=503, body="not processed; deliver again")

    def _deliverer(self, client: AsyncWebClient, before: Awaitable[None] | None = None) -> Deliver:
        """Delivery of an update's replies through the client Bolt authorized for it."""

        async def deliver(reply: Reply) -> None:
            if before is not None:
                await asyncio.shield(before)
            await self._post(client, reply)

        return deliver

    async def _post(self, client: AsyncWebClient, reply: Reply, token: str | None = None) -> None:
        """The reply's messages, each once; a refused one re-sent smaller or dropped (see posting)."""
        async def post(arguments: dict[str, Any]) -> None:
            if token is not None:  # the session's workspace, outside any update's context
                arguments = {**arguments, "token": token}
            await self.answers_first.before_post()
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


def _addressed(incoming: Incoming, workspace: Workspace) -> Incoming:
    """The update with an address its replies can be sent to with no update in hand: this
    channel, and the workspace (whose bot token posts them)."""
    address = {VIA: SlackChannel.name, **incoming.address, "team": workspace.team}
    if workspace.enterprise:
        address["enterprise"] = workspace.enterprise
    return replace(incoming, address=address)


def _workspace_of(reply: Reply) -> tuple[str | None, str | None]:
    """The enterprise and team a reply goes to. Addresses stored before they named their workspace
    lack it: for those the session's partition (`slack:<enterprise or ->:<team>:...`) says."""
    if "team" in reply.address:
        enterprise, team = reply.address.get("enterprise"), reply.address["team"]
        return (enterprise if isinstance(enterprise, str) else None), (team if isinstance(team, str) else None)
    parts = reply.key.partition.split(":") if reply.key is not None else []
    if len(parts) < 4:
        return None, None
    enterprise_part, team_part = parts[1], parts[2]
    return (None if enterprise_part == "-" else enterprise_part), (None if team_part == "-" else team_part)


def _api_base(url: str) -> str:
    return url if url.endswith("/") else url + "/"
