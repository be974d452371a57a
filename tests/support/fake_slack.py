"""A loopback fake of Slack's Web API and Socket Mode endpoint, for tests and benchmarks.

Real slack-sdk / slack-bolt clients talk to it through their base URL. It answers auth.test,
chat.postMessage, chat.update, conversations.open (a DM with a user), oauth.v2.access and
apps.connections.open, records every call, can be told to fail (429 with Retry-After, or any
Slack error), and serves a websocket that speaks Socket Mode (hello, envelopes, acks).

Messages are held to Slack's documented limits: no text and no blocks is `no_text`; more than 50
blocks, a section's text over 3,000 characters, more than 25 elements in an actions block, a
button's text over 75 or value over 2,000 is `invalid_blocks`; more text across a message's blocks
than `blocks_text_limit` (Slack's is undocumented, about 12,000) is `msg_blocks_too_long`; and a
text over 40,000 characters is cut there, as Slack does (`Call.shown` is what the user sees).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
from dataclasses import dataclass, field
from typing import Any, Callable

from aiohttp import WSMsgType, web

TEXT_LIMIT = 40_000
BLOCKS_PER_MESSAGE = 50
SECTION_TEXT_LIMIT = 3000
ELEMENTS_PER_ACTIONS = 25
BUTTON_TEXT_LIMIT = 75
BUTTON_VALUE_LIMIT = 2000
IMAGE_TEXT_LIMIT = 2000
BLOCKS_TEXT_LIMIT = 12_000

CLIENT_ID = "111.222"
CLIENT_SECRET = "fake-client-secret"
APP_ID = "A0FAKEAPP"
APP_TOKEN = "xapp-1-A0FAKEAPP-1-fake"


@dataclass(frozen=True)
class Team:
    """One workspace with the bot installed: its token and the bot's ids there."""

    team_id: str
    bot_token: str
    bot_user_id: str = "UBOT"
    bot_id: str = "BBOT"
    enterprise_id: str | None = None
    name: str = "Fake Team"


@dataclass(frozen=True)
class Call:
    method: str
    params: dict[str, Any]
    token: str | None
    answer: dict[str, Any]
    origin: str = ""
    """Who called: the path prefix of `FakeSlack.api_url_for(origin)`, "" for `api_url`."""

    @property
    def ok(self) -> bool:
        return bool(self.answer.get("ok"))

    @property
    def shown(self) -> str:
        """The text of the posted message as Slack keeps it (cut after TEXT_LIMIT)."""
        return str((self.answer.get("message") or {}).get("text", self.params.get("text", "")))


@dataclass
class Failure:
    error: str
    status: int = 200
    retry_after: int | None = None
    matching: Callable[[dict[str, Any]], bool] | None = None


