"""Slack payloads as `Incoming` updates: which session they belong to, and how they de-duplicate.

Session partitions follow Slack's scoping: `slack:<enterprise or ->:<team>:<channel>` for a direct
message conversation, plus `:<thread_ts>` for a conversation in a channel thread. A mention in a
channel starts a conversation in the thread of that mention; later messages in that thread belong
to it without a mention while it runs (adapters.slack decides that from the stored session).

Requests are read here too, by one status table (see adapters.webhooks): a body must be signed as
Slack signs it, then be JSON or form data (else 400), then hold a payload Bolt and this module can
read, with the types Slack sends (else it is acknowledged unhandled).

Incoming ids are `slack:<team>:<channel>:<ts>` for messages (the same whether Slack delivers the
message as `app_mention` or as `message.*`, and on every retry; a share's second and later files
add `:<n>`), `slack:<team>:<channel>:<action_ts>` for button clicks and
`slack:<team>:<channel>:command:<trigger_id>` for slash commands, so the Engine's seen ids drop
every repeat, in any process.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Any, Collection, Mapping, TypeVar
from urllib.parse import parse_qsl

from slack_bolt.request.async_request import AsyncBoltRequest

from convoflow.buttons import ButtonRef, decode_button
from convoflow.messages import Incoming, IncomingKind, Media, MediaKind, SessionKey
from convoflow.types import JSON

from convoflow.adapters.slack.render import unescape
from convoflow.adapters.webhooks import UnhandledReason

T = TypeVar("T")

FORM = "application/x-www-form-urlencoded"
SIGNATURE_SECONDS = 5 * 60
"""Slack's requests are signed with their time; an older signature is a replay (Bolt's limit too)."""
SLACK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")
"""What Slack's ids (teams, channels, users) and timestamps look like; they become session keys."""
CONTEXT_IDS = ("enterprise_id", "team_id", "user_id", "actor_enterprise_id", "actor_team_id", "actor_user_id",
               "channel_id", "thread_ts")
"""Ids Bolt reads out of a payload (from wherever they may sit) into its context."""

USER_SUBTYPES = frozenset({"file_share", "thread_broadcast"})
"""Message subtypes a person sends; every other subtype (edits, deletions, joins, bot messages,
channel changes) is not a turn."""


class UnreadableBody(ValueError):
    """Neither JSON nor form data (answered 400: Slack never sends such a body)."""


class MalformedPayload(ValueError):
    """Signed and readable, but not a payload this app can take (acknowledged, never retried).
    `update` is its event_id (or trigger_id) when it has one."""

    def __init__(self, message: str, reason: UnhandledReason = "malformed", update: str | None = None) -> None:
        super().__init__(message)
        self.reason: UnhandledReason = reason
        self.update = update


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
    more: tuple[Incoming, ...] = ()
    """The second and later files of a share of several, each an update of its own after `incoming`
    (as Telegram delivers an album: one message per photo)."""


def partition(workspace: Workspace, channel: str, thread: str | None = None) -> str:
    parts = ["slack", workspace.enterprise or "-", workspace.team or "-", channel]
    return ":".join([*parts, thread] if thread else parts)


