"""Telegram updates as convoflow `Incoming` messages: which session, who, saying what.

Session keys follow Telegram's scoping: `telegram:<bot>:<chat>` for a private chat; in groups one
session per user, `telegram:<bot>:<chat>:<user>`; in forum topics one per topic (and user),
`telegram:<bot>:<chat>:<thread>[:<user>]`. In groups the bot only listens when addressed: a
command, a mention, a reply to one of its messages, or a press on one of its buttons.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Union

from telegram import MessageEntity
from telegram.constants import ChatType

from convoflow.adapters.webhooks import UnhandledReason
from convoflow.buttons import ButtonRef, decode_button
from convoflow.messages import Incoming, IncomingKind, Media, SessionKey
from convoflow.types import JSON

GROUPS = (ChatType.GROUP, ChatType.SUPERGROUP)
_COMMAND = re.compile(r"/(?P<name>[A-Za-z0-9_]{1,64})(?:@(?P<bot>[A-Za-z0-9_]+))?(?=\s|$)")


class MalformedUpdate(ValueError):
    """JSON, but not a Telegram Update we can handle (acknowledged, never retried). `update` is its
    update_id when it has one."""

    def __init__(self, message: str, reason: UnhandledReason = "malformed", update: int | None = None) -> None:
        super().__init__(message)
        self.reason: UnhandledReason = reason
        self.update = update


class UnreadableBody(MalformedUpdate):
    """The body is not JSON at all, or nested too deeply to read (answered 400)."""


@dataclass(frozen=True)
class Required:
    """A field Telegram always sends (python-telegram-bot takes a null for one without a word)."""

    schema: Schema


Schema = Union[type, Required, "dict[str, Schema]", "list[Schema]"]
"""The type a field must have when present: `int` (a JSON integer, no bool, within 64 bits), `str`,
`bool`, `dict` (any object); a dict of field schemas (an object); `[schema]` (a list of them);
`Required(schema)`: present, not null, and of that schema."""

_USER: Schema = {"id": Required(int), "is_bot": Required(bool), "first_name": Required(str), "username": str}
_CHAT: Schema = {"id": Required(int), "type": Required(str), "is_forum": bool}
_ENTITY: Schema = {"type": Required(str), "offset": Required(int), "length": Required(int), "user": _USER}
_FILE: Schema = {"file_id": Required(str)}
_REPLIED: Schema = {"message_id": Required(int), "date": Required(int), "chat": Required(_CHAT), "from": _USER,
                    "text": str, "caption": str, "forum_topic_created": dict}
_MESSAGE: Schema = {
    "message_id": Required(int), "date": Required(int), "chat": Required(_CHAT), "from": _USER, "text": str,
    "caption": str, "entities": [_ENTITY], "caption_entities": [_ENTITY], "photo": [_FILE], "document": _FILE,
    "message_thread_id": int, "is_topic_message": bool, "migrate_to_chat_id": int, "reply_to_message": _REPLIED,
    "reply_markup": {"inline_keyboard": [[{"text": Required(str), "callback_data": str}]]},
}
_UPDATE: Schema = {
    "update_id": Required(int), "message": _MESSAGE, "edited_message": _MESSAGE,
    "callback_query": {"id": Required(str), "from": Required(_USER), "message": _MESSAGE, "data": str,
                       "chat_instance": Required(str)},
}
"""The fields `translate` and `chosen_edit` read, so that a mistyped one (a string chat id, NaN for text, a list for
message_thread_id, a null chat id) is refused here rather than failing somewhere later."""
INT_LIMIT = 2**63
"""Telegram's integers (ids, dates) fit in 64 bits; a larger one is no Telegram value."""


Raw = dict[str, Any]
"""An update, or an object in one, as Telegram's JSON."""


@dataclass(frozen=True)
class BotIdentity:
    id: int
    username: str


@dataclass(frozen=True)
class Migration:
    """A group became a supergroup: its sessions continue under the new chat id."""

    old_chat: int
    new_chat: int


@dataclass(frozen=True)
class Ignored:
    reason: str