@dataclass
class FakeSlack:
    teams: list[Team] = field(default_factory=lambda: [Team("T111", "xoxb-fake-T111")])
    calls: list[Call] = field(default_factory=list)
    oauth_codes: dict[str, Team] = field(default_factory=dict)
    refresh_tokens: dict[str, Team] = field(default_factory=dict)
    """Refresh token -> the workspace (and its new bot token) a token rotation yields."""
    socket_received: list[dict[str, Any]] = field(default_factory=list)
    latency: float = 0.0
    """Seconds every Web API call takes to answer (Slack's own are tens of milliseconds)."""
    listeners: list[Callable[[Call], None]] = field(default_factory=list)
    """Called with every successful chat.postMessage, as it arrives."""
    blocks_text_limit: int = BLOCKS_TEXT_LIMIT
    """The most text across one message's blocks before msg_blocks_too_long."""

    def __post_init__(self) -> None:
        self._failures: dict[str, list[Failure]] = {}
        self._inboxes: dict[str, asyncio.Queue[Call]] = {}
        self._ts = itertools.count(1)
        self._sockets: list[web.WebSocketResponse] = []
        self._connected = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> FakeSlack:
        app = web.Application()
        app.router.add_post("/api/{method}", self._api)
        app.router.add_post("/{origin}/api/{method}", self._api)
        app.router.add_get("/socket", self._socket)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def close(self) -> None:
        for socket in list(self._sockets):
            await socket.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    def api_url_for(self, origin: str) -> str:
        """A Web API base URL whose calls are recorded with `origin`."""
        return f"http://127.0.0.1:{self.port}/{origin}/api/"

    # --- what tests set up and read --------------------------------------------------------------

    def fail(self, method: str, error: str, *, status: int = 200, retry_after: int | None = None, times: int = 1,
             matching: Callable[[dict[str, Any]], bool] | None = None) -> None:
        """The next `times` calls of `method` (whose parameters pass `matching`, if given) fail with
        `error` (a 429 carries Retry-After)."""
        self._failures.setdefault(method, []).extend(Failure(error, status, retry_after, matching) for _ in range(times))

    def called(self, method: str, **matching: Any) -> list[Call]:
        return [c for c in self.calls if c.method == method and all(c.params.get(k) == v for k, v in matching.items())]

    def posts(self, **matching: Any) -> list[Call]:
        """Every chat.postMessage that succeeded, in order."""
        return [c for c in self.called("chat.postMessage", **matching) if c.ok]

    def texts(self, **matching: Any) -> list[str]:
        """The texts of the posted messages, as Slack shows them."""
        return [c.shown for c in self.posts(**matching)]

    def inbox(self, channel: str) -> asyncio.Queue[Call]:
        """Messages posted to `channel` (any thread), in order, as they arrive."""
        return self._inboxes.setdefault(channel, asyncio.Queue())

    async def next_posts(self, channel: str, count: int, timeout: float = 10.0) -> list[Call]:
        """The next `count` messages posted to `channel` (fails after `timeout` seconds)."""
        inbox = self.inbox(channel)
        try:
            return [await asyncio.wait_for(inbox.get(), timeout) for _ in range(count)]
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {count} posts to {channel}; "
                                 f"posted so far: {self.texts(channel=channel)}") from None

    async def wait_for(self, condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not condition():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out waiting for {what}; calls so far: {[c.method for c in self.calls]}")
            await asyncio.sleep(0.01)

    async def wait_for_posts(self, count: int, timeout: float = 10.0, **matching: Any) -> list[str]:
        await self.wait_for(lambda: len(self.posts(**matching)) >= count, timeout, f"{count} posts {matching}")
        return self.texts(**matching)

    # --- Socket Mode -----------------------------------------------------------------------------

    @property
    def socket_open(self) -> bool:
        return bool(self._sockets)

    async def wait_connected(self, timeout: float = 10.0) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def socket_send(self, envelope: dict[str, Any]) -> None:
        await self.wait_connected()
        await self._sockets[-1].send_str(json.dumps(envelope))

    async def socket_ack(self, envelope_id: str, timeout: float = 5.0) -> dict[str, Any]:
        def acked() -> dict[str, Any] | None:
            return next((m for m in self.socket_received if m.get("envelope_id") == envelope_id), None)

        await self.wait_for(lambda: acked() is not None, timeout, f"ack of envelope {envelope_id}")
        found = acked()
        assert found is not None
        return found

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse(autoping=True)
        await socket.prepare(request)
        self._sockets.append(socket)
        await socket.send_str(json.dumps({
            "type": "hello", "num_connections": len(self._sockets),
            "debug_info": {"host": "fake", "approximate_connection_time": 3600},
            "connection_info": {"app_id": APP_ID},
        }))
        self._connected.set()
        async for message in socket:
            if message.type == WSMsgType.TEXT:
                self.socket_received.append(json.loads(message.data))
        self._sockets.remove(socket)
        if not self._sockets:
            self._connected.clear()
        return socket

    # --- the Web API -----------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        origin = request.match_info.get("origin", "")
        params: dict[str, Any] = dict(request.query)
        try:
            if request.content_type == "application/json":
                params.update(await request.json())
            else:
                params.update(await request.post())
        except ConnectionResetError:  # the caller died mid-request: Slack never got it
            return web.Response(status=400)
        if self.latency:  # a request Slack has received is carried out, whether or not the caller waits
            await asyncio.sleep(self.latency)
        token = params.get("token")
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            token = header[len("Bearer "):]
        pending = self._failures.get(method, [])
        failure = next((f for f in pending if f.matching is None or f.matching(params)), None)
        if failure is not None:
            pending.remove(failure)
            answer: dict[str, Any] = {"ok": False, "error": failure.error}
            self.calls.append(Call(method, params, token, answer, origin))
            headers = {"Retry-After": str(failure.retry_after)} if failure.retry_after is not None else {}
            status = 429 if failure.retry_after is not None else failure.status
            return web.json_response(answer, status=status, headers=headers)
        handler = getattr(self, "_" + method.replace(".", "_"), None)
        answer = {"ok": False, "error": "unknown_method"} if handler is None else handler(params, token, request)
        call = Call(method, params, token, answer, origin)
        self.calls.append(call)
        if method == "chat.postMessage" and call.ok:
            self.inbox(params["channel"]).put_nowait(call)
            for listener in self.listeners:
                listener(call)
        return web.json_response(answer)

    def _team(self, token: str | None) -> Team | None:
        return next((t for t in self.teams if t.bot_token == token), None)

    def _auth_test(self, params: dict[str, Any], token: str | None, request: web.Request) -> dict[str, Any]:
        team = self._team(token)
        if team is None:
            return {"ok": False, "error": "invalid_auth"}
        return {
            "ok": True, "url": "https://fake.slack.test/", "team": team.name, "user": "convoflow",
            "team_id": team.team_id, "user_id": team.bot_user_id, "bot_id": team.bot_id,
            "enterprise_id": team.enterprise_id, "is_enterprise_install": False,
        }

    def _chat_postMessage(self, params: dict[str, Any], token: str | None, request: web.Request) -> dict[str, Any]:
        if self._team(token) is None:
            return {"ok": False, "error": "invalid_auth"}
        if not params.get("channel"):
            return {"ok": False, "error": "channel_not_found"}
        refused = self._refusal(params)
        if refused is not None:
            return {"ok": False, "error": refused}
        n = next(self._ts)
        ts = f"{1700000000 + n}.{n:06d}"
        message = {k: v for k, v in params.items() if k in ("text", "blocks", "thread_ts")}
        if "text" in message:
            message["text"] = str(message["text"])[:TEXT_LIMIT]
        return {"ok": True, "channel": params["channel"], "ts": ts, "message": {**message, "ts": ts, "type": "message"}}

    def _refusal(self, params: dict[str, Any]) -> str | None:
        """The error Slack answers a message with that breaks its limits, or None."""
        blocks = params.get("blocks")
        if isinstance(blocks, str):
            blocks = json.loads(blocks)
        if not str(params.get("text") or "").strip() and not blocks:
            return "no_text"
        if not blocks:
            return None
        if len(blocks) > BLOCKS_PER_MESSAGE or not all(_valid_block(block) for block in blocks):
            return "invalid_blocks"
        if sum(len(text) for text in _block_texts(blocks)) > self.blocks_text_limit:
            return "msg_blocks_too_long"
        return None

    def _conversations_open(self, params: dict[str, Any], token: str | None, request: web.Request) -> dict[str, Any]:
        """The DM channel with a user: `D` and the user id after its first letter, one per user."""
        if self._team(token) is None:
            return {"ok": False, "error": "invalid_auth"}
        users = str(params.get("users") or "")
        if not users or "," in users:
            return {"ok": False, "error": "users_list_not_supplied" if not users else "not_implemented"}
        if not users.startswith(("U", "W")):
            return {"ok": False, "error": "user_not_found"}
        return {"ok": True, "channel": {"id": "D" + users[1:]}}

    def _chat_update(self, params: dict[str, Any], token: str | None, request: web.Request) -> dict[str, Any]:
        if self._team(token) is None:
            return {"ok": False, "error": "invalid_auth"}
        refused = self._refusal({"text": "-", **params})
        if refused is not None:
            return {"ok": False, "error": refused}
        return {"ok": True, "channel": params.get("channel"), "ts": params.get("ts"), "text": params.get("text", "")}

    def _oauth_v2_access(self, params: dict[str, Any], token: str | None, request: web.Request) -> dict[str, Any]:
        expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return {"ok": False, "error": "invalid_client_id"}
        if params.get("grant_type") == "refresh_token":
            rotated = self.refresh_tokens.pop(str(params.get("refresh_token")), None)
            if rotated is None:
                return {"ok": False, "error": "invalid_refresh_token"}
            return {"ok": True, "app_id": APP_ID, "access_token": rotated.bot_token, "token_type": "bot",
                    "refresh_token": f"xoxe-1-next-{rotated.team_id}", "expires_in": 43200,
                    "team": {"id": rotated.team_id, "name": rotated.name}}
        team = self.oauth_codes.pop(str(params.get("code")), None)
        if team is None:
            return {"ok": False, "error": "invalid_code"}
        return {
            "ok": True, "app_id": APP_ID, "access_token": team.bot_token, "token_type": "bot",
            "scope": "app_mentions:read,chat:write,im:history", "bot_user_id": team.bot_user_id,
            "team": {"id": team.team_id, "name": team.name},
            "enterprise": {"id": team.enterprise_id} if team.enterprise_id else None,
            "is_enterprise_install": False, "authed_user": {"id": "UINSTALLER"},
        }

    def _apps_connections_open(self, params: dict[str, Any], token: str | None, request: web.Request) -> dict[str, Any]:
        if token != APP_TOKEN:
            return {"ok": False, "error": "invalid_auth"}
        return {"ok": True, "url": f"ws://127.0.0.1:{self.port}/socket?ticket=fake"}


def _valid_block(block: dict[str, Any]) -> bool:
    kind = block.get("type")
    if kind == "section":
        text = (block.get("text") or {}).get("text", "")
        return 0 < len(text) <= SECTION_TEXT_LIMIT
    if kind == "actions":
        elements = block.get("elements") or []
        return 0 < len(elements) <= ELEMENTS_PER_ACTIONS and all(_valid_button(e) for e in elements)
    if kind == "image":
        title = (block.get("title") or {}).get("text", "")
        return 0 < len(block.get("alt_text", "")) <= IMAGE_TEXT_LIMIT and len(title) <= IMAGE_TEXT_LIMIT
    return kind in ("context", "divider", "header", "rich_text")


def _valid_button(element: dict[str, Any]) -> bool:
    text = (element.get("text") or {}).get("text", "")
    return (element.get("type") == "button" and 0 < len(text) <= BUTTON_TEXT_LIMIT
            and len(element.get("value", "")) <= BUTTON_VALUE_LIMIT and len(element.get("action_id", "")) <= 255)


def _block_texts(value: Any) -> list[str]:
    """Every text and value string inside blocks (what Slack's cumulative length counts)."""
    if isinstance(value, list):
        return [text for item in value for text in _block_texts(item)]
    if isinstance(value, dict):
        found = [v for k, v in value.items() if k in ("text", "value") and isinstance(v, str)]
        return found + [text for k, v in value.items() if isinstance(v, (dict, list)) for text in _block_texts(v)]
    return []