def signed(secret: str, body: bytes, headers: Mapping[str, str], now: float) -> bool:
    """Whether Slack signed this body: `X-Slack-Signature` is `v0=HMAC-SHA256(secret,
    "v0:{timestamp}:{body}")` over the body's bytes, and `X-Slack-Request-Timestamp` is recent."""
    stamp, signature = headers.get("X-Slack-Request-Timestamp", ""), headers.get("X-Slack-Signature", "")
    if not (stamp.isascii() and stamp.isdigit()) or abs(now - int(stamp)) > SIGNATURE_SECONDS:
        return False
    expected = hmac.new(secret.encode(), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(f"v0={expected}".encode(), signature.encode("utf-8", "surrogateescape"))


@dataclass(frozen=True)
class Body:
    text: str
    payload: dict[str, Any]
    """The JSON object it holds (the body itself, or its form's `payload`), or its form fields."""


def readable(body: bytes, content_type: str) -> Body:
    """The body, once it is what Slack sends: JSON (events), or form data whose `payload` is JSON
    (interactivity), told apart as Bolt tells them. Raises UnreadableBody, or MalformedPayload
    when the JSON is not an object."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise UnreadableBody("body is not UTF-8 text") from None
    if content_type == "application/json" or text.startswith("{"):
        return Body(text, _json_object(text, "body"))
    if content_type != FORM:
        raise UnreadableBody("body is neither JSON nor form data")
    fields = dict(parse_qsl(text, keep_blank_values=True))
    return Body(text, _json_object(fields["payload"], "the form's payload") if "payload" in fields else fields)


def bolt_request_for(body: Body, query: str, headers: Mapping[str, str]) -> AsyncBoltRequest:
    """Bolt's request for a readable body, once Bolt and this module can take the payload in it.
    Raises MalformedPayload."""
    update = update_id(body.payload)
    try:
        request = AsyncBoltRequest(body=body.text, query=query, headers=dict(headers))
        _check(request.body, request.context)
    except MalformedPayload as error:
        raise MalformedPayload(str(error), error.reason, update) from None
    except Exception as error:  # noqa: BLE001 - Bolt reads ids from wherever they may sit, trusting their types
        raise MalformedPayload(f"Bolt cannot read it ({type(error).__name__}: {error})", update=update) from None
    return request


def _check(body: dict[str, Any], context: Mapping[str, Any]) -> None:
    """What Bolt (its context, middleware and listener matching) and this module's translations
    read must have the shapes and types Slack sends."""
    for name in CONTEXT_IDS:
        _id(context, name)
    _expect(context, is_enterprise_install=bool)
    workspace = Workspace(context.get("team_id"), context.get("enterprise_id"))
    kind = _field(body, "type", str)
    if "event" in body:  # Bolt takes an `event` that is there, even null, for an object
        event = _object(body["event"], "event")
        event_type = _field(event, "type", str)
        if kind == "event_callback" and event_type in ("message", "app_mention"):
            from_message(event, workspace, "check")
        if event_type == "tokens_revoked":  # Bolt's own listener (OAuth installs) reads these
            tokens = _field(event, "tokens", dict) or {}
            _ids(tokens, "oauth")
            _ids(tokens, "bot")
    if kind == "block_actions" and "actions" in body:  # Bolt matches listeners by actions[0].action_id
        actions = _field(body, "actions", list)
        if not actions or not isinstance(actions[0], dict) or not isinstance(actions[0].get("action_id"), str):
            raise MalformedPayload("actions has no first action with an action_id")
        from_action(body, workspace, "check")


def from_message(event: dict[str, Any], workspace: Workspace, app: str) -> Translated | None:
    """A `message` or `app_mention` event as an update, or None when it is not one for us.
    Raises MalformedPayload for fields of the wrong type."""
    subtype = _field(event, "subtype", str)
    if event.get("bot_id") or (subtype and subtype not in USER_SUBTYPES):
        return None
    user, channel, ts, thread = _id(event, "user"), _id(event, "channel"), _id(event, "ts"), _id(event, "thread_ts")
    event_type, channel_type = _field(event, "type", str), _field(event, "channel_type", str)
    text = _field(event, "text", str) or ""
    files = [_object(item, "files[]") for item in _field(event, "files", list) or []]
    if not (user and channel and ts) or user == workspace.bot_user:
        return None
    address: dict[str, JSON] = {"channel": channel}
    in_thread = False
    if event_type == "app_mention":
        root = thread or ts
        key = partition(workspace, channel, root)
        address["thread_ts"] = root
    elif channel_type == "im":
        key = partition(workspace, channel)
    elif thread and thread != ts:
        key = partition(workspace, channel, thread)
        address["thread_ts"] = thread
        in_thread = True
    else:
        return None  # a top-level channel message: a mention of the bot arrives as app_mention
    text = unescape(_without_mention(text, workspace.bot_user)).strip()
    kind: IncomingKind = "command" if text.startswith("/") else "text"
    media = _media(files, text)
    if media:
        kind = "media"
    update = f"slack:{workspace.team or '-'}:{channel}:{ts}"
    incoming = Incoming(SessionKey(key, app), update, kind, text, user=user, address=address,
                        media=media[0] if media else None)
    more = tuple(Incoming(SessionKey(key, app), f"{update}:{n}", "media", "", user=user, address=address, media=m)
                 for n, m in enumerate(media[1:], 2))
    return Translated(incoming, in_thread, more)


def from_command(fields: Mapping[str, Any], workspace: Workspace, app: str, commands: Collection[str]) -> Incoming | None:
    """A slash command (`/guessbot help`) in a direct message with the app as an update: its first
    word names one of the bot's `commands` (`/help`), or it is the text typed (`/guessbot 5`
    answers 5); with no text it is `/start`. None outside a DM (a conversation in a channel
    starts with a mention). Raises MalformedPayload for ids that are not Slack's."""
    user, channel, trigger = _id(fields, "user_id"), _id(fields, "channel_id"), _id(fields, "trigger_id")
    text = (_field(fields, "text", str) or "").strip()
    if not (user and channel and trigger) or not channel.startswith("D"):
        return None
    word, _, rest = text.partition(" ")
    named = "/" + word.lstrip("/").casefold()
    if not text:
        text = "/start"
    elif named in commands:
        text = f"{named} {rest.strip()}".strip()
    kind: IncomingKind = "command" if text.startswith("/") else "text"
    return Incoming(SessionKey(partition(workspace, channel), app),
                    f"slack:{workspace.team or '-'}:{channel}:command:{trigger}", kind, text,
                    user=user, address={"channel": channel})


