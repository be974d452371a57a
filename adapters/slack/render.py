"""Replies as Slack messages: mrkdwn-escaped text, options as Block Kit buttons, images and files,
split into as many messages as Slack's limits need.

Only data is built here (the arguments of `chat.postMessage` and `chat.update`); nothing is sent.
Lengths are measured as Slack sees them, after escaping (an `&` takes five characters), in UTF-16
units (at least Slack's count, however it counts). Cuts follow `convoflow.adapters.text_parts`:
whole grapheme clusters, at a line break or space where one is near, never inside an escape, and
no part that shows nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterator

from convoflow.adapters.text_parts import split_text, utf16_units
from convoflow.buttons import encode_button
from convoflow.messages import Media, Reply, Text

ACTION_PREFIX = "convoflow:"
"""Every button we render has an action_id `convoflow:<seq>:<index>`; clicks are matched by it."""
ACTION_PATTERN = re.compile(r"^convoflow:\d+:\d+$")

TEXT_LIMIT = 40_000  # Slack cuts a message's text after this
SMALL_TEXT_LIMIT = 4_000  # ... and advises at most this: the size a refused message is re-sent in
BLOCKS_PER_MESSAGE = 50  # Slack's cap on the blocks of one message
BLOCKS_TEXT_BUDGET = 8_000
"""The text (and button values) we put into one message's blocks. Slack refuses more than about
12,000 across a message's blocks with msg_blocks_too_long (undocumented; seen from 11,300): this
leaves room for the blocks' own structure."""
BUTTON_VALUE_LIMIT = 2000  # Slack's cap on a button's value
BUTTON_TEXT_LIMIT = 75  # ... on a button's label
BUTTONS_PER_BLOCK = 25  # ... on the elements of one actions block
SECTION_TEXT_LIMIT = 3000  # ... on a section block's text
IMAGE_TEXT_LIMIT = 2000  # ... on an image block's alt_text and title

_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_UNESCAPES = {value: key for key, value in _ESCAPES.items()}


@dataclass(frozen=True)
class Post:
    """One message: its `chat.postMessage` arguments, and the smaller plain-text messages that say
    the same, to send instead when Slack refuses it for its blocks or length (none when it is
    already as small as it gets)."""

    arguments: dict[str, Any]
    smaller: tuple[dict[str, Any], ...] = ()


def escape(text: str) -> str:
    """User text as Slack mrkdwn: `&`, `<` and `>` escaped, so nothing becomes a link or mention."""
    return re.sub(r"[&<>]", lambda m: _ESCAPES[m[0]], text)


def unescape(text: str) -> str:
    """Message text from Slack back to what the user typed (Slack escapes the same three)."""
    return re.sub(r"&(?:amp|lt|gt);", lambda m: _UNESCAPES[m[0]], text)


def escaped_length(text: str) -> int:
    """The length of `escape(text)`, in UTF-16 units."""
    return utf16_units(text) + 4 * text.count("&") + 3 * (text.count("<") + text.count(">"))


def posts(reply: Reply) -> list[Post]:
    """The messages that show a reply, in order, addressed to its channel (and thread); none for
    a text that shows nothing."""
    where: dict[str, Any] = {"channel": reply.address["channel"]}
    thread = reply.address.get("thread_ts")
    if thread:
        where["thread_ts"] = thread
    message = reply.message
    if isinstance(message, Media):
        return _media(where, message)
    if message.options:
        return list(_question(where, message, reply.seq))
    return [_text_post(where, part) for part in split_text(message.text, TEXT_LIMIT, escaped_length)]


def answered_blocks(blocks: list[dict[str, Any]], user: str, label: str) -> list[dict[str, Any]]:
    """The blocks of a question once answered: its buttons replaced by who chose what."""
    kept = [block for block in blocks if block.get("type") != "actions"]
    chosen = {"type": "mrkdwn", "text": f"<@{user}> chose {escape(label)}" if user else f"Chose {escape(label)}"}
    return [*kept, {"type": "context", "elements": [chosen]}]


def _text_post(where: dict[str, Any], text: str) -> Post:
    """A plain message of `text` (within TEXT_LIMIT once escaped), and the same in small parts."""
    smaller = () if escaped_length(text) <= SMALL_TEXT_LIMIT else _plain(where, text)
    return Post({**where, "text": escape(text)}, smaller)


def _plain(where: dict[str, Any], text: str) -> tuple[dict[str, Any], ...]:
    return tuple({**where, "text": escape(part)} for part in split_text(text, SMALL_TEXT_LIMIT, escaped_length))


@dataclass(frozen=True)
class _Block:
    block: dict[str, Any]
    size: int
    """The text (and values) it puts into its message, as counted against BLOCKS_TEXT_BUDGET."""
    plain: str
    """What it says as plain text: a section's text, or its buttons as a numbered list."""
    is_section: bool


