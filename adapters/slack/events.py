"""Slack payloads as `Incoming` updates: which session they belong to, and how they de-duplicate.

Session partitions follow Slack's scoping: `slack:<enterprise or ->:<team>:<channel>` for a direct
message conversation, plus `:<thread_ts>` for a conversation in a channel thread. A mention in a
channel starts a conversation in the thread of that mention; later messages in that thread belong
to it without a mention while it runs (adapters.slack decides that from the stored session).

Incoming ids are `slack:<team>:<channel>:<ts>` for messages (the same whether Slack delivers the
message as `app_mention` or as `message.*`, and on every retry) and `slack:<team>:<channel>:<action_ts>`
for button clicks, so the Engine's seen ids drop every repeat, in any process.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from convoflow.buttons import ButtonRef, decode_button
from convoflow.messages import Incoming, IncomingKind, Media, MediaKind, SessionKey
from convoflow.types import JSON

from convoflow.adapters.slack.render import unescape

USER_SUBTYPES = frozenset({"file_share", "thread_broadcast"})
"""Message subtypes a person sends; every other subtype (edits, deletions, joins, bot messages,
channel changes) is not a turn."""


@dataclass(frozen=True)
class Workspace:
    """Where a payload came from, as Bolt's authorization resolved it."""

    team: str | None
    enterprise: str | None = None
    bot_user: str | None = None
    """The bot's own user id: its messages are skipped and its mention is cut from text."""


@dataclass(frozen=True)
class Translated:
    incoming: Incoming
    in_thread: bool
    """A message in a channel thread without a mention: a turn only while a conversation runs in
    that thread."""


def partition(workspace: Workspace, channel: str, thread: str | None = None) -> str:
    parts = ["slack", workspace.enterprise or "-", workspace.team or "-", channel]
    return ":".join([*parts, thread] if thread else parts)


def from_message(event: dict[str, Any], workspace: Workspace, app: str) -> Translated | None:
    """A `message` or `app_mention` event as an update, or None when it is not one for us."""
    if event.get("bot_id") or (event.get("subtype") and event["subtype"] not in USER_SUBTYPES):
        return None
    user, channel, ts = event.get("user"), event.get("channel"), event.get("ts")
    if not (user and channel and ts) or user == workspace.bot_user:
        return None
    thread = event.get("thread_ts")
    address: dict[str, JSON] = {"channel": channel}
    in_thread = False
    if event.get("type") == "app_mention":
        root = thread or ts
        key = partition(workspace, channel, root)
        address["thread_ts"] = root
    elif event.get("channel_type") == "im":
        key = partition(workspace, channel)
    elif thread and thread != ts:
        key = partition(workspace, channel, thread)
        address["thread_ts"] = thread
        in_thread = True
    else:
        return None  # a top-level channel message: a mention of the bot arrives as app_mention
    text = unescape(_without_mention(event.get("text") or "", workspace.bot_user)).strip()
    kind: IncomingKind = "command" if text.startswith("/") else "text"
    media = _media(event.get("files") or [], text)
    if media is not None:
        kind = "media"
    incoming = Incoming(
        SessionKey(key, app), f"slack:{workspace.team or '-'}:{channel}:{ts}", kind, text,
        user=user, address=address, media=media,
    )
    return Translated(incoming, in_thread)


def from_action(body: dict[str, Any], workspace: Workspace, app: str) -> Incoming | None:
    """A click on one of our buttons (`block_actions`) as an update, or None for a payload we
    never made."""
    actions = body.get("actions") or []
    container = body.get("container") or {}
    channel = (body.get("channel") or {}).get("id") or container.get("channel_id")
    user = (body.get("user") or {}).get("id")
    if not (actions and channel and user) or "value" not in actions[0] or "action_ts" not in actions[0]:
        return None
    try:
        decoded = decode_button(actions[0]["value"])
    except ValueError:
        return None
    address: dict[str, JSON] = {"channel": channel}
    if channel.startswith("D"):  # a direct message conversation: one session, no threads
        key = partition(workspace, channel)
    else:
        thread = container.get("thread_ts") or (body.get("message") or {}).get("thread_ts")
        key = partition(workspace, channel, thread)
        if thread:
            address["thread_ts"] = thread
    return Incoming(
        SessionKey(key, app), f"slack:{workspace.team or '-'}:{channel}:{actions[0]['action_ts']}", "button",
        value=None if isinstance(decoded, ButtonRef) else decoded,
        button=decoded if isinstance(decoded, ButtonRef) else None,
        user=user, address=address,
    )


def _without_mention(text: str, bot_user: str | None) -> str:
    return re.sub(rf"<@{re.escape(bot_user)}(\|[^>]*)?>", "", text) if bot_user else text


def _media(files: list[dict[str, Any]], caption: str) -> Media | None:
    """The first shared file: `source` is its `url_private` (downloadable with the bot token),
    or its file id when Slack withholds the file's details."""
    if not files:
        return None
    first = files[0]
    source = first.get("url_private") or first.get("id")
    if not source:
        return None
    kind: MediaKind = "image" if str(first.get("mimetype", "")).startswith("image/") else "file"
    return Media(kind, source, caption)