def parse_update(body: bytes) -> Raw:
    """A webhook body as an Update's JSON, checked to have every field `translate` reads of the
    type Telegram sends (python-telegram-bot's objects cost a tenth of a turn to build, and
    nothing of them is read but those fields). Raises UnreadableBody when it is not JSON, MalformedUpdate
    saying what is wrong with it when it is not an Update."""
    try:
        data = json.loads(body)
    except ValueError:
        raise UnreadableBody("body is not JSON") from None
    except RecursionError:
        raise UnreadableBody("body is nested too deeply to read") from None
    if not isinstance(data, dict) or type(data.get("update_id")) is not int:
        raise MalformedUpdate("body is not a Telegram Update (no integer update_id)", "not_an_update")
    update_id = data["update_id"]
    problem = _mistyped(data, _UPDATE, "update")
    if problem is not None:
        raise MalformedUpdate(f"update {update_id} is not a valid Telegram Update: {problem}", update=update_id)
    return data


def _mistyped(value: Any, schema: Schema, path: str) -> str | None:
    """What is wrong with `value` by `schema` (its first misfit), or None."""
    misfit = _misfit(value, schema)
    if misfit is None:
        return None
    steps, problem = misfit
    return f"{path}{''.join(reversed(steps))} {problem}"


def _misfit(value: Any, schema: Schema) -> tuple[list[str], str] | None:
    """The first misfit of `value` by `schema`: the steps to it, innermost first, and what is wrong
    there; None when it fits. (Paths are spelled out only for a misfit: every update is checked.)"""
    if isinstance(schema, Required):
        return _misfit(value, schema.schema)
    if isinstance(schema, dict):
        if type(value) is not dict:
            return [], f"is {_kind(value)}, not an object"
        for name, inner in schema.items():
            item = value.get(name)
            if item is None:
                if isinstance(inner, Required):
                    return [f".{name}"], "is missing"
                continue
            misfit = _misfit(item, inner)
            if misfit is not None:
                misfit[0].append(f".{name}")
                return misfit
        return None
    if isinstance(schema, list):
        if type(value) is not list:
            return [], f"is {_kind(value)}, not a list"
        for n, item in enumerate(value):
            misfit = _misfit(item, schema[0])
            if misfit is not None:
                misfit[0].append(f"[{n}]")
                return misfit
        return None
    if schema is int:
        if type(value) is not int:
            return [], f"is {_kind(value)}, not an integer"
        return None if -INT_LIMIT <= value < INT_LIMIT else ([], "is out of range")
    return None if type(value) is schema else ([], f"is {_kind(value)}, not {schema.__name__}")


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number"}.get(type(value), type(value).__name__)


def partition(bot_id: int, chat_id: int, *scopes: int | None) -> str:
    return ":".join(str(part) for part in ("telegram", bot_id, chat_id, *scopes) if part is not None)


def translate(update: Raw, bot: BotIdentity, app: str, edited_messages: bool = False) -> Incoming | Migration | Ignored:
    """What an update means for the engine. Raises MalformedUpdate for an update lacking what
    Telegram always sends (a message's chat, a callback's sender) or that cannot be read."""
    try:
        return _translate(update, bot, app, edited_messages)
    except Exception as error:  # noqa: BLE001 - reading an update is pure: what fails is the update's doing
        problem = str(error) if isinstance(error, MalformedUpdate) else f"cannot be read ({type(error).__name__}: {error})"
        raise MalformedUpdate(f"update {update['update_id']}: {problem}", update=update["update_id"]) from None


def _translate(update: Raw, bot: BotIdentity, app: str, edited_messages: bool) -> Incoming | Migration | Ignored:
    update_id = f"telegram:{bot.id}:{update['update_id']}"
    if update.get("message") is not None:
        return _from_message(update_id, update["message"], bot, app)
    if update.get("edited_message") is not None:
        if not edited_messages:
            return Ignored("edited message (the bot does not take edits)")
        return _from_message(update_id, update["edited_message"], bot, app)
    if update.get("callback_query") is not None:
        return _from_callback(update_id, update["callback_query"], bot, app)
    return Ignored("update kind not handled")


