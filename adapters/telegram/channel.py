"""The Telegram channel: any convoflow bot as a Telegram bot, through python-telegram-bot 22.

Two ways in. Webhook mode (a webhook URL is given): Telegram posts updates to
`POST /telegram/webhook` on our server, each checked against the webhook secret and answered 2xx
once its turn has committed (its replies go out after), so a crash or a store outage makes
Telegram deliver it again. Polling mode (no URL): `polling.py` long-polls `getUpdates` and
confirms an update's offset only once its turn has committed, so an update whose turn did not
commit is fetched again. Either way the shared TurnRunner (convoflow.turn_runner) runs the turns;
updates of different chats run concurrently, and the Engine keeps each session's updates in order.

Around the conversation (`touches.py`): the bot's commands and interrupt commands are registered
with setMyCommands at start-up, a pressed question's keyboard is replaced by the choice made, and
the chat shows "typing..." while a turn runs longer than about a second.

Replies go out through PTB's AIORateLimiter (which also waits out 429 RetryAfter) and request
layer over one aiohttp session, their answers kept raw (`request.call`): a Message parsed from
each answer would go unread. A user who blocked the bot, or a chat that is gone, ends the reply as
undeliverable; network errors and 5xx answers are retried with backoff. A long reply goes out in
parts, each retried on its own; a reply attempted again skips the parts already sent.

A bot opts into edited messages (and tunes the flood limits) by defining, next to its dialog:

    from convoflow.adapters.telegram import TelegramOptions
    telegram_options = TelegramOptions(edited_messages=True)
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import sys
from dataclasses import dataclass, replace
from typing import Any, Callable

from aiohttp import web
from telegram import Bot, Update
from telegram.error import BadRequest, ChatMigrated, Forbidden, InvalidToken, NetworkError, TelegramError
from telegram.ext import AIORateLimiter, Application, ExtBot

from convoflow.adapters.channel import BadAddress, StartFailed
from convoflow.adapters.sent_parts import Deliveries
from convoflow.adapters.telegram.polling import Poller
from convoflow.adapters.telegram.render import render
from convoflow.adapters.telegram.touches import chosen_edit, menu, typing
from convoflow.adapters.telegram.request import AiohttpRequest, call
from convoflow.adapters.telegram.updates import (
    BotIdentity, MalformedUpdate, Migration, Raw, UnreadableBody, parse_update, partition, translate,
)
from convoflow.adapters.webhooks import Unhandled, acknowledge_unhandled, unreadable
from convoflow.delivery import Undeliverable
from convoflow.messages import VIA, Incoming, Reply, SessionKey
from convoflow.turn_runner import TurnRunner, Work
from convoflow.types import JSON

log = logging.getLogger("convoflow.telegram")

TOKEN_PATTERN = re.compile(r"[0-9]{1,20}:[A-Za-z0-9_-]{1,128}")
"""A bot token as @BotFather gives it: the bot's id, a colon, the key."""
SECRET_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,256}")
"""What Telegram accepts as a webhook secret."""
BOT_OPTIONS_NAME = "telegram_options"
"""The module-level name under which a bot module sets its TelegramOptions."""

WEBHOOK_PATH = "/telegram/webhook"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
DEFAULT_API_URL = "https://api.telegram.org"
ACK_SECONDS = 30.0
"""How long a webhook call waits for its turn's commit before it is answered 503 (Telegram awaits an
answer for about a minute, and holds the chat's later updates while it retries)."""


@dataclass(frozen=True)
class TelegramOptions:
    edited_messages: bool = False
    """Take an edited message as the user's next message (ignored by default)."""
    overall_max_rate: float = 30
    """Messages per second to all chats (Telegram's flood limit); 0 disables this limit."""
    group_max_rate: float = 20
    """Messages per minute to one group; 0 disables this limit."""
    retry_after_retries: int = 3
    """How often a send answered with 429 RetryAfter is retried (after the time Telegram asks)."""
    network_retries: int = 3
    """How often a send that failed on the network or with a 5xx is retried."""
    backoff_seconds: float = 0.5
    """First pause before a network retry; it doubles with every further attempt."""
    poll_timeout: float = 10
    """Long-polling: how long one getUpdates call waits for updates."""
    connection_limit: int = 256
    """Concurrent HTTP connections to the Bot API."""


