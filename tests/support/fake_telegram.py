"""A loopback fake of the Telegram Bot API, and builders of realistic updates.

The fake answers what python-telegram-bot calls (getMe, sendMessage, sendPhoto, sendDocument,
answerCallbackQuery, setWebhook, deleteWebhook, getUpdates, setMyCommands, sendChatAction,
editMessageText, editMessageReplyMarkup), records every call with its decoded
parameters, and can be told to fail (429 with retry_after, 403 blocked, 5xx; all calls of a method
or only those `matching` a test) or to hold a chat's sends until released. It refuses, as Telegram
does (400), what breaks the Bot API's documented limits: a text that is empty or over 4,096 UTF-16
units, a caption over 1,024, button data over 64 bytes. Point PTB at it with `base_url(f"{fake.url}/bot")`, or at
`fake.url_for(origin)` to have its calls recorded with that origin (which of several processes
made them).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from aiohttp import web
from aiohttp.test_utils import TestServer

BOT_ID = 7000001
TOKEN = f"{BOT_ID}:AAE-fake_token_for_tests"
USERNAME = "guess_bot"
BOT_USER = {"id": BOT_ID, "is_bot": True, "first_name": "Guess", "username": USERNAME}

JSON_FIELDS = {"reply_markup", "reply_parameters", "allowed_updates", "entities", "caption_entities",
               "link_preview_options", "commands"}
INT_FIELDS = {"chat_id", "message_thread_id", "offset", "limit", "timeout", "message_id", "max_connections",
              "cache_time"}
BOOL_FIELDS = {"drop_pending_updates", "show_alert", "disable_notification", "protect_content"}


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    status: int = 200
    origin: str = ""
    """Who called: the path prefix of `FakeTelegram.url_for(origin)`, "" for `url`."""

    @property
    def chat_id(self) -> int | None:
        return self.params.get("chat_id")

    @property
    def text(self) -> str | None:
        return self.params.get("text", self.params.get("caption"))

    def buttons(self) -> list[tuple[str, str]]:
        """(label, callback_data) of every button of this call's inline keyboard."""
        markup = self.params.get("reply_markup") or {}
        return [(b["text"], b["callback_data"]) for row in markup.get("inline_keyboard", []) for b in row]


@dataclass
class Failure:
    status: int
    body: dict[str, Any]
    chat_id: int | None
    times: int | None
    matching: Callable[[dict[str, Any]], bool] | None = None


