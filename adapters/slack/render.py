"""Replies as Slack messages: mrkdwn-escaped text, options as Block Kit buttons, images and files.

Only data is built here (the arguments of `chat.postMessage` and `chat.update`); nothing is sent.
"""

from __future__ import annotations

import re
from typing import Any

from convoflow.buttons import encode_button
from convoflow.messages import Media, Reply, Text

ACTION_PREFIX = "convoflow:"
"""Every button we render has an action_id `convoflow:<seq>:<index>`; clicks are matched by it."""
ACTION_PATTERN = re.compile(r"^convoflow:\d+:\d+$")

BUTTON_VALUE_LIMIT = 2000  # Slack's cap on a button's value
BUTTON_TEXT_LIMIT = 75  # ... on a button's label
BUTTONS_PER_BLOCK = 25  # ... on the elements of one actions block
SECTION_TEXT_LIMIT = 3000  # ... on a section block's text

_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_UNESCAPES = {value: key for key, value in _ESCAPES.items()}


def escape(text: str) -> str:
    """User text as Slack mrkdwn: `&`, `<` and `>` escaped, so nothing becomes a link or mention."""
    return re.sub(r"[&<>]", lambda m: _ESCAPES[m[0]], text)


def unescape(text: str) -> str:
    """Message text from Slack back to what the user typed (Slack escapes the same three)."""
    return re.sub(r"&(?:amp|lt|gt);", lambda m: _UNESCAPES[m[0]], text)


def post_arguments(reply: Reply) -> dict[str, Any]:
    """`chat.postMessage` arguments for a reply, addressed to its channel (and thread)."""
    arguments: dict[str, Any] = {"channel": reply.address["channel"]}
    thread = reply.address.get("thread_ts")
    if thread:
        arguments["thread_ts"] = thread
    message = reply.message
    if isinstance(message, Media):
        arguments.update(_media(message))
    elif message.options:
        arguments["text"] = escape(message.text)
        arguments["blocks"] = _question(message, reply.seq)
    else:
        arguments["text"] = escape(message.text)
    return arguments


def answered_blocks(blocks: list[dict[str, Any]], user: str, label: str) -> list[dict[str, Any]]:
    """The blocks of a question once answered: its buttons replaced by who chose what."""
    kept = [block for block in blocks if block.get("type") != "actions"]
    chosen = {"type": "mrkdwn", "text": f"<@{user}> chose {escape(label)}" if user else f"Chose {escape(label)}"}
    return [*kept, {"type": "context", "elements": [chosen]}]


def _question(message: Text, seq: int) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": chunk}} for chunk in _chunks(message.text)
    ]
    buttons = [
        {
            "type": "button",
            "action_id": f"{ACTION_PREFIX}{seq}:{index}",
            "text": {"type": "plain_text", "text": _label(option.label), "emoji": True},
            "value": encode_button(option.answer, seq, index, BUTTON_VALUE_LIMIT),
        }
        for index, option in enumerate(message.options)
    ]
    for start in range(0, len(buttons), BUTTONS_PER_BLOCK):
        blocks.append({"type": "actions", "elements": buttons[start:start + BUTTONS_PER_BLOCK]})
    return blocks


def _media(media: Media) -> dict[str, Any]:
    """An image becomes an image block; a file becomes a link. A source that is not a URL is taken
    for a Slack file id (what a user's upload arrives as)."""
    is_url = media.source.startswith(("https://", "http://"))
    if media.kind == "image":
        image: dict[str, Any] = {"type": "image", "alt_text": (media.caption or "image")[:2000]}
        if is_url:
            image["image_url"] = media.source
        else:
            image["slack_file"] = {"id": media.source}
        if media.caption:
            image["title"] = {"type": "plain_text", "text": media.caption[:2000]}
        return {"text": escape(media.caption) or "image", "blocks": [image]}
    if is_url:
        label = escape(media.caption or media.source.rstrip("/").rsplit("/", 1)[-1] or media.source)
        return {"text": f"<{media.source.replace('|', '%7C').replace('>', '%3E')}|{label}>"}
    caption = escape(media.caption)
    return {"text": f"{caption} (file {escape(media.source)})" if caption else f"file {escape(media.source)}"}


def _label(label: str) -> str:
    label = label or "-"
    return label if len(label) <= BUTTON_TEXT_LIMIT else label[:BUTTON_TEXT_LIMIT - 1] + "\u2026"


def _chunks(text: str) -> list[str]:
    """Escaped text cut into section-sized pieces, never inside an escape."""
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    for char in text:
        piece = _ESCAPES.get(char, char)
        if size + len(piece) > SECTION_TEXT_LIMIT:
            chunks.append("".join(current))
            current, size = [], 0
        current.append(piece)
        size += len(piece)
    if current:
        chunks.append("".join(current))
    return chunks
