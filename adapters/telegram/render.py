"""convoflow replies as Bot API calls: plain text (never parsed as markup) split within Telegram's
limits, inline keyboards, photos and documents, in the chat and topic of the reply's address."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, cast

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, ReplyParameters
from telegram.constants import InlineKeyboardButtonLimit, InlineKeyboardMarkupLimit, MessageLimit

from convoflow.adapters import text_parts
from convoflow.adapters.text_parts import utf16_units
from convoflow.buttons import encode_button
from convoflow.messages import Media, Option, Reply

ROW_WIDTH = 30
"""Label characters that fit side by side on a phone; longer rows wrap."""

KEYBOARD_ONLY_TEXT = "\u2026"
"""A question whose text shows nothing still needs some text for its keyboard (Telegram refuses
an empty message)."""

Method = Literal["send_message", "send_photo", "send_document"]


@dataclass(frozen=True)
class Send:
    """One Bot API call: a `telegram.Bot` method and its keyword arguments."""

    method: Method
    kwargs: dict[str, Any]


def render(reply: Reply) -> list[Send]:
    """The calls that show one reply, in order; none for a text that shows nothing. No
    `parse_mode` is ever set, so text arrives exactly as the flow wrote it. Every part is within
    Telegram's limits (4,096 UTF-16 units of text, 1,024 of caption) and shows something."""
    where: dict[str, Any] = {"chat_id": reply.address["chat_id"]}
    if reply.address.get("thread_id") is not None:
        where["message_thread_id"] = reply.address["thread_id"]
    first = dict(where)
    if reply.address.get("reply_to") is not None:
        first["reply_parameters"] = ReplyParameters(cast(int, reply.address["reply_to"]), allow_sending_without_reply=True)
    message = reply.message
    if isinstance(message, Media):
        # A caption over Telegram's limit follows the media as text rather than being cut.
        fits = utf16_units(message.caption) <= MessageLimit.CAPTION_LENGTH
        method: Method = "send_photo" if message.kind == "image" else "send_document"
        field = "photo" if message.kind == "image" else "document"
        media = Send(method, {**first, field: message.source, "caption": (message.caption if fits else "") or None})
        rest = [] if fits else [Send("send_message", {**where, "text": chunk}) for chunk in split_text(message.caption)]
        return [media, *rest]
    text, options = message.text, message.options
    if len(options) > InlineKeyboardMarkupLimit.TOTAL_BUTTON_NUMBER:
        # More options than a keyboard holds: a numbered list, answered by typing the number.
        text = "\n".join([text, *(f"{n}) {option.label}" for n, option in enumerate(options, 1))])
        options = ()
    chunks = split_text(text) or ([KEYBOARD_ONLY_TEXT] if options else [])
    sends = [Send("send_message", {**(first if i == 0 else where), "text": chunk}) for i, chunk in enumerate(chunks)]
    if options:
        sends[-1].kwargs["reply_markup"] = keyboard(options, reply.seq)
    return sends


def keyboard(options: tuple[Option, ...], seq: int) -> InlineKeyboardMarkup:
    """One button per option; rows wrap at ROW_WIDTH label characters or Telegram's 8 buttons.
    A button's callback data is its answer's JSON, or a reference when that exceeds 64 bytes."""
    rows: list[list[InlineKeyboardButton]] = []
    width = 0
    for index, option in enumerate(options):
        data = encode_button(option.answer, seq, index, InlineKeyboardButtonLimit.MAX_CALLBACK_DATA)
        button = InlineKeyboardButton(option.label, callback_data=data)
        if not rows or len(rows[-1]) == InlineKeyboardMarkupLimit.BUTTONS_PER_ROW or width + len(option.label) > ROW_WIDTH:
            rows.append([])
            width = 0
        rows[-1].append(button)
        width += len(option.label)
    return InlineKeyboardMarkup(rows)


def split_text(text: str, limit: int = MessageLimit.MAX_TEXT_LENGTH) -> list[str]:
    """Text in parts Telegram accepts: see `convoflow.adapters.text_parts`."""
    return text_parts.split_text(text, limit, utf16_units)
