"""Channel-neutral values: what a flow sends, what a user sends back, and whose session it is."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from convoflow.buttons import ButtonRef
from convoflow.replay import require_json
from convoflow.types import JSON

MediaKind = Literal["image", "file"]
IncomingKind = Literal["text", "button", "command", "media", "timer", "event", "start"]
"""What a user sends (text, a button press, a command, media), or what moves a session without
them (convoflow.wakeups): a timer firing, an outside event, a proactive start."""


@dataclass(frozen=True)
class Option:
    """One answer offered as a button. `value` is what the flow receives (the label when omitted)."""

    label: str
    value: JSON = None

    @property
    def answer(self) -> JSON:
        return self.label if self.value is None else self.value


@dataclass(frozen=True)
class Text:
    text: str
    options: tuple[Option, ...] = ()


@dataclass(frozen=True)
class Media:
    """An image or file: `source` is a URL or a platform file id."""

    kind: MediaKind
    source: str
    caption: str = ""


Message = Text | Media


def as_message(value: Any) -> Message:
    """Accept what flows send: a str, a Text or a Media, checked here so a malformed message fails
    in the flow's turn (with the usual apology) rather than later in a store or a channel."""
    if isinstance(value, str):
        return Text(value)
    if isinstance(value, Text):
        _expect_str(value.text, "Text.text")
        for option in value.options:
            if not isinstance(option, Option):
                raise TypeError(f"Text.options holds {type(option).__name__!r}; use convoflow.Option")
            _expect_str(option.label, "Option.label")
            require_json(option.value, ("send_message",), f"Option {option.label!r}")  # a button carries it
        return value
    if isinstance(value, Media):
        if value.kind not in ("image", "file"):
            raise TypeError(f"Media.kind is {value.kind!r}; use 'image' or 'file'")
        _expect_str(value.source, "Media.source")
        _expect_str(value.caption, "Media.caption")
        return value
    raise TypeError(
        f"send_message() got {type(value).__name__!r}; send a str, convoflow.Text or convoflow.Media"
    )


def _expect_str(value: Any, what: str) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {type(value).__name__!r}")


def message_to_dict(message: Message) -> dict[str, JSON]:
    if isinstance(message, Media):
        return {"media": message.kind, "source": message.source, "caption": message.caption}
    data: dict[str, JSON] = {"text": message.text}
    if message.options:
        data["options"] = [[o.label, o.value] for o in message.options]
    return data


def message_from_dict(data: dict[str, Any]) -> Message:
    if "media" in data:
        return Media(data["media"], data["source"], data.get("caption", ""))
    return Text(data["text"], tuple(Option(label, value) for label, value in data.get("options", ())))


@dataclass(frozen=True, order=True)
class SessionKey:
    """One conversation (`app`) with one user or chat (`partition`), e.g. `telegram:7:42` / `guessbot`."""

    partition: str
    app: str = "default"

    def __post_init__(self) -> None:
        if not self.partition or not self.app:
            raise ValueError("SessionKey needs a non-empty partition and app")
        if "/" in self.app:
            raise ValueError(f"app id {self.app!r} may not contain '/'")

    def __str__(self) -> str:
        return f"{self.partition}/{self.app}"

    @classmethod
    def parse(cls, text: str) -> SessionKey:
        partition, sep, app = text.rpartition("/")
        if not sep:
            raise ValueError(f"session key {text!r} is not of the form PARTITION/APP")
        return cls(partition, app)


@dataclass(frozen=True)
class Incoming:
    """One update from a user, already translated from the platform.

    `id` is platform-unique (Telegram update_id, Slack event_id) and de-duplicates redeliveries.
    `address` says where replies go (chat, channel, thread); it is stored with the session.
    A button press carries its answer in `value`, or, when the answer was too long for the
    platform's button payload, a `button` reference the Engine resolves (see engine.buttons).
    """

    key: SessionKey
    id: str
    kind: IncomingKind = "text"
    text: str = ""
    value: JSON = None
    user: str | None = None
    address: dict[str, JSON] = field(default_factory=dict)
    media: Media | None = None
    button: ButtonRef | None = None

    @property
    def response(self) -> JSON:
        """What `get_client_response()` returns to the flow for this update."""
        if self.kind == "button":
            return self.value
        if self.kind == "media" and self.media is not None:
            return {"media": self.media.kind, "source": self.media.source, "caption": self.media.caption}
        return self.text


@dataclass(frozen=True)
class Reply:
    """A message on its way to a user: what to send and where. `seq` orders a session's replies.

    The address carries everything its channel needs to deliver it, with no update in hand (the
    sweep, timers): its `via` names the channel, and the channel puts in the rest (chat, thread,
    workspace) when it makes the update's `Incoming`.
    """

    seq: int
    message: Message
    address: dict[str, JSON]
    key: SessionKey | None = None
    """The session the reply belongs to."""

    @property
    def channel(self) -> str:
        return channel_of(self.address, self.key)


VIA = "via"
"""The address field naming the channel that delivers to it."""


def channel_of(address: dict[str, JSON], key: SessionKey | None) -> str:
    """The name of the channel that delivers to `address`.

    Addresses stored before channels named themselves in them (and those of updates made without a
    channel, in tests) have no `via`: for those, and only here, the first part of the session's
    partition names the channel (`telegram:7:42` is Telegram's).
    """
    via = address.get(VIA)
    if isinstance(via, str):
        return via
    return key.partition.partition(":")[0] if key is not None else ""