def from_action(body: dict[str, Any], workspace: Workspace, app: str) -> Incoming | None:
    """A click on one of our buttons (`block_actions`) as an update, or None for a payload we
    never made. Raises MalformedPayload for fields of the wrong type (also those the channel
    reads to replace the buttons: the message's ts, text and blocks, the button's label)."""
    actions = [_object(item, "actions[]") for item in _field(body, "actions", list) or []]
    container = _field(body, "container", dict) or {}
    message = _field(body, "message", dict) or {}
    channel = _id(_field(body, "channel", dict) or {}, "id") or _id(container, "channel_id")
    user = _id(_field(body, "user", dict) or {}, "id")
    thread = _id(container, "thread_ts") or _id(message, "thread_ts")
    action = actions[0] if actions else {}
    value, action_ts = _field(action, "value", str), _id(action, "action_ts")
    # What the channel reads to replace the buttons, checked with the rest.
    _id(message, "ts")
    _expect(message, text=str)
    [_object(block, "blocks[]") for block in _field(message, "blocks", list) or []]
    _expect(container, is_ephemeral=bool)
    _expect(action, action_id=str)
    _expect(_field(action, "text", dict) or {}, text=str)
    if not (channel and user and value is not None and action_ts):
        return None
    try:
        decoded = decode_button(value)
    except ValueError:
        return None
    address: dict[str, JSON] = {"channel": channel}
    if channel.startswith("D"):  # a direct message conversation: one session, no threads
        key = partition(workspace, channel)
    else:
        key = partition(workspace, channel, thread)
        if thread:
            address["thread_ts"] = thread
    return Incoming(
        SessionKey(key, app), f"slack:{workspace.team or '-'}:{channel}:{action_ts}", "button",
        value=None if isinstance(decoded, ButtonRef) else decoded,
        button=decoded if isinstance(decoded, ButtonRef) else None,
        user=user, address=address,
    )


def _without_mention(text: str, bot_user: str | None) -> str:
    return re.sub(rf"<@{re.escape(bot_user)}(\|[^>]*)?>", "", text) if bot_user else text


def _media(files: list[dict[str, Any]], caption: str) -> list[Media]:
    """Every shared file, the message's text as the first one's caption: `source` is its
    `url_private` (downloadable with the bot token), or its file id when Slack withholds the
    file's details."""
    found: list[Media] = []
    for file in files:
        source = _field(file, "url_private", str) or _field(file, "id", str)
        if source:
            kind: MediaKind = "image" if (_field(file, "mimetype", str) or "").startswith("image/") else "file"
            found.append(Media(kind, source, "" if found else caption))
    return found


def _json_object(text: str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError:
        raise UnreadableBody(f"{what} is not JSON") from None
    except RecursionError:
        raise UnreadableBody(f"{what} is nested too deeply to read") from None
    if not isinstance(data, dict):
        raise MalformedPayload(f"{what} is not a JSON object", "not_an_update")
    return data


def _field(data: Mapping[str, Any], name: str, kind: type[T]) -> T | None:
    """`data[name]`, None when absent or null; MalformedPayload when it is not a `kind`."""
    value = data.get(name)
    if value is None or isinstance(value, kind):
        return value
    raise MalformedPayload(f"{name} is {type(value).__name__}, not {kind.__name__}")


def _expect(data: Mapping[str, Any], **kinds: type) -> None:
    for name, kind in kinds.items():
        _field(data, name, kind)


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedPayload(f"{what} is {type(value).__name__}, not an object")
    return value


def _id(data: Mapping[str, Any], name: str) -> str | None:
    """A Slack id or timestamp, which becomes part of a session key."""
    return _slack_id(_field(data, name, str), name)


def _ids(data: Mapping[str, Any], name: str) -> None:
    for item in _field(data, name, list) or []:
        if not isinstance(item, str):
            raise MalformedPayload(f"{name} holds {type(item).__name__}, not ids")
        _slack_id(item, name)


def _slack_id(value: str | None, name: str) -> str | None:
    if value is None or value == "" or SLACK_ID.fullmatch(value):
        return value or None
    raise MalformedPayload(f"{name} {value[:80]!r} is not a Slack id")


def update_id(body: Any) -> str | None:
    """The payload's id for logs: its event_id, or the trigger_id of an interaction."""
    for name in ("event_id", "trigger_id"):
        value = body.get(name) if isinstance(body, dict) else None
        if isinstance(value, str):
            return value[:80]
    return None
