"""The web channel's payloads, both ways: a posted message as an `Incoming`, a reply as the JSON the
page shows (and as the entry the reply log keeps). Pure: no I/O here."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from convoflow.buttons import ButtonRef, decode_button
from convoflow.messages import VIA, Incoming, Reply, SessionKey, message_to_dict
from convoflow.types import JSON

CHANNEL = "web"
MESSAGE_FIELDS = frozenset({"token", "text", "button", "id"})
MAX_ID = 128
"""Longest client message id."""


class BadRequest(Exception):
    """Malformed input (answered 400, nothing changed); `field` names the culprit, if one."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class TooLarge(Exception):
    """A body over the web channel's limit (answered 413)."""


@dataclass(frozen=True)
class Posted:
    """A message as the page posts it: typed `text`, or a pressed `button` (a `#SEQ.INDEX`
    reference to an option of a reply), and the client's id for it."""

    id: str
    text: str | None = None
    button: ButtonRef | None = None


async def json_body(request: web.Request, max_bytes: int) -> dict[str, Any]:
    """The request's JSON object. Raises TooLarge, BadRequest."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise TooLarge(f"the body is over {max_bytes} bytes")
    raw = await request.content.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise TooLarge(f"the body is over {max_bytes} bytes")
    try:
        body = json.loads(raw or b"{}", parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise BadRequest("the body is not JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the body is not a JSON object")
    return body


def posted(body: dict[str, Any], max_text: int) -> Posted:
    """The message a body of POST /web/messages carries. Raises BadRequest."""
    unknown = sorted(set(body) - MESSAGE_FIELDS)
    if unknown:
        raise BadRequest(f"unknown field {unknown[0]!r}", unknown[0])
    message_id = body.get("id")
    if not isinstance(message_id, str) or not 0 < len(message_id) <= MAX_ID or not message_id.isprintable():
        raise BadRequest(f"id must be a string of 1-{MAX_ID} printable characters (the client's message id)", "id")
    text, button = body.get("text"), body.get("button")
    if (text is None) == (button is None):
        raise BadRequest("send either text or button", "text")
    if text is not None:
        if not isinstance(text, str) or not text.strip() or len(text) > max_text:
            raise BadRequest(f"text must be a non-empty string of at most {max_text} characters", "text")
        return Posted(message_id, text=text)
    try:
        reference = decode_button(button) if isinstance(button, str) and button.startswith("#") else None
    except ValueError:
        reference = None
    if not isinstance(reference, ButtonRef):
        raise BadRequest("button must be the button value of a reply's option (#SEQ.INDEX)", "button")
    return Posted(message_id, button=reference)


def incoming(key: SessionKey, message: Posted, user: str | None) -> Incoming:
    """The update a posted message is. Text starting with `/` is a command (`/start`, `/cancel`)."""
    address: dict[str, JSON] = {VIA: CHANNEL}
    update = f"web:{message.id}"
    if message.button is not None:
        return Incoming(key, update, "button", user=user, address=address, button=message.button)
    text = message.text or ""
    if text.startswith("/"):
        return Incoming(key, update, "command", text=text, user=user, address=address)
    return Incoming(key, update, "text", text=text, user=user, address=address)


def log_entry(reply: Reply, turn: str | None = None, said: str | None = None) -> dict[str, Any]:
    """What the reply log keeps of a delivered reply: its seq and message, and for a reply to a
    posted message, that message's id (`turn`) and, on the turn's first reply, what was said."""
    entry: dict[str, Any] = {"seq": reply.seq, "message": message_to_dict(reply.message)}
    if turn is not None:
        entry["turn"] = turn
    if said is not None:
        entry["said"] = said
    return entry


def shown(entry: dict[str, Any]) -> dict[str, JSON]:
    """A logged reply as the page gets it: `seq`; `text` with `buttons` (each a `label` and the
    `button` value to post), or `media` ("image" or "file") with `source` and `caption`; and
    `said`, what the visitor said that this answers (on the first reply of a turn), and `turn`, the
    id of the message it answers."""
    seq, message = entry["seq"], entry["message"]
    data: dict[str, JSON] = {"seq": seq}
    if "media" in message:
        data.update(media=message["media"], source=message["source"], caption=message.get("caption", ""))
    else:
        data["text"] = message["text"]
        options = message.get("options") or []
        if options:
            data["buttons"] = [{"label": label, "button": f"#{seq}.{index}"} for index, (label, _) in enumerate(options)]
    for name in ("said", "turn"):
        if name in entry:
            data[name] = entry[name]
    return data


def option_label(entry: dict[str, Any], index: int) -> str | None:
    options = entry["message"].get("options") or []
    return str(options[index][0]) if 0 <= index < len(options) else None


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")
