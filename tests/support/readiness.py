"""Waiting for a convoflow HTTP server (in this process, a child process or a subprocess) to answer
its health check."""

from __future__ import annotations

import asyncio
from typing import Callable

import aiohttp

POLL_SECONDS = 0.05


async def until_ready(http: aiohttp.ClientSession, url: str, gone: Callable[[], str | None] = lambda: None, *,
                      path: str = "/healthz?ready=1", seconds: float = 30.0) -> None:
    """Poll `url + path` until it answers 200. `gone` says why the server can no longer come up
    (it exited), or None while it may; it may also raise the server's own error. Raises RuntimeError."""
    for _ in range(int(seconds / POLL_SECONDS)):
        reason = gone()
        if reason is not None:
            raise RuntimeError(reason)
        try:
            async with http.get(url + path) as response:
                if response.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(POLL_SECONDS)
    raise RuntimeError(f"{url} did not become ready in {seconds:.0f} s")
