"""What the server and the CLI need from a channel."""

from __future__ import annotations

from typing import Protocol

from aiohttp import web


class Channel(Protocol):
    name: str

    def routes(self) -> list[web.RouteDef]:
        """HTTP routes this channel serves on the shared server (may be empty)."""
        ...

    async def start(self) -> None:
        """Begin taking updates (polling, a socket, webhook registration)."""
        ...

    async def stop(self) -> None:
        """Stop taking updates and finish the turns in flight."""
        ...
