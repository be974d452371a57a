"""convoflow replies as Bot API calls: plain text (never parsed as markup), inline keyboards,
photos and documents, in the chat and topic of the reply's address."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, cast

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, ReplyParameters
from telegram.constants import InlineKeyboardButtonLimit, InlineKeyboardMarkupLimit, MessageLimit

from convoflow.buttons import encode_button
from convoflow.messages import Media, Option, Reply

ROW_WIDTH = 30
"""Label characters that fit side by side on a phone; longer rows wrap."""

Method = Literal["send_message", "send_photo", "send_document"]


@dataclass(frozen=True)
class Send:
    """One Bot API call: a `telegram.Bot` method and its keyword arguments."""

    method: Method
    kwargs: dict[str, Any]


def render(reply: Reply) -> list[Send]:
    """The calls that show one reply, in order. No `parse_mode` is ever set, so text arrives
    exactly as the flow wrote it."""
    where: dict[str, Any] = {"chat_id": reply.address["chat_id"]}
    if reply.address.get("thread_id") is not None:
        where["message_thread_id"] = reply.address["thread_id"]
    first = dict(where)
    if reply.address.get("reply_to") is not None:
        first["reply_parameters"] = ReplyParameters(cast(int, reply.address["reply_to"]), allow_sending_without_reply=True)
    message = reply.message
    if isinstance(message, Media):
        # A caption over Telegram's limit follows the media as text rather than being cut.
        fits = _length(message.caption) <= MessageLimit.CAPTION_LENGTH
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
    chunks = split_text(text)
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
    """Text in pieces Telegram accepts (it counts UTF-16 units), cut at a line break or space
    where one is near."""
    chunks: list[str] = []
    while _length(text) > limit:
        cut, units = 0, 0
        for cut, char in enumerate(text):  # noqa: B007 - `cut` ends at the first char that does not fit
            units += 2 if ord(char) > 0xFFFF else 1
            if units > limit:
                break
        for separator in ("\n", " "):
            at = text.rfind(separator, cut // 2, cut)
            if at > 0:
                cut = at + 1
                break
        chunks.append(text[:cut].rstrip())
        text = text[cut:]
    return [*chunks, text] if text.strip() or not chunks else chunks


def _length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2
