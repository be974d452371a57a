"""What Telegram users expect around the conversation itself: the command menu (setMyCommands),
a question's keyboard replaced by the choice made once a button is pressed, and "typing..." while
a turn takes a while."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any, Mapping

from telegram import BotCommand
from telegram.constants import MessageLimit

from convoflow.adapters.text_parts import utf16_units
from convoflow.adapters.telegram.updates import Raw, accessible

log = logging.getLogger("convoflow.telegram")

TYPING_AFTER = 1.0
"""Seconds a turn runs before the chat shows "typing..."."""
TYPING_EVERY = 4.5
"""Telegram shows a chat action for about 5 seconds: it is sent again this often while the turn runs."""
COMMAND_NAME = re.compile(r"[a-z0-9_]{1,32}")
"""What Telegram accepts as a command in the menu."""
BUILTIN_DESCRIPTIONS = {"restart": "Start over", "cancel": "Stop the conversation"}


def menu(handlers: Mapping[str, Any]) -> list[BotCommand]:
    """The command menu of an Engine's interrupt handlers (`/start`, `/cancel`, the bot's `/help`):
    each described by its built-in action or the first line of its dialog's docstring."""
    commands = []
    for key, handler in handlers.items():
        name = key.removeprefix("/")
        if not key.startswith("/") or not COMMAND_NAME.fullmatch(name):
            continue  # a text ("help"), or a name Telegram would refuse
        if isinstance(handler, str):
            description = BUILTIN_DESCRIPTIONS[handler]
        else:
            doc = (getattr(handler, "__doc__", None) or "").strip().splitlines()
            description = doc[0].strip() if doc else name.replace("_", " ").capitalize()
        commands.append(BotCommand(name, description[:256]))
    return commands


def chosen_edit(query: Raw) -> tuple[str, dict[str, Any]] | None:
    """The edit that replaces a pressed question's keyboard by the choice made: editMessageText
    (the question, then "✓ label") or, when that would not fit or the question has no text,
    editMessageReplyMarkup without a keyboard. None when the message cannot be edited."""
    message = query.get("message")
    if message is None or not accessible(message):
        return None
    where = {"chat_id": message["chat"]["id"], "message_id": message["message_id"]}
    label = _label(message.get("reply_markup"), query.get("data"))
    if message.get("text") and label is not None:
        text = f"{message['text']}\n\n\u2713 {label}"
        if utf16_units(text) <= MessageLimit.MAX_TEXT_LENGTH:
            return "editMessageText", {**where, "text": text}
    return "editMessageReplyMarkup", where


def _label(markup: Raw | None, data: str | None) -> str | None:
    for row in (markup.get("inline_keyboard") or ()) if markup is not None else ():
        for button in row:
            if button.get("callback_data") == data:
                return str(button["text"])
    return None


async def typing(bot: Any, where: dict[str, Any]) -> None:
    """Show "typing..." in the chat (and topic) `where` after TYPING_AFTER seconds, again every
    TYPING_EVERY seconds, until cancelled."""
    await asyncio.sleep(TYPING_AFTER)
    while True:
        try:
            await bot.send_chat_action(action="typing", **where)
        except Exception as error:  # noqa: BLE001 - a chat action is a courtesy: never the turn's failure
            log.debug("sendChatAction to %s: %s", where, error)
        await asyncio.sleep(TYPING_EVERY)
