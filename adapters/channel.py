"""The seam between the host and its channels: what every channel implements, and how a reply
finds its channel.

A channel translates, in both directions: its platform's payloads into `Incoming` updates, which it
hands to the shared TurnRunner (convoflow.turn_runner: acknowledgement, retries, turns in flight), and
`Reply` objects into platform calls. It never reads sessions from the store: it asks the Engine. (The
web channel does keep its reply log in the store: for a web page, that log is the platform.) A
reply's address carries everything its channel needs to send it with no update in hand, so any
reply (one left waiting after a crash, one a timer produced) is routed by the host to the channel
its address names.
"""

from __future__ import annotations

from typing import Protocol, Sequence

from aiohttp import web

from convoflow.delivery import Deliver, Route
from convoflow.messages import Reply, SessionKey
from convoflow.types import JSON


class StartFailed(Exception):
    """A channel could not start, for a reason one of its settings can fix: `setting` names the
    channel's constructor argument (`api_url`, `webhook_url`), which the host maps to the
    environment variable or option behind it."""

    def __init__(self, message: str, setting: str) -> None:
        super().__init__(message)
        self.setting = setting


class BadAddress(ValueError):
    """An address a conversation cannot be started at: malformed, of no channel served here, or
    one its platform says does not exist (a Slack user not found). The message says which."""


class Channel(Protocol):
    name: str
    """The channel's name: every address it makes says `via` this name (`Reply.channel`)."""

    def routes(self) -> list[web.RouteDef]:
        """HTTP routes this channel serves on the shared server (may be empty)."""
        ...

    async def start(self) -> None:
        """Begin taking updates (polling, a socket, webhook registration, a terminal)."""
        ...

    async def connect(self) -> None:
        """Be ready to `open` addresses and `send` replies without taking updates (what `start`
        does first; for a process that only starts conversations, such as `convoflow broadcast`)."""
        ...

    async def stop(self) -> None:
        """Stop taking updates, let the turns in flight finish, release what `start` or `connect` took."""
        ...

    async def open(self, to: str) -> tuple[SessionKey, dict[str, JSON]]:
        """The session key and reply address of `to`, an address of this channel
        (`<name>:...`), for a conversation the bot starts: the same key the user's own messages
        there use, so the user's answer continues it. Raises BadAddress."""
        ...

    async def send(self, reply: Reply) -> None:
        """Deliver one reply to the place its address names. Raises convoflow.delivery.Undeliverable
        when it never can be (it is dropped), any other error when it may later."""
        ...


def channel_for(channels: Sequence[Channel], to: str) -> Channel:
    """The channel an address (`telegram:42`, `slack:T1:U2`) belongs to. Raises BadAddress."""
    name, sep, rest = to.partition(":")
    found = next((channel for channel in channels if channel.name == name), None)
    if not sep or not rest or found is None:
        served = ", ".join(channel.name for channel in channels) or "none"
        raise BadAddress(f"{to!r} is no address of a channel served here (<channel>:..., channels: {served})")
    return found


def router(channels: Sequence[Channel]) -> Route:
    """Each reply to the channel its address names, or None when none of `channels` is it."""
    by_name = {channel.name: channel.send for channel in channels}
    return lambda reply: by_name.get(reply.channel)


def routed(channels: Sequence[Channel]) -> Deliver:
    """Delivery of each reply through the channel its address names; a reply whose channel is not
    among `channels` fails transiently, so it waits in the outbox for a process that has it."""
    route = router(channels)

    async def deliver(reply: Reply) -> None:
        send = route(reply)
        if send is None:
            raise LookupError(f"no {reply.channel!r} channel in this process for reply {reply.seq} of {reply.key}")
        await send(reply)

    return deliver