def bot_options(dialog_factory: Callable[..., Any]) -> TelegramOptions:
    """The `telegram_options` the bot's module defines next to its dialog, or the defaults."""
    module = sys.modules.get(getattr(dialog_factory, "__module__", ""))
    found = getattr(module, BOT_OPTIONS_NAME, None)
    if found is None:
        return TelegramOptions()
    if not isinstance(found, TelegramOptions):
        raise ValueError(f"{dialog_factory.__module__}.{BOT_OPTIONS_NAME} must be a TelegramOptions, not {type(found).__name__}")
    return found


class TelegramChannel:
    """`token` as @BotFather gives it; a `webhook_url` (with its `webhook_secret`) selects webhook
    mode, none long polling; `api_url` is the root URL of the Bot API server (Telegram's when None)."""

    name = "telegram"

    def __init__(
        self,
        runner: TurnRunner,
        token: str,
        *,
        webhook_secret: str | None = None,
        webhook_url: str | None = None,
        api_url: str | None = None,
        options: TelegramOptions = TelegramOptions(),
    ) -> None:
        if not TOKEN_PATTERN.fullmatch(token):
            raise ValueError("the bot token is malformed (expected <bot id>:<key>, as @BotFather gives it)")
        if webhook_url and not webhook_secret:
            raise ValueError("webhook mode needs a webhook secret")
        if webhook_secret is not None and not SECRET_PATTERN.fullmatch(webhook_secret):
            raise ValueError("the webhook secret must be 1-256 characters of A-Z, a-z, 0-9, _ and -")
        self.runner = runner
        self.options = options
        self.deliveries = Deliveries()
        self.webhook_url = webhook_url or None
        self.webhook_secret = (webhook_secret or "").encode()
        self.identity = BotIdentity(int(token.partition(":")[0]), "")
        root = self.api_root = (api_url or DEFAULT_API_URL).rstrip("/").removesuffix("/bot")
        self._requests = [AiohttpRequest(options.connection_limit)]
        builder = (
            Application.builder()
            .token(token)
            .base_url(f"{root}/bot")
            .base_file_url(f"{root}/file/bot")
            .request(self._requests[0])
            .rate_limiter(AIORateLimiter(
                overall_max_rate=options.overall_max_rate,
                group_max_rate=options.group_max_rate,
                max_retries=options.retry_after_retries,
            ))
        )
        if not self.webhook_url:
            self._requests.append(AiohttpRequest(2, read_timeout=5.0))
            builder = builder.get_updates_request(self._requests[1])
        self.application = builder.updater(None).build()  # polling is ours: see polling.py
        # "typing..." goes out past the rate limiter: it is no message, and must never delay one
        self._unlimited = Bot(token, base_url=f"{root}/bot", base_file_url=f"{root}/file/bot",
                              request=self._requests[0], get_updates_request=self._requests[-1])
        self._ready = False
        self._poller: Poller | None = None
        if webhook_secret and not self.webhook_url:
            log.warning("a webhook secret is set but no webhook URL: polling, the secret is unused")

    @property
    def bot(self) -> ExtBot[Any]:
        return self.application.bot

    def routes(self) -> list[web.RouteDef]:
        return [web.post(WEBHOOK_PATH, self._webhook)] if self.webhook_url else []

    async def connect(self) -> None:
        try:
            await self.application.initialize()  # getMe: the bot's id and username
        except InvalidToken:  # its message quotes the token: not repeated here
            await self._close_requests()
            raise ValueError("Telegram refused the bot token") from None
        except NetworkError as error:
            await self._close_requests()
            raise StartFailed(f"cannot reach the Telegram Bot API at {self.api_root}: {error}", "api_url") from error
        except BaseException:
            await self._close_requests()
            raise
        self.identity = BotIdentity(self.bot.id, self.bot.username or "")

    async def start(self) -> None:
        await self.connect()
        self._ready = True
        allowed = ["message", "callback_query", *(["edited_message"] if self.options.edited_messages else [])]
        try:
            await self._register_commands()
            if self.webhook_url:
                try:
                    await self.bot.set_webhook(self.webhook_url, secret_token=self.webhook_secret.decode(),
                                               allowed_updates=allowed)
                except BadRequest as error:  # e.g. http://, a port Telegram does not post to
                    raise StartFailed(f"Telegram refused the webhook URL {self.webhook_url}: {error.message}",
                                      "webhook_url") from error
                log.info("webhook set for @%s", self.identity.username)
                return
            self._poller = Poller(self.bot, self._through, self.options.poll_timeout, allowed)
            await self._poller.start()  # deletes any webhook first
        except BaseException:
            self._ready = False
            await self.application.shutdown()
            raise
        log.info("polling for @%s", self.identity.username)

    async def _register_commands(self) -> None:
        """The command menu: the Engine's commands and the bot's interrupt commands."""
        commands = menu(self.runner.engine.interrupts.handlers)
        try:
            await self.bot.set_my_commands(commands)
        except TelegramError as error:  # the menu is a courtesy: the bot works without it
            log.warning("setMyCommands failed: %s", error)

    async def _close_requests(self) -> None:
        """PTB shuts its requests down only once initialized: after a failed start, we do."""
        for request in self._requests:
            await request.shutdown()

    async def stop(self) -> None:
        """Stop taking updates, finish the turns in flight (every polled update included)."""
        self._ready = False
        poller, self._poller = self._poller, None
        if poller is not None:
            await poller.stop()
        await self.runner.drain()
        if poller is not None:
            await poller.confirm()  # tells Telegram which updates have committed
        await self.application.shutdown()

    async def open(self, to: str) -> tuple[SessionKey, dict[str, JSON]]:
        """`telegram:<chat id>`: the chat's own session (a private chat's, or a group's as a
        whole), its replies sent there. Telegram lets a bot write only to chats that have talked
        to it; any other refuses the reply for good (a blocked user likewise)."""
        name, _, chat = to.partition(":")
        if name != self.name or not re.fullmatch(r"-?[1-9][0-9]{0,18}", chat):
            raise BadAddress(f"{to!r} is not a Telegram address (telegram:<chat id>, e.g. telegram:12345)")
        key = SessionKey(partition(self.identity.id, int(chat)), self.runner.engine.app)
        return key, {VIA: self.name, "chat_id": int(chat)}

    # --- updates ------------------------------------------------------------------------------

    async def _webhook(self, request: web.Request) -> web.Response:
        given = request.headers.get(SECRET_HEADER, "").encode("utf-8", "surrogateescape")  # any bytes may come
        if not hmac.compare_digest(given, self.webhook_secret):
            log.warning("webhook call with a missing or wrong secret from %s refused", request.remote)
            return web.Response(status=403, text="wrong secret")
        if not self._ready:
            return web.Response(status=503, text="starting", headers={"Retry-After": "1"})
        body = await request.read()  # aiohttp answers 413 above the app's client_max_size
        try:
            work = self._work(parse_update(body))
        except UnreadableBody as error:
            return unreadable(self.name, str(error))
        except MalformedUpdate as error:  # retrying cannot help: acknowledged (see adapters.webhooks)
            return acknowledge_unhandled(Unhandled(self.name, error.reason, error.update), str(error))
        if work is not None and not await self.runner.answer(work, within=ACK_SECONDS):
            return web.Response(status=503, text="not processed; deliver again")
        return web.Response(text="ok")

    def _work(self, update: Raw) -> Work | None:
        """What an update (its JSON) asks of the engine, or None when it asks nothing. Raises MalformedUpdate."""
        query = update.get("callback_query")
        if query is not None:  # answered in any case, so the button stops spinning
            self.runner.spawn(self._answer(query["id"]))
        found = translate(update, self.identity, self.runner.engine.app, self.options.edited_messages)
        if isinstance(found, Incoming):
            work = self.runner.turn(replace(found, address={VIA: self.name, **found.address}), self.send)
            return self._touched(work, found, query)
        if isinstance(found, Migration):
            return Work(f"migration of chat {found.old_chat} to {found.new_chat}",
                        lambda committed: self._migrate(found, committed))
        log.debug("update %s ignored: %s", update["update_id"], found.reason)
        return None

    def _touched(self, work: Work, incoming: Incoming, query: Raw | None) -> Work:
        """The turn, with "typing..." shown while it runs past a second, and once it has
        committed a pressed question's keyboard replaced by the choice made."""
        where: dict[str, Any] = {"chat_id": incoming.address["chat_id"]}
        if incoming.address.get("thread_id") is not None:
            where["message_thread_id"] = incoming.address["thread_id"]

        async def attempt(committed: Callable[[], None]) -> None:
            shown = asyncio.create_task(typing(self._unlimited, where))
            edited = False

            def done() -> None:
                nonlocal edited
                shown.cancel()
                committed()
                if query is not None and not edited:
                    edited = True
                    self.runner.spawn(self._show_choice(query))

            try:
                await work.attempt(done)
            finally:
                shown.cancel()

        return Work(work.label, attempt)

    async def _show_choice(self, query: Raw) -> None:
        edit = chosen_edit(query)
        if edit is None:
            return
        try:
            await call(self.bot, self._requests[0], *edit)
        except TelegramError as error:  # too old to edit, edited already, deleted: the answer stands
            log.debug("%s after a press: %s", edit[0], error)

    async def _through(self, update: Update) -> bool:
        """A polled update taken through its turn: True once committed (or nothing to do)."""
        try:
            work = self._work(update.to_dict())
        except MalformedUpdate as error:  # retrying cannot help: confirmed
            log.warning("polled update refused: %s", error)
            return True
        return work is None or await self.runner.answer(work, within=ACK_SECONDS)

    async def _answer(self, query_id: str) -> None:
        try:
            await self.bot.answer_callback_query(query_id)
        except TelegramError as error:  # an old or already answered query: nothing to stop
            log.debug("answerCallbackQuery %s: %s", query_id, error)

    async def _migrate(self, migration: Migration, committed: Callable[[], None]) -> None:
        old = partition(self.identity.id, migration.old_chat)
        new = partition(self.identity.id, migration.new_chat)
        moved = await self.runner.engine.move_partition(old, new, {VIA: self.name, "chat_id": migration.new_chat})
        committed()
        log.info("chat %s became %s: %d sessions moved", migration.old_chat, migration.new_chat, moved)

    # --- replies ------------------------------------------------------------------------------

    async def send(self, reply: Reply) -> None:
        """A reply, in the chat (and topic) its address names, as the calls `render` makes of it:
        each part once; a part that failed is retried, and when the reply is attempted again the
        parts this process already sent are skipped (see sent_parts)."""
        await self.deliveries.send_all(reply, render(reply), lambda call: self._send(call.method, call.kwargs))

    async def _send(self, method: str, kwargs: dict[str, Any]) -> None:
        attempt = 0
        while True:
            try:
                await call(self.bot, self._requests[0], method, kwargs)
                return
            except (Forbidden, BadRequest) as error:  # blocked, kicked, chat gone, refused content
                raise Undeliverable(f"{method} to chat {kwargs['chat_id']}: {error.message}") from error
            except ChatMigrated as error:  # the group became a supergroup: send there
                if attempt >= self.options.network_retries:
                    raise
                kwargs = {**kwargs, "chat_id": error.new_chat_id}
            except NetworkError as error:  # timeouts, connection errors, 5xx
                if attempt >= self.options.network_retries:
                    raise
                pause = self.options.backoff_seconds * 2**attempt
                log.info("%s to chat %s failed (%s), retrying in %.1fs", method, kwargs["chat_id"], error, pause)
                await asyncio.sleep(pause)
            attempt += 1