def _from_message(update_id: str, message: Raw, bot: BotIdentity, app: str) -> Incoming | Migration | Ignored:
    chat = message.get("chat")
    if chat is None:
        raise MalformedUpdate(f"message {message.get('message_id')} has no chat")
    if message.get("migrate_to_chat_id"):
        return Migration(chat["id"], message["migrate_to_chat_id"])
    user = message.get("from")
    if chat["type"] == ChatType.CHANNEL or user is None or user["is_bot"]:
        return Ignored("not a message from a user")
    written = message.get("text")
    text = written if written is not None else message.get("caption") or ""
    group = chat["type"] in GROUPS
    if group and not _addressed(message, text, bot):
        return Ignored("group message not addressed to the bot")
    text = _without_mention(text, bot.username)
    kind: IncomingKind = "text"
    media = None
    command = _COMMAND.match(text)
    if message.get("photo"):
        kind, media = "media", Media("image", message["photo"][-1]["file_id"], text)
    elif message.get("document") is not None:
        kind, media = "media", Media("file", message["document"]["file_id"], text)
    elif written is None:
        return Ignored("message kind not handled")
    elif command:
        if command["bot"] and command["bot"].lower() != bot.username.lower():
            return Ignored("command for another bot")
        kind, text = "command", f"/{command['name']}{text[command.end():]}"
    thread = message.get("message_thread_id") if message.get("is_topic_message") else None
    address: dict[str, JSON] = {"chat_id": chat["id"]}
    if thread is not None:
        address["thread_id"] = thread
    if group:
        address["reply_to"] = message["message_id"]  # so the group sees whom the bot answers
    key = SessionKey(partition(bot.id, chat["id"], thread, user["id"] if group else None), app)
    return Incoming(key, update_id, kind, text, user=str(user["id"]), address=address, media=media)


def accessible(message: Raw) -> bool:
    """Whether a callback's message is there to read: Telegram sends one too old to access with
    date 0 and nothing but its chat and id."""
    return message.get("date") != 0


def _asked_someone_else(message: Raw, presser: int) -> bool:
    """In a group the bot answers each member in reply to their message: a question replying to
    another member's message is theirs, and a press on its buttons is not the presser's answer."""
    replied = message.get("reply_to_message") if accessible(message) else None
    asked = replied.get("from") if replied is not None else None
    return asked is not None and not asked["is_bot"] and asked["id"] != presser


def _from_callback(update_id: str, query: Raw, bot: BotIdentity, app: str) -> Incoming | Ignored:
    presser = query.get("from")
    if presser is None:
        raise MalformedUpdate(f"callback query {query.get('id')} has no sender")
    message = query.get("message")
    if message is None or query.get("data") is None:
        return Ignored("button press without a chat message or data")
    try:
        pressed = decode_button(query["data"])
    except ValueError:
        return Ignored("button payload we never made")
    chat = message["chat"]
    thread = message.get("message_thread_id") if accessible(message) and message.get("is_topic_message") else None
    group = chat["type"] in GROUPS
    if group and _asked_someone_else(message, presser["id"]):
        return Ignored("button of a question the bot asked another member")
    address: dict[str, JSON] = {"chat_id": chat["id"]}
    if thread is not None:
        address["thread_id"] = thread
    key = SessionKey(partition(bot.id, chat["id"], thread, presser["id"] if group else None), app)
    if isinstance(pressed, ButtonRef):
        return Incoming(key, update_id, "button", button=pressed, user=str(presser["id"]), address=address)
    return Incoming(key, update_id, "button", value=pressed, user=str(presser["id"]), address=address)


def _addressed(message: Raw, text: str, bot: BotIdentity) -> bool:
    command = _COMMAND.match(text)
    if command and (not command["bot"] or command["bot"].lower() == bot.username.lower()):
        return True
    replied = message.get("reply_to_message")
    # In forum topics every message "replies" to the topic's creation message: that is no address.
    if replied is not None and replied.get("forum_topic_created") is None and replied.get("from") is not None:
        if replied["from"]["id"] == bot.id:
            return True
    written = message.get("text")
    source, entities = (written, message.get("entities")) if written is not None else (message.get("caption"), message.get("caption_entities"))
    for entity in entities or ():
        if entity["type"] == MessageEntity.MENTION and _entity_text(source or "", entity).lower() == f"@{bot.username.lower()}":
            return True
        user = entity.get("user")
        if entity["type"] == MessageEntity.TEXT_MENTION and user is not None and user["id"] == bot.id:
            return True
    return False


def _entity_text(text: str, entity: Raw) -> str:
    """The part of `text` an entity covers: its offset and length count UTF-16 code units."""
    units = text.encode("utf-16-le")
    return units[entity["offset"] * 2:(entity["offset"] + entity["length"]) * 2].decode("utf-16-le")


def _without_mention(text: str, username: str) -> str:
    """The text without `@bot` mentions (a word of their own, so `me@bot.example` stays)."""
    return re.sub(rf"(?<!\S)@{re.escape(username)}\b", "", text, flags=re.IGNORECASE).strip()