def _question(where: dict[str, Any], message: Text, seq: int) -> Iterator[Post]:
    """Sections of the text, then the options as buttons, packed into messages of at most
    BLOCKS_PER_MESSAGE blocks and BLOCKS_TEXT_BUDGET of text each. Re-sent smaller, a message's
    buttons become a numbered list (an answer may always be typed: its label or its number)."""
    blocks = [
        _Block({"type": "section", "text": {"type": "mrkdwn", "text": escape(part)}}, escaped_length(part), part, True)
        for part in split_text(message.text, SECTION_TEXT_LIMIT, escaped_length)
    ]
    blocks += _actions(message, seq)
    batch: list[_Block] = []
    used = 0
    for block in blocks:
        if batch and (len(batch) == BLOCKS_PER_MESSAGE or used + block.size > BLOCKS_TEXT_BUDGET):
            yield _blocks_post(where, batch)
            batch, used = [], 0
        batch.append(block)
        used += block.size
    if batch:
        yield _blocks_post(where, batch)


def _actions(message: Text, seq: int) -> list[_Block]:
    """Actions blocks of at most BUTTONS_PER_BLOCK buttons and BLOCKS_TEXT_BUDGET of text each."""
    blocks: list[_Block] = []
    buttons: list[dict[str, Any]] = []
    lines: list[str] = []
    size = 0

    def close() -> None:
        blocks.append(_Block({"type": "actions", "elements": buttons}, size, "\n".join(lines), False))

    for index, option in enumerate(message.options):
        label = _label(option.label)
        value = encode_button(option.answer, seq, index, BUTTON_VALUE_LIMIT)
        button = {
            "type": "button",
            "action_id": f"{ACTION_PREFIX}{seq}:{index}",
            "text": {"type": "plain_text", "text": label, "emoji": True},
            "value": value,
        }
        cost = utf16_units(label) + utf16_units(value)
        if buttons and (len(buttons) == BUTTONS_PER_BLOCK or size + cost > BLOCKS_TEXT_BUDGET):
            close()
            buttons, lines, size = [], [], 0
        buttons.append(button)
        lines.append(f"{index + 1}) {option.label}")
        size += cost
    if buttons:
        close()
    return blocks


def _blocks_post(where: dict[str, Any], batch: list[_Block]) -> Post:
    sections = [block.plain for block in batch if block.is_section]
    if sections:
        fallback = escape("".join(sections))
    else:  # buttons only: the notification lists them
        labels = ", ".join(block.plain for block in batch)
        fallback = escape(split_text(labels.replace("\n", ", "), SECTION_TEXT_LIMIT, escaped_length)[0])
    plain = "\n".join(["".join(sections), *(block.plain for block in batch if not block.is_section)]).lstrip("\n")
    return Post({**where, "text": fallback, "blocks": [block.block for block in batch]}, _plain(where, plain))


def _media(where: dict[str, Any], media: Media) -> list[Post]:
    """An image becomes an image block (re-sent smaller: a link); a file becomes a link. A source
    that is not a URL is taken for a Slack file id (what a user's upload arrives as). A caption
    too long for one message continues in plain messages after it."""
    caption = split_text(media.caption, SECTION_TEXT_LIMIT, escaped_length)
    head, rest = (caption[0], "".join(caption[1:])) if caption else ("", "")
    is_url = media.source.startswith(("https://", "http://"))
    if is_url:
        label = escape(head or media.source.rstrip("/").rsplit("/", 1)[-1] or media.source)
        link = f"<{media.source.replace('|', '%7C').replace('>', '%3E')}|{label}>"
    else:
        link = f"{escape(head)} (file {escape(media.source)})" if head else f"file {escape(media.source)}"
    first = Post({**where, "text": link})
    if media.kind == "image":
        image: dict[str, Any] = {"type": "image", "alt_text": _cut(head, IMAGE_TEXT_LIMIT) or "image"}
        if is_url:
            image["image_url"] = media.source
        else:
            image["slack_file"] = {"id": media.source}
        if head:
            image["title"] = {"type": "plain_text", "text": _cut(head, IMAGE_TEXT_LIMIT)}
        first = Post({**where, "text": escape(head) or "image", "blocks": [image]}, (first.arguments,))
    return [first, *(_text_post(where, part) for part in split_text(rest, TEXT_LIMIT, escaped_length))]


def _label(label: str) -> str:
    label = label or "-"
    if utf16_units(label) <= BUTTON_TEXT_LIMIT:
        return label
    return _cut(label, BUTTON_TEXT_LIMIT - 1) + "\u2026"


def _cut(text: str, limit: int) -> str:
    """The start of `text` that fits `limit` UTF-16 units, in whole grapheme clusters."""
    parts = split_text(text, limit)
    return parts[0] if parts else text[:limit]
