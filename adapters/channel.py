"""What the server and the CLI need from a channel."""

from __future__ import annotations

from typing import Protocol

from aiohttp import web

from convoflow.messages import SessionKey
from convoflow.runtime import Deliver


class Channel(Protocol):
    name: str
    """Also the first part of the partition of every session the channel keeps (`telegram:...`)."""

    def routes(self) -> list[web.RouteDef]:
        """HTTP routes this channel serves on the shared server (may be empty)."""
        ...

    async def start(self) -> None:
        """Begin taking updates (polling, a socket, webhook registration)."""
        ...

    async def stop(self) -> None:
        """Stop taking updates and finish the turns in flight."""
        ...

    def deliverer(self, key: SessionKey) -> Deliver | None:
        """How to deliver a session's replies outside a turn (replies left waiting after a crash or
        a failed delivery), or None when the session is not this channel's."""
        ...
