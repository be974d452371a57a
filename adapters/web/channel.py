"""The web channel: a bot on a web page, served by the shared aiohttp server.

- `POST /web/session` gives the visitor a signed token naming their session (adapters/web/tokens.py);
- `POST /web/messages` takes a message (`token`, `text` or `button`, `id`), runs its turn through
  the shared TurnRunner and answers with the turn's replies once they are logged; the client's `id`
  makes a retried post a duplicate, answered with the same replies;
- `GET /web/stream` is a Server-Sent Events stream of the session's replies (timers, outside
  events, other tabs), following the store (adapters/web/stream.py);
- `GET /web/history` gives the logged replies, for a page reloaded;
- `GET /web/` serves the chat page (adapters/web/static/).

Delivering a web reply is logging it in the store's bounded reply log: it never waits for a
browser, so a visitor who left never holds up an outbox, and a reply committed by any replica
reaches the streams held by every other.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from importlib import resources
from typing import Any, Awaitable, Callable

from aiohttp import web

from convoflow.adapters.channel import BadAddress
from convoflow.adapters.web.limits import Origins, RateLimit, too_many
from convoflow.adapters.web.payloads import (
    CHANNEL, BadRequest, Posted, TooLarge, incoming, json_body, log_entry, option_label, posted, shown,
)
from convoflow.adapters.web.stream import Streams
from convoflow.adapters.web.tokens import USER_ID, TokenRefused, Tokens, Visitor
from convoflow.messages import VIA, Reply, SessionKey
from convoflow.stores.base import Store, StoreError
from convoflow.turn_runner import TurnRunner, Work
from convoflow.types import JSON

log = logging.getLogger("convoflow.web")

PAGES = {"/web/": ("index.html", "text/html"), "/web/chat.js": ("chat.js", "text/javascript"),
         "/web/chat.css": ("chat.css", "text/css"), "/web/embed.js": ("embed.js", "text/javascript")}
"""The page's files, by path (package data of convoflow.adapters.web)."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
BodyHandler = Callable[[web.Request, dict[str, Any]], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class WebOptions:
    origins: tuple[str, ...] = ()
    """Origins allowed to call the routes from their own pages (CORS) and to frame the page."""
    token_seconds: float = 30 * 86400
    """How long a visitor token is good for (the page renews it on every visit)."""
    history: int = 200
    """Replies kept per session in the reply log (history and stream resumption)."""
    per_second: float = 2.0
    burst: int = 20
    """The rate limit per token: `burst` requests at once, then `per_second`."""
    max_body: int = 16 * 1024
    max_text: int = 4000
    poll_seconds: float = 1.0
    """How often a stream looks in the store for replies other replicas logged."""
    reply_seconds: float = 10.0
    """How long a post waits for its turn's replies to be logged after the commit (else 202)."""


class WebChannel:
    name = CHANNEL

    def __init__(self, runner: TurnRunner, store: Store, secret: str, options: WebOptions = WebOptions()) -> None:
        self.runner = runner
        self.store = store
        self.options = options
        self.tokens = Tokens(secret, options.token_seconds)
        self.origins = Origins(options.origins)
        self.rate = RateLimit(options.per_second, options.burst)
        self.streams = Streams(store, options.poll_seconds)

    def routes(self) -> list[web.RouteDef]:
        api: list[tuple[str, str, BodyHandler]] = [
            ("POST", "/web/session", self._session), ("POST", "/web/messages", self._messages),
            ("GET", "/web/stream", self._stream), ("GET", "/web/history", self._history),
        ]
        defs = [web.route(method, path, self._guarded(handler)) for method, path, handler in api]
        defs += [web.options(path, self._preflight) for _, path, _ in api]
        defs += [web.get(path, self._page) for path in PAGES]
        return defs

    async def connect(self) -> None:
        pass

    async def start(self) -> None:
        self.streams.closing.clear()

    def closing(self) -> None:
        """The server is shutting down: end the streams, so it need not wait for them."""
        self.streams.closing.set()

    async def stop(self) -> None:
        self.closing()

    async def open(self, to: str) -> tuple[SessionKey, dict[str, JSON]]:
        """`web:<visitor>` or `web:user:<site user id>`, as the session's partition."""
        name, _, rest = to.partition(":")
        user = rest.removeprefix("user:")
        if name != CHANNEL or not rest or (rest.startswith("user:") and not USER_ID.fullmatch(user)):
            raise BadAddress(f"{to!r} is no web address (web:<visitor> or web:user:<site user id>)")
        return SessionKey(to, self.runner.engine.app), {VIA: CHANNEL}

    async def send(self, reply: Reply) -> None:
        await self._log(reply, log_entry(reply))

    # --- routes --------------------------------------------------------------------------------

    async def _session(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        if "token" in body:  # renewing: the same session, a fresh expiry
            visitor = self.tokens.verify(body["token"], time.time())
        else:
            user, signature = body.get("user"), body.get("signature")
            if user is not None and not isinstance(user, str):
                raise BadRequest("user must be the site's user id, a string", "user")
            visitor = self.tokens.visitor(user, signature if isinstance(signature, str) else None)
        return self._json(request, {"token": self.tokens.issue(visitor, time.time())})

    async def _messages(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        key, visitor = self._authorised(body.get("token"))
        message = posted(body, self.options.max_text)
        said = message.text or await self._label(key, message)
        logged: list[dict[str, Any]] = []

        async def deliver(reply: Reply) -> None:
            entry = log_entry(reply, turn=message.id, said=None if logged else said)
            await self._log(reply, entry)
            logged.append(entry)

        finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        update = incoming(key, message, visitor.user)

        async def attempt(committed: Callable[[], None]) -> None:
            await self.runner.engine.handle(update, deliver, committed)
            if not finished.done():
                finished.set_result(None)

        if not await self.runner.answer(Work(f"web message {message.id} of {key}", attempt)):
            return self._json(request, {"error": "not processed: post it again with the same id"}, 503)
        try:
            await asyncio.wait_for(asyncio.shield(finished), self.options.reply_seconds)
        except TimeoutError:  # committed; its replies come over the stream once logged
            return self._json(request, {"replies": [shown(entry) for entry in logged]}, 202)
        if not logged:  # a post seen before: the replies its first delivery logged
            history = await self.store.logged_replies(key, 0, self.options.history)
            logged = [entry for entry in history if entry.get("turn") == message.id]
        return self._json(request, {"replies": [shown(entry) for entry in logged]})

    async def _history(self, request: web.Request, _: dict[str, Any]) -> web.StreamResponse:
        key, _visitor = self._authorised(request.query.get("token"))
        after = _seq(request.query.get("after", "0"), "after")
        entries = await self.store.logged_replies(key, after, self.options.history)
        return self._json(request, {"replies": [shown(entry) for entry in entries]})

    async def _stream(self, request: web.Request, _: dict[str, Any]) -> web.StreamResponse:
        key, _visitor = self._authorised(request.query.get("token"))
        resumed = request.headers.get("Last-Event-ID") or request.query.get("after")
        if resumed is not None:
            after = _seq(resumed, "Last-Event-ID")
        else:  # from now on
            entries = await self.store.logged_replies(key, 0, self.options.history)
            after = entries[-1]["seq"] if entries else 0
        return await self.streams.follow(request, key, after, self.origins.headers(request))

    async def _preflight(self, request: web.Request) -> web.StreamResponse:
        return self.origins.preflight(request)

    async def _page(self, request: web.Request) -> web.StreamResponse:
        name, content_type = PAGES[request.path]
        body = resources.files("convoflow.adapters.web").joinpath("static", name).read_bytes()
        return web.Response(body=body, content_type=content_type, charset="utf-8", headers={
            "Content-Security-Policy": self.origins.frame_ancestors(), "Cache-Control": "no-cache"})

    # --- helpers -------------------------------------------------------------------------------

    def _guarded(self, handler: BodyHandler) -> Handler:
        """Read the body (POST), and answer the status table's refusals: 400, 401, 413, 429, 503."""

        async def guarded(request: web.Request) -> web.StreamResponse:
            try:
                body = await json_body(request, self.options.max_body) if request.method == "POST" else {}
                return await handler(request, body)
            except TooLarge as error:
                return self._json(request, {"error": str(error)}, 413)
            except BadRequest as error:
                return self._json(request, {"error": str(error), "field": error.field}, 400)
            except TokenRefused as error:
                return self._json(request, {"error": f"unauthorised: {error}"}, 401)
            except StoreError as error:
                log.warning("web %s %s: %s", request.method, request.path, error)
                return self._json(request, {"error": "the store is unavailable: try again"}, 503)
            except RateLimited as limited:
                response = too_many(limited.retry_after)
                response.headers.update(self.origins.headers(request))
                return response

        return guarded

    def _authorised(self, token: object) -> tuple[SessionKey, Visitor]:
        """The session a token names, after counting it against the rate limit."""
        visitor = self.tokens.verify(token, time.time())
        wait = self.rate.take(visitor.partition)
        if wait is not None:
            raise RateLimited(wait)
        return SessionKey(visitor.partition, self.runner.engine.app), visitor

    async def _label(self, key: SessionKey, message: Posted) -> str | None:
        """The label of the pressed button, read from the log (what the visitor is shown to say)."""
        assert message.button is not None
        entries = await self.store.logged_replies(key, message.button.seq - 1, 1)
        if not entries or entries[0]["seq"] != message.button.seq:
            return None
        return option_label(entries[0], message.button.index)

    async def _log(self, reply: Reply, entry: dict[str, Any]) -> None:
        if reply.key is None:
            raise ValueError(f"web reply {reply.seq} has no session key")
        await self.store.log_replies(reply.key, [entry], self.options.history)
        self.streams.pushed(reply.key, entry)

    def _json(self, request: web.Request, data: dict[str, Any], status: int = 200) -> web.Response:
        return web.json_response(data, status=status, headers=self.origins.headers(request))


class RateLimited(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__(f"retry after {retry_after:.1f} s")
        self.retry_after = retry_after


def _seq(text: str, name: str) -> int:
    if not text.isdigit() or len(text) > 18:
        raise BadRequest(f"{name} must be a reply's seq number", name)
    return int(text)
