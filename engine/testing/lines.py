"""A conversation as lines of text: what the Chat driver shows of the conversation so far, and the
lines transcript files are written in (see convoflow.testing.transcripts for the format)."""

from __future__ import annotations

import json
from typing import Any

from convoflow.messages import Media, Message

INDENT = "     "
"""Continuation lines of a bot message over several lines (as wide as `bot: `)."""


def said(message: Message) -> str:
    """A bot message as `Chat.replies` holds it: its text, or `[image: SOURCE] caption`."""
    if isinstance(message, Media):
        return f"[{message.kind}: {message.source}]" + (f" {message.caption}" if message.caption else "")
    return message.text


def bot_lines(message: Message) -> list[str]:
    """`bot: text` (continued on indented lines), then `buttons: A | B` when it shows buttons."""
    first, *rest = said(message).split("\n")
    lines = [f"bot: {first}".rstrip(), *(f"{INDENT}{line}".rstrip() for line in rest)]
    if not isinstance(message, Media) and message.options:
        lines.append("buttons: " + " | ".join(option.label for option in message.options))
    return lines


def you(text: str) -> str:
    return f"you: {text}"


def you_press(label: str) -> str:
    return f"you press: {label}"


def you_send(kind: str, source: str, caption: str = "") -> str:
    return f"you send {kind}: {source}" + (f" {caption}" if caption else "")


def wait_line(seconds: float) -> str:
    for unit, size in (("days", 86_400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"wait {count} {unit if count != 1 else unit[:-1]}"
    return f"wait {seconds:g} second{'s' if seconds != 1 else ''}"


def event_line(name: str, data: Any) -> str:
    return f"event {name}" + ("" if data is None else f" {json.dumps(data, ensure_ascii=False)}")


DONE = "done"
"""The line after a turn that ended the conversation."""