@dataclass
class FakeTelegram:
    token: str = TOKEN
    calls: list[Call] = field(default_factory=list)
    listeners: list[Callable[[Call], None]] = field(default_factory=list)
    """Called with every successful send (the benchmark's way to see replies arrive)."""

    def __post_init__(self) -> None:
        self._failures: dict[str, list[Failure]] = {}
        self._holds: dict[int, asyncio.Event] = {}
        self._pending_updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1000)
        self._tick = asyncio.Event()
        self._closing = asyncio.Event()
        self._server: TestServer | None = None
        self.record = True

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> FakeTelegram:
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self._handle)
        app.router.add_post("/{origin}/bot{token}/{method}", self._handle)
        self._server = TestServer(app, host="127.0.0.1")
        await self._server.start_server()
        return self

    async def close(self) -> None:
        self._closing.set()
        for gate in self._holds.values():
            gate.set()
        if self._server is not None:
            await self._server.close()

    @property
    def url(self) -> str:
        """The API root, what TELEGRAM_API_URL takes."""
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.port}"

    def url_for(self, origin: str) -> str:
        """An API root whose calls are recorded with `origin`."""
        return f"{self.url}/{origin}"

    # --- scripting ----------------------------------------------------------------------------

    def fail(self, method: str, status: int, *, times: int | None = 1, chat_id: int | None = None,
             retry_after: int | None = None, migrate_to_chat_id: int | None = None,
             description: str | None = None, matching: Callable[[dict[str, Any]], bool] | None = None) -> None:
        """The next `times` calls of `method` (to `chat_id`, and whose parameters pass `matching`,
        if given) fail with `status`; `times=None`: until told otherwise (`heal`)."""
        body: dict[str, Any] = {"ok": False, "error_code": status,
                                "description": description or _DESCRIPTIONS.get(status, "Internal Server Error")}
        if retry_after is not None:
            body["parameters"] = {"retry_after": retry_after}
            body["description"] = f"Too Many Requests: retry after {retry_after}"
        if migrate_to_chat_id is not None:
            body["parameters"] = {"migrate_to_chat_id": migrate_to_chat_id}
            body["description"] = "Bad Request: group chat was upgraded to a supergroup chat"
        self._failures.setdefault(method, []).append(Failure(status, body, chat_id, times, matching))

    def heal(self) -> None:
        self._failures.clear()

    def hold(self, chat_id: int) -> None:
        """Sends to `chat_id` wait (recorded on arrival) until `release(chat_id)`."""
        self._holds[chat_id] = asyncio.Event()

    def release(self, chat_id: int) -> None:
        self._holds.pop(chat_id).set()

    def push(self, update: dict[str, Any]) -> None:
        """Queue an update for getUpdates."""
        self._pending_updates.append(update)
        self._notify()

    # --- reading ------------------------------------------------------------------------------

    def sent(self, chat_id: int | None = None) -> list[Call]:
        """Successful sends (sendMessage, sendPhoto, sendDocument), to one chat or all."""
        return [c for c in self.calls if c.method in SENDS and c.status == 200
                and (chat_id is None or c.chat_id == chat_id)]

    def texts(self, chat_id: int | None = None) -> list[str | None]:
        return [c.text for c in self.sent(chat_id)]

    def of(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    async def wait_for(self, condition: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Wait until `condition()` is truthy (checked after every call, and every 20 ms for
        conditions on other things); returns its value."""
        deadline = time.monotonic() + timeout
        while not (found := condition()):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting; calls so far: {[(c.method, c.params) for c in self.calls][-10:]}")
            try:
                await asyncio.wait_for(self._tick.wait(), min(left, 0.02))
            except asyncio.TimeoutError:
                pass
        return found

    # --- the API ------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if request.match_info["token"] != self.token:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        try:
            params = await _decode(request)
        except ConnectionResetError:  # the caller died mid-request: Telegram never got it
            return web.Response(status=400)
        call = Call(method, params, origin=request.match_info.get("origin", ""))
        if self.record:
            self.calls.append(call)
        self._notify()
        failure = self._failure_for(method, params)
        if failure is not None:
            call.status = failure.status
            self._notify()
            return web.json_response(failure.body, status=failure.status)
        refused = _refusal(method, params)
        if refused is not None:
            call.status = 400
            self._notify()
            return web.json_response({"ok": False, "error_code": 400, "description": refused}, status=400)
        gate = self._holds.get(params.get("chat_id")) if method in SENDS else None  # type: ignore[arg-type]
        if gate is not None:
            await gate.wait()
        handler = getattr(self, f"_api_{method}", None)
        if handler is None:
            call.status = 404
            return web.json_response({"ok": False, "error_code": 404, "description": "Not Found"}, status=404)
        result = await handler(params)
        if method in SENDS:
            for listener in self.listeners:
                listener(call)
        return web.json_response({"ok": True, "result": result})

    def _failure_for(self, method: str, params: dict[str, Any]) -> Failure | None:
        for failure in self._failures.get(method, []):
            if failure.chat_id is not None and failure.chat_id != params.get("chat_id"):
                continue
            if failure.matching is not None and not failure.matching(params):
                continue
            if failure.times is not None:
                failure.times -= 1
                if failure.times == 0:
                    self._failures[method].remove(failure)
            return failure
        return None

    def _notify(self) -> None:
        self._tick.set()
        self._tick = asyncio.Event()

    async def _api_getMe(self, params: dict[str, Any]) -> dict[str, Any]:
        return {**BOT_USER, "can_join_groups": True, "can_read_all_group_messages": False,
                "supports_inline_queries": False}

    async def _api_setWebhook(self, params: dict[str, Any]) -> bool:
        return True

    async def _api_deleteWebhook(self, params: dict[str, Any]) -> bool:
        return True

    async def _api_answerCallbackQuery(self, params: dict[str, Any]) -> bool:
        return True

    async def _api_setMyCommands(self, params: dict[str, Any]) -> bool:
        for command in params.get("commands", []):
            if not re.fullmatch(r"[a-z0-9_]{1,32}", command["command"]) or not 1 <= len(command["description"]) <= 256:
                raise web.HTTPBadRequest(text="Bad Request: BOT_COMMAND_INVALID")
        return True

    async def _api_sendChatAction(self, params: dict[str, Any]) -> bool:
        return True

    async def _api_editMessageText(self, params: dict[str, Any]) -> dict[str, Any]:
        return {**self._message(params), "message_id": params["message_id"], "text": params["text"]}

    async def _api_editMessageReplyMarkup(self, params: dict[str, Any]) -> dict[str, Any]:
        return {**self._message(params), "message_id": params["message_id"], "text": "…"}

    async def _api_sendMessage(self, params: dict[str, Any]) -> dict[str, Any]:
        return {**self._message(params), "text": params["text"]}

    async def _api_sendPhoto(self, params: dict[str, Any]) -> dict[str, Any]:
        photo = {"file_id": f"AgAC-{params['photo']}"[:60], "file_unique_id": "AQAD1", "width": 320, "height": 240}
        return {**self._message(params), "photo": [photo], **_caption(params)}

    async def _api_sendDocument(self, params: dict[str, Any]) -> dict[str, Any]:
        document = {"file_id": "BQAC-doc", "file_unique_id": "AgAD2"}
        return {**self._message(params), "document": document, **_caption(params)}

    async def _api_getUpdates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset = params.get("offset")
        if offset is not None:  # every update below the offset is confirmed
            self._pending_updates = [u for u in self._pending_updates if u["update_id"] >= offset]
        deadline = time.monotonic() + float(params.get("timeout") or 0)
        while not self._pending_updates and not self._closing.is_set() and time.monotonic() < deadline:
            try:
                await asyncio.wait_for(self._tick.wait(), deadline - time.monotonic())
            except asyncio.TimeoutError:
                break
        return self._pending_updates[: int(params.get("limit") or 100)]

    def _message(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = params["chat_id"]
        chat = {"id": chat_id, "type": "private", "first_name": "Ann"} if chat_id > 0 else \
            {"id": chat_id, "type": "supergroup", "title": "Team"}
        message: dict[str, Any] = {"message_id": next(self._message_ids), "date": int(time.time()),
                                   "chat": chat, "from": BOT_USER}
        if params.get("message_thread_id"):
            message.update(message_thread_id=params["message_thread_id"], is_topic_message=True)
        if params.get("reply_markup"):
            message["reply_markup"] = params["reply_markup"]
        return message


SENDS = {"sendMessage", "sendPhoto", "sendDocument"}
TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
CALLBACK_DATA_LIMIT = 64
_DESCRIPTIONS = {
    400: "Bad Request: chat not found",
    403: "Forbidden: bot was blocked by the user",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
}


async def _decode(request: web.Request) -> dict[str, Any]:
    """Form fields as the values PTB meant: nested objects come as JSON strings, numbers as text."""
    form = await request.post()
    params: dict[str, Any] = {}
    for name, value in form.items():
        if not isinstance(value, str):  # an uploaded file
            params[name] = {"filename": value.filename, "content": value.file.read()}
        elif name in JSON_FIELDS:
            params[name] = json.loads(value)
        elif name in INT_FIELDS:
            params[name] = int(value)
        elif name in BOOL_FIELDS:
            params[name] = value == "true"
        else:
            params[name] = value
    return params


def _refusal(method: str, params: dict[str, Any]) -> str | None:
    """Telegram's 400 description for a send that breaks its limits (lengths in UTF-16 units; a
    text of whitespace only is empty, as Telegram drops leading and trailing whitespace), or None."""
    if method == "sendMessage":
        text = str(params.get("text", ""))
        if not text.strip():
            return "Bad Request: message text is empty"
        if _units(text) > TEXT_LIMIT:
            return "Bad Request: message is too long"
    if method in ("sendPhoto", "sendDocument") and _units(str(params.get("caption", ""))) > CAPTION_LIMIT:
        return "Bad Request: message caption is too long"
    markup = params.get("reply_markup") or {}
    for row in markup.get("inline_keyboard", []):
        for button in row:
            if len(str(button.get("callback_data", "")).encode()) > CALLBACK_DATA_LIMIT:
                return "Bad Request: BUTTON_DATA_INVALID"
    return None


def _units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _caption(params: dict[str, Any]) -> dict[str, Any]:
    return {"caption": params["caption"]} if params.get("caption") else {}


# --- realistic updates (required fields as Telegram sends them) --------------------------------

_update_ids = itertools.count(100)
_message_ids = itertools.count(500)


def user(user_id: int, first_name: str = "Ann") -> dict[str, Any]:
    return {"id": user_id, "is_bot": False, "first_name": first_name, "language_code": "en"}


def private_chat(chat_id: int) -> dict[str, Any]:
    return {"id": chat_id, "type": "private", "first_name": "Ann"}


def group_chat(chat_id: int, forum: bool = False, kind: str = "supergroup") -> dict[str, Any]:
    chat: dict[str, Any] = {"id": chat_id, "type": kind, "title": "Team"}
    if forum:
        chat["is_forum"] = True
    return chat


def message(chat: dict[str, Any], sender: dict[str, Any] | None = None, text: str | None = None, *,
            update_id: int | None = None, edited: bool = False, **fields: Any) -> dict[str, Any]:
    """An update carrying a message; `fields` are further Message fields (entities, photo, ...)."""
    sender = sender or user(chat["id"])
    body: dict[str, Any] = {"message_id": next(_message_ids), "date": int(time.time()), "chat": chat, "from": sender}
    if text is not None:
        body["text"] = text
        if text.startswith("/"):
            body["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
    body.update(fields)
    if edited:
        body["edit_date"] = body["date"] + 5
    return {"update_id": update_id or next(_update_ids), "edited_message" if edited else "message": body}


def mention(text: str, username: str = USERNAME) -> dict[str, Any]:
    """Message fields for a text that mentions @username (with the entity Telegram adds)."""
    at = text.index(f"@{username}")
    return {"entities": [{"type": "mention", "offset": at, "length": len(username) + 1}]}


def reply_to_bot(bot_message_id: int, chat: dict[str, Any]) -> dict[str, Any]:
    return {"reply_to_message": {"message_id": bot_message_id, "date": int(time.time()), "chat": chat,
                                 "from": BOT_USER, "text": "Your guess?"}}


def press(chat: dict[str, Any], data: str, sender: dict[str, Any] | None = None, *, message_id: int = 9,
          update_id: int | None = None, **message_fields: Any) -> dict[str, Any]:
    """An update for a press on an inline button of the bot's message `message_id`."""
    sender = sender or user(chat["id"])
    bot_message = {"message_id": message_id, "date": int(time.time()), "chat": chat, "from": BOT_USER,
                   "text": "Pick one", **message_fields}
    return {"update_id": update_id or next(_update_ids), "callback_query": {
        "id": f"cb{next(_update_ids)}", "chat_instance": "-5512", "from": sender, "data": data,
        "message": bot_message}}
