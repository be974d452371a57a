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

from telegram import Bot, CallbackQuery, MaybeInaccessibleMessage, Message, MessageEntity, Update
from telegram.constants import ChatType

from convoflow.buttons import ButtonRef, decode_button
from convoflow.messages import Incoming, IncomingKind, Media, SessionKey
from convoflow.types import JSON

GROUPS = (ChatType.GROUP, ChatType.SUPERGROUP)
_COMMAND = re.compile(r"/(?P<name>[A-Za-z0-9_]{1,64})(?:@(?P<bot>[A-Za-z0-9_]+))?(?=\s|$)")


class MalformedUpdate(ValueError):
    """The body is not a Telegram Update we can read."""


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


def parse_update(body: bytes, bot: Bot) -> Update:
    """A webhook body as an Update. Raises MalformedUpdate saying what is wrong with it."""
    try:
        data = json.loads(body)
    except ValueError:
        raise MalformedUpdate("body is not JSON") from None
    if not isinstance(data, dict) or type(data.get("update_id")) is not int:
        raise MalformedUpdate("body is not a Telegram Update (no integer update_id)")
    try:
        update = Update.de_json(data, bot)
    except Exception as error:  # noqa: BLE001 - PTB raises whatever a missing field causes
        raise MalformedUpdate(f"update {data['update_id']} is not a valid Telegram Update: {error}") from None
    return update


def partition(bot_id: int, chat_id: int, *scopes: int | None) -> str:
    return ":".join(str(part) for part in ("telegram", bot_id, chat_id, *scopes) if part is not None)


def translate(update: Update, bot: BotIdentity, app: str, edited_messages: bool = False) -> Incoming | Migration | Ignored:
    """What an update means for the engine. Raises MalformedUpdate for an update lacking what
    Telegram always sends (a message's chat, a callback's sender)."""
    update_id = f"telegram:{bot.id}:{update.update_id}"
    if update.message is not None:
        return _from_message(update_id, update.message, bot, app)
    if update.edited_message is not None:
        if not edited_messages:
            return Ignored("edited message (the bot does not take edits)")
        return _from_message(update_id, update.edited_message, bot, app)
    if update.callback_query is not None:
        return _from_callback(update_id, update.callback_query, bot, app)
    return Ignored("update kind not handled")


def _from_message(update_id: str, message: Message, bot: BotIdentity, app: str) -> Incoming | Migration | Ignored:
    chat = message.chat
    if chat is None:
        raise MalformedUpdate(f"message {message.message_id} has no chat")
    if message.migrate_to_chat_id:
        return Migration(chat.id, message.migrate_to_chat_id)
    user = message.from_user
    if chat.type == ChatType.CHANNEL or user is None or user.is_bot:
        return Ignored("not a message from a user")
    text = message.text if message.text is not None else message.caption or ""
    group = chat.type in GROUPS
    if group and not _addressed(message, text, bot):
        return Ignored("group message not addressed to the bot")
    text = _without_mention(text, bot.username)
    kind: IncomingKind = "text"
    media = None
    command = _COMMAND.match(text)
    if message.photo:
        kind, media = "media", Media("image", message.photo[-1].file_id, text)
    elif message.document is not None:
        kind, media = "media", Media("file", message.document.file_id, text)
    elif message.text is None:
        return Ignored("message kind not handled")
    elif command:
        if command["bot"] and command["bot"].lower() != bot.username.lower():
            return Ignored("command for another bot")
        kind, text = "command", f"/{command['name']}{text[command.end():]}"
    thread = message.message_thread_id if message.is_topic_message else None
    address: dict[str, JSON] = {"chat_id": chat.id}
    if thread is not None:
        address["thread_id"] = thread
    if group:
        address["reply_to"] = message.message_id  # so the group sees whom the bot answers
    key = SessionKey(partition(bot.id, chat.id, thread, user.id if group else None), app)
    return Incoming(key, update_id, kind, text, user=str(user.id), address=address, media=media)


def _asked_someone_else(message: MaybeInaccessibleMessage, presser: int) -> bool:
    """In a group the bot answers each member in reply to their message: a question replying to
    another member's message is theirs, and a press on its buttons is not the presser's answer."""
    asked = message.reply_to_message.from_user if isinstance(message, Message) and message.reply_to_message else None
    return asked is not None and not asked.is_bot and asked.id != presser


def _from_callback(update_id: str, query: CallbackQuery, bot: BotIdentity, app: str) -> Incoming | Ignored:
    if query.from_user is None:
        raise MalformedUpdate(f"callback query {query.id} has no sender")
    message = query.message
    if message is None or query.data is None:
        return Ignored("button press without a chat message or data")
    try:
        pressed = decode_button(query.data)
    except ValueError:
        return Ignored("button payload we never made")
    chat = message.chat
    thread = message.message_thread_id if isinstance(message, Message) and message.is_topic_message else None
    group = chat.type in GROUPS
    if group and _asked_someone_else(message, query.from_user.id):
        return Ignored("button of a question the bot asked another member")
    address: dict[str, JSON] = {"chat_id": chat.id}
    if thread is not None:
        address["thread_id"] = thread
    key = SessionKey(partition(bot.id, chat.id, thread, query.from_user.id if group else None), app)
    if isinstance(pressed, ButtonRef):
        return Incoming(key, update_id, "button", button=pressed, user=str(query.from_user.id), address=address)
    return Incoming(key, update_id, "button", value=pressed, user=str(query.from_user.id), address=address)


def _addressed(message: Message, text: str, bot: BotIdentity) -> bool:
    command = _COMMAND.match(text)
    if command and (not command["bot"] or command["bot"].lower() == bot.username.lower()):
        return True
    replied = message.reply_to_message
    # In forum topics every message "replies" to the topic's creation message: that is no address.
    if replied is not None and replied.forum_topic_created is None and replied.from_user is not None:
        if replied.from_user.id == bot.id:
            return True
    entities = message.parse_entities() if message.text is not None else message.parse_caption_entities()
    for entity, value in entities.items():
        if entity.type == MessageEntity.MENTION and value.lower() == f"@{bot.username.lower()}":
            return True
        if entity.type == MessageEntity.TEXT_MENTION and entity.user is not None and entity.user.id == bot.id:
            return True
    return False


def _without_mention(text: str, username: str) -> str:
    """The text without `@bot` mentions (a word of their own, so `me@bot.example` stays)."""
    return re.sub(rf"(?<!\S)@{re.escape(username)}\b", "", text, flags=re.IGNORECASE).strip()
